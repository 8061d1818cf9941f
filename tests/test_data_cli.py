"""`caprl data` CLI through typer's CliRunner: import -> inspect -> export -> import back, exit codes, messages."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from caprl.data.cli import app
from caprl.data.io import read_dataset

runner = CliRunner()


def png(color=(10, 20, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buf, format="PNG")
    return buf.getvalue()


def row(i, choices, answer="B"):
    gt = [{"question": f"Question {i}: quelle forme? 形状", "choices": choices, "answer": answer}]
    return {
        "id": f"r{i}",
        "image": {"bytes": png((i, i, i)), "path": f"{i}.jpg"},
        "prompt": [{"role": "user", "content": "<image> Please describe this image in detail."}],
        "data_source": "image_caption_rl",
        "reward_model": {"style": "rule", "ground_truth": gt},
        "extra_info": {"index": i},
    }


@pytest.fixture
def qa_parquet(tmp_path):
    rows = [
        row(0, ["A) circle", "B) square"]),
        row(1, ["A. circle", "B. square", "C. star"]),
        row(2, ["(A) circle", "(B) square", "(C) star", "(D) moon"]),
        row(3, ["A) circle", "B) square"], answer="F"),  # gold letter not among the options
        row(4, ["A) circle", "B) square", "C) star", "D) moon", "E) sun"]),
    ]
    path = tmp_path / "caprl_qa.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_import_inspect_export_round_trip(tmp_path, qa_parquet):
    out = tmp_path / "ds"
    res = runner.invoke(app, ["import", "--from", "caprl-qa", str(qa_parquet), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "imported 4 samples, skipped 1 of 5 rows" in res.output
    assert "row 3, id='r3'" in res.output and "outside the 2 options" in res.output
    assert (out / "import_errors.jsonl").exists()
    ds = read_dataset(out)
    assert [s.id for s in ds] == ["r0", "r1", "r2", "r4"]

    res = runner.invoke(app, ["inspect", str(out), "--show", "2"])
    assert res.exit_code == 0, res.output
    assert "4 samples: 4 images (4 embedded), 0 videos; 4 MCQs" in res.output
    assert "options per MCQ" in res.output and "✓ B) square" in res.output and "r1" in res.output
    assert "r4" not in res.output  # only two samples rendered

    res = runner.invoke(app, ["inspect", str(out), "--json"])
    stats = json.loads(res.stdout)
    assert stats["n_samples"] == 4 and stats["options_per_mcq"] == {"2": 1, "3": 1, "4": 1, "5": 1}
    assert stats["mcq_kinds"] == {"(none)": 4}

    verl = tmp_path / "verl.parquet"
    res = runner.invoke(app, ["export", "--to", "verl", str(out), "--out", str(verl)])
    assert res.exit_code == 0, res.output
    assert "exported 4 rows (4 images, 0 videos)" in res.output

    back = tmp_path / "back"
    res = runner.invoke(app, ["import", "--from", "verl", str(verl), "--out", str(back), "--strict"])
    assert res.exit_code == 0, res.output
    assert read_dataset(back).samples == ds.samples


def test_strict_import_fails_with_row_and_reason(tmp_path, qa_parquet):
    out = tmp_path / "ds"
    res = runner.invoke(app, ["import", "--from", "caprl-qa", str(qa_parquet), "--out", str(out), "--strict"])
    assert res.exit_code == 1
    assert "error:" in res.stderr and "row 3" in res.stderr and "outside the 2 options" in res.stderr
    assert not (out / "samples.parquet").exists()


def test_limit_extract_media_and_jsonl(tmp_path, qa_parquet):
    out = tmp_path / "ds"
    args = ["import", "--from", "caprl-qa", str(qa_parquet), "--out", str(out), "--limit", "2"]
    res = runner.invoke(app, [*args, "--extract-media", "--format", "jsonl"])
    assert res.exit_code == 0, res.output
    assert "imported 2 samples, skipped 0 of 2 rows" in res.output
    ds = read_dataset(out)
    assert all(s.media.data is None and (out / s.media.path).is_file() for s in ds)
    assert (out / "samples.jsonl").exists() and not (out / "import_errors.jsonl").exists()


def test_clear_errors(tmp_path, qa_parquet):
    res = runner.invoke(app, ["import", "--from", "caprl-video-qa", str(qa_parquet), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "needs a media root" in res.stderr
    res = runner.invoke(app, ["import", "--from", "caprl-v1", str(qa_parquet), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "no row" in res.stderr and "nothing written" in res.stderr
    res = runner.invoke(app, ["import", "--from", "bogus", str(qa_parquet), "--out", str(tmp_path / "o")])
    assert res.exit_code != 0 and "bogus" in res.output
    res = runner.invoke(app, ["import", "--from", "caprl-qa", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert res.exit_code == 1 and "no such file" in res.stderr
    res = runner.invoke(app, ["inspect", str(tmp_path / "nope")])
    assert res.exit_code == 1 and "error:" in res.stderr
    res = runner.invoke(app, ["export", "--to", "verl", str(tmp_path / "nope"), "--out", str(tmp_path / "x.parquet")])
    assert res.exit_code == 1 and "error:" in res.stderr


@pytest.mark.parametrize("command", [[], ["import"], ["export"], ["inspect"]])
def test_help(command):
    res = runner.invoke(app, [*command, "--help"])
    assert res.exit_code == 0 and "Usage" in res.output
    if command == ["import"]:
        assert "caprl-video-qa" in res.output and "--media-root" in res.output


def test_dataset_stats_counts_everything():
    from caprl.data.inspect import dataset_stats
    from caprl.schema import MCQ, FrameSampling, ImageMedia, Sample, VideoMedia

    q2 = MCQ(question="Q?", options=["a", "b"], gold=1, kind="count")
    q4 = MCQ(question="Q?", options=["a", "b", "c", "d"], gold=0)
    samples = [
        Sample(id="1", media=ImageMedia(data=png()), mcqs=[q2, q4], references={"terse": "t", "dense": "d"}),
        Sample(id="2", media=ImageMedia(path="x.png"), mcqs=[q2]),
        Sample(id="3", media=VideoMedia(path="v.mp4", sampling=FrameSampling(num_frames=8)), references={"dense": "d"}),
    ]
    stats = dataset_stats(samples)
    assert (stats.n_samples, stats.n_images, stats.n_embedded_images, stats.n_videos, stats.n_mcqs) == (3, 2, 1, 1, 3)
    assert stats.options_per_mcq == {2: 2, 4: 1}
    assert stats.mcqs_per_sample == {0: 1, 1: 1, 2: 1}
    assert stats.mcq_kinds == {"count": 2, "(none)": 1}
    assert stats.gold_letters == {"A": 1, "B": 2}
    assert stats.references == {"dense": 2, "terse": 1}


def test_progress_bar_path(tmp_path, qa_parquet, monkeypatch):
    import caprl.data.cli as cli

    monkeypatch.setattr(cli, "PROGRESS_MIN_ROWS", 0)
    res = runner.invoke(app, ["import", "--from", "caprl-qa", str(qa_parquet), "--out", str(tmp_path / "ds")])
    assert res.exit_code == 0 and "imported 4 samples" in res.output
