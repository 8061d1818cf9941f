"""QA generation and filtering through the command line with the tiny local models (real transformers backends).

The tiny models have random weights: their replies are not questions and their answers are noise. What is tested
is that the whole path runs for real (chat templates, processors, batched generation, the VLM used text-only for
the without-media leg, or a separate reader), and that every item and question gets its record.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caprl.cli import app
from caprl.data.io import read_dataset
from caprl.qa.filter import read_stats
from caprl.qa.generate import read_generated
from caprl.synth import generate_image_dataset


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return generate_image_dataset(2, tmp_path_factory.mktemp("qa_models") / "shapes", progress=False)


def _run(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_generate_with_the_tiny_vlm_records_raw_replies(tiny_models, shapes, tmp_path):
    out = tmp_path / "gen"
    args = ["qa", "generate", "--data", str(shapes), "--vlm", str(tiny_models.captioner), "--out", str(out)]
    output = _run([*args, "--k", "2", "--max-new-tokens", "24", "--batch-size", "2"])
    assert "qa generate" in output
    records = read_generated(out)
    assert [r.index for r in records] == [0, 1]
    for r in records:  # a random-weight model writes no JSON: recorded with its reply, not dropped
        assert r.status in ("unparseable", "no_valid_questions", "ok")
        assert isinstance(r.raw, str)
        assert r.raw or r.problems == ["empty reply"]
    assert len(read_dataset(out)) == sum(r.status == "ok" for r in records)


def test_filter_with_the_tiny_vlm_both_ways_and_with_a_separate_reader(tiny_models, shapes, tmp_path):
    ds = read_dataset(shapes)
    n_questions = sum(len(s.mcqs) for s in ds.samples)
    out = tmp_path / "f"
    base = ["qa", "filter", "--data", str(shapes), "--vlm", str(tiny_models.captioner)]
    output = _run([*base, "--out", str(out)])
    assert "kept" in output
    records = read_stats(out)
    assert len(records) == len({r.key for r in records}) == n_questions
    answered = [r for r in records if r.status == "answered"]
    assert answered and all(r.with_media.n == r.without_media.n == 4 for r in answered)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["r"] == 4 and summary["questions"] == n_questions
    assert summary["kept"] + sum(summary["by_reason"].values()) == n_questions
    run = json.loads((out / "run.json").read_text())
    assert run["blind"].endswith("(text only)")  # the same VLM, without the image

    out2 = tmp_path / "f2"
    _run([*base, "--out", str(out2), "--blind", str(tiny_models.reader), "--r", "1", "--batch-questions", "32"])
    answered = [r for r in read_stats(out2) if r.status == "answered"]
    assert answered and all(r.with_media.n == r.without_media.n == 1 for r in answered)
    assert json.loads((out2 / "run.json").read_text())["blind"] == f"transformers:{tiny_models.reader}"
