"""Export to verl's parquet layout: exact columns/types, and a lossless round trip ours -> verl -> ours."""

from __future__ import annotations

import io
import re

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from caprl.data.export import export_verl
from caprl.data.importers import import_rows
from caprl.data.io import write_dataset
from caprl.schema import MCQ, FrameSampling, ImageMedia, Sample, SchemaError, VideoMedia


def png(color=(10, 200, 10)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (5, 7), color).save(buf, format="PNG")
    return buf.getvalue()


Q1 = MCQ(question="Quelle couleur? 颜色 🎨", options=["rouge", "蓝色", "vert"], gold=1, kind="attribute")
Q2 = MCQ(question="How many circles?", options=["1", "2", "3", "4", "5", "6"], gold=5, kind="count")
Q3 = MCQ(question="Is it (A) or B)?", options=["A) first", "(B) second"], gold=0)  # label-looking option texts


def image_samples() -> list[Sample]:
    return [
        Sample(id="emb", media=ImageMedia(data=png()), mcqs=[Q1, Q2], references={"terse": "a green box"}),
        Sample(
            id="path",
            media=ImageMedia(path="media/a.png"),
            mcqs=[Q3],
            references={"dense": "…", "terse": "x"},
            metadata={"split": "train", "nested": {"a": [1, None]}},
        ),
        Sample(
            id="both", media=ImageMedia(path="media/b.png", data=png((1, 2, 3))), prompt="  Describe it.\n", mcqs=[Q1]
        ),
        Sample(id="ünïcode-🖼", media=ImageMedia(data=png((9, 9, 9))), prompt="", mcqs=[]),
    ]


def video_samples() -> list[Sample]:
    return [
        Sample(
            id="v-fps",
            media=VideoMedia(path="media/v1.mp4", sampling=FrameSampling(fps=1.5, max_frames=32)),
            prompt="Describe the video with [mm:ss] timestamps.",
            mcqs=[Q2],
        ),
        Sample(id="v-default", media=VideoMedia(path="media/v2.mp4"), mcqs=[Q1, Q3], metadata={"dur": 12.5}),
    ]


@pytest.fixture
def root(tmp_path):
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "a.png").write_bytes(png((200, 0, 0)))
    (tmp_path / "media" / "b.png").write_bytes(png((0, 0, 200)))
    for name in ("v1.mp4", "v2.mp4", "v3.mp4"):
        (tmp_path / "media" / name).write_bytes(b"\x00\x00\x00\x18ftypmp42")
    return tmp_path


@pytest.mark.parametrize("fmt", ["verl", "caprl-qa"])
@pytest.mark.parametrize(
    "make",
    [image_samples, video_samples, lambda: [*image_samples(), *video_samples()]],
    ids=["image", "video", "mixed"],
)
def test_round_trip_is_lossless(root, make, fmt):
    samples = make()
    write_dataset(samples, root)
    out = root / "verl" / "train.parquet"
    result = export_verl(root, out)
    assert result.n_rows == len(samples)
    back = import_rows(out, fmt, strict=True)
    assert back.samples == samples


def test_video_qa_importer_reads_our_video_export(root):
    samples = video_samples()
    export_verl(samples, root / "v.parquet", media_root=root)
    assert import_rows(root / "v.parquet", "caprl-video-qa", media_root=root, strict=True).samples == samples


def test_image_columns_and_types(root):
    out = root / "img.parquet"
    export_verl(image_samples(), out, media_root=root)
    table = pq.read_table(out)
    string = pa.string()
    assert table.schema == pa.schema(
        [
            ("data_source", string),
            ("prompt", pa.list_(pa.struct([("role", string), ("content", string)]))),
            ("images", pa.list_(pa.struct([("bytes", pa.binary()), ("path", string)]))),
            ("ability", string),
            (
                "reward_model",
                pa.struct(
                    [
                        ("style", string),
                        (
                            "ground_truth",
                            pa.list_(
                                pa.struct([("question", string), ("choices", pa.list_(string)), ("answer", string)])
                            ),
                        ),
                    ]
                ),
            ),
            (
                "extra_info",
                pa.struct(
                    [
                        ("id", string),
                        ("index", pa.int64()),
                        ("caprl_version", pa.int64()),
                        ("media", string),
                        ("prompt", string),
                        ("references", string),
                        ("metadata", string),
                        ("mcq_kinds", string),
                        ("video_path", string),
                    ]
                ),
            ),
        ]
    )
    rows = table.to_pylist()
    r0, r1 = rows[0], rows[1]
    assert r0["data_source"] == "image_caption_rl" and r0["ability"] == "dense_caption"
    assert r0["prompt"] == [{"role": "user", "content": "<image>Please describe this image in detail."}]
    assert r0["reward_model"]["style"] == "rule"
    assert r0["reward_model"]["ground_truth"][0] == {
        "question": "Quelle couleur? 颜色 🎨",
        "choices": ["A) rouge", "B) 蓝色", "C) vert"],
        "answer": "B",
    }
    assert r0["images"] == [{"bytes": png(), "path": None}]
    # Images given by path are embedded, since verl's loader reads bytes; the path is kept.
    assert r1["images"] == [{"bytes": (root / "media" / "a.png").read_bytes(), "path": "media/a.png"}]
    assert [r["extra_info"]["index"] for r in rows] == [0, 1, 2, 3]
    assert [r["extra_info"]["id"] for r in rows] == ["emb", "path", "both", "ünïcode-🖼"]
    # Only prompts that placeholder-stripping would not give back are stored verbatim.
    assert [r["extra_info"]["prompt"] for r in rows] == [None, None, "  Describe it.\n", ""]
    assert [r["extra_info"]["video_path"] for r in rows] == [None] * 4


