"""Dataset IO: parquet/jsonl round trips, atomic writes, bad rows reported by index."""

import io
import json

import pyarrow.parquet as pq
import pytest
from PIL import Image

from caprl.data.io import SCHEMA, read_dataset, write_dataset
from caprl.schema import MCQ, FrameSampling, ImageMedia, Sample, SchemaError, VideoMedia


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def _samples() -> list[Sample]:
    q = MCQ(question="Quelle couleur? 颜色 🎨", options=["rouge", "蓝色", "vert"], gold=1, kind="attribute")
    return [
        Sample(
            id="a", media=ImageMedia(path="media/a.png"), mcqs=[q], references={"terse": "x"}, metadata={"k": [1, 2]}
        ),
        Sample(id="b", media=ImageMedia(data=_png()), mcqs=[q, q.model_copy(update={"gold": 0})]),
        Sample(
            id="c",
            media=VideoMedia(path="/abs/v.mp4", sampling=FrameSampling(num_frames=8, max_frames=8)),
            prompt="Describe the video.",
            metadata={"nested": {"a": None}},
        ),
    ]


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_round_trip_is_lossless(tmp_path, fmt):
    samples = _samples()
    target = write_dataset(samples, tmp_path / "ds", format=fmt, manifest={"source": "test"})
    assert target.exists()
    ds = read_dataset(tmp_path / "ds")
    assert ds.samples == samples
    assert ds.root == tmp_path / "ds"
    assert ds.manifest["n_samples"] == 3 and ds.manifest["source"] == "test"
    assert ds.manifest["modalities"] == {"image": 2, "video": 1}
    assert read_dataset(target).samples == samples  # the file itself also works


def test_parquet_layout(tmp_path):
    target = write_dataset(_samples(), tmp_path)
    table = pq.read_table(target)
    assert table.schema.equals(SCHEMA)
    assert table.num_rows == 3


def test_duplicate_ids_rejected(tmp_path):
    s = _samples()
    with pytest.raises(SchemaError, match="row 1.*duplicate id 'a'"):
        write_dataset([s[0], s[0]], tmp_path)
    assert not list(tmp_path.iterdir())


def test_bad_rows_strict_and_lenient(tmp_path):
    path = tmp_path / "samples.jsonl"
    good = _samples()[0].model_dump_json()
    bad = json.dumps(
        {"id": "z", "media": {"type": "image", "path": "p"}, "mcqs": [{"question": "q", "options": ["a"], "gold": 0}]}
    )
    path.write_text("\n".join([good, bad, good.replace('"a"', '"a2"', 1)]) + "\n")
    # The message names the file and the 1-based line, so it alone finds the record.
    with pytest.raises(SchemaError, match=r"samples.jsonl, line 2, id='z', field 'mcqs.0.options'.*at least 2 options"):
        read_dataset(tmp_path)
    errors: list[SchemaError] = []
    ds = read_dataset(tmp_path, strict=False, errors=errors)
    assert [s.id for s in ds] == ["a", "a2"]
    assert len(errors) == 1 and errors[0].row == 1


def test_invalid_json_line_named(tmp_path):
    (tmp_path / "samples.jsonl").write_text('{"id": "a"\n')
    with pytest.raises(SchemaError, match=r"samples.jsonl, line 1: not valid JSON"):
        read_dataset(tmp_path)


def test_missing_dataset_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="no samples.parquet or samples.jsonl"):
        read_dataset(tmp_path)


def test_read_hf_dataset_of_our_layout(tmp_path):
    import datasets

    samples = _samples()
    target = write_dataset(samples, tmp_path)
    hf = datasets.load_dataset("parquet", data_files=str(target), split="train", cache_dir=str(tmp_path / "cache"))
    from caprl.data.io import read_hf_dataset

    assert read_hf_dataset(hf).samples == samples
    broken = hf.map(lambda r: {"prompt": r["prompt"], "mcqs": []} if r["id"] == "b" else r)
    assert len(read_hf_dataset(broken).samples) == 3  # no MCQs is valid