def test_video_columns(root):
    out = root / "vid.parquet"
    export_verl(video_samples(), out, media_root=root, data_source="my_source")
    table = pq.read_table(out)
    assert table.schema.names == ["data_source", "prompt", "videos", "ability", "reward_model", "extra_info"]
    assert table.schema.field("videos").type == pa.list_(
        pa.struct([("video", pa.string()), ("fps", pa.float64()), ("max_frames", pa.int64())])
    )
    rows = table.to_pylist()
    assert rows[0]["data_source"] == "my_source"
    assert rows[0]["prompt"][0]["content"] == "<video>Describe the video with [mm:ss] timestamps."
    assert rows[0]["videos"] == [{"video": str(root / "media" / "v1.mp4"), "fps": 1.5, "max_frames": 32}]
    assert rows[1]["videos"] == [{"video": str(root / "media" / "v2.mp4"), "fps": 2.0, "max_frames": 64}]
    # CapRL++'s VLM-judge reward function reads the video from extra_info.video_path.
    assert [r["extra_info"]["video_path"] for r in rows] == [r["videos"][0]["video"] for r in rows]


def test_video_sampling_keys_follow_the_rows(root):
    nframes = [
        Sample(id="n", media=VideoMedia(path="media/v3.mp4", sampling=FrameSampling(num_frames=99, max_frames=16)))
    ]
    export_verl(nframes, root / "n.parquet", media_root=root)
    assert pq.read_table(root / "n.parquet").column("videos").to_pylist() == [
        [{"video": str(root / "media" / "v3.mp4"), "nframes": 16}]
    ]
    export_verl([*video_samples(), *nframes], root / "mixed.parquet", media_root=root)
    mixed = pq.read_table(root / "mixed.parquet")
    # A key present but null would break verl's process_video, so mixed modes keep only the path.
    assert mixed.schema.field("videos").type == pa.list_(pa.struct([("video", pa.string())]))
    back = import_rows(root / "mixed.parquet", "verl", strict=True).samples
    assert back == [*video_samples(), *nframes]


def test_readable_by_datasets_and_verl_placeholder_split(root, tmp_path):
    out = root / "img.parquet"
    export_verl(image_samples()[:1], out, media_root=root)
    ds = datasets.load_dataset("parquet", data_files=str(out), cache_dir=str(tmp_path / "hf"))["train"]
    row = ds[0]
    # verl's RLHFDataset._build_messages splits the content on its placeholders like this.
    parts = [p for p in re.split("(<image>|<video>)", row["prompt"][0]["content"]) if p]
    assert parts == ["<image>", "Please describe this image in detail."]
    assert Image.open(io.BytesIO(row["images"][0]["bytes"])).size == (5, 7)
    assert row["extra_info"]["index"] == 0


def test_missing_media_and_no_embed(root):
    missing = [Sample(id="gone", media=ImageMedia(path="media/nope.png"), mcqs=[Q1])]
    with pytest.raises(SchemaError, match="gone.*image file not found"):
        export_verl(missing, root / "x.parquet", media_root=root)
    with pytest.raises(SchemaError, match="video file not found"):
        export_verl([Sample(id="v", media=VideoMedia(path="media/nope.mp4"))], root / "x.parquet", media_root=root)
    export_verl(missing, root / "x.parquet", media_root=root, embed_images=False, check_media=False)
    (row,) = pq.read_table(root / "x.parquet").to_pylist()
    assert row["images"] == [{"bytes": None, "path": str(root / "media" / "nope.png")}]
    assert import_rows(root / "x.parquet", "verl", strict=True).samples == missing
    with pytest.raises(ValueError, match="nothing to export"):
        export_verl([], root / "x.parquet")


def test_edited_ground_truth_wins_over_kinds(root):
    export_verl(image_samples()[:1], root / "e.parquet", media_root=root)
    table = pq.read_table(root / "e.parquet").to_pylist()
    table[0]["reward_model"]["ground_truth"] = table[0]["reward_model"]["ground_truth"][:1]
    (s,) = import_rows(table, "verl", strict=True).samples
    assert s.mcqs == [Q1.model_copy(update={"kind": None})]
