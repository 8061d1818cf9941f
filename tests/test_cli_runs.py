"""Reruns that used to be silently wrong, and output that used to hide what happened:

- a rerun with nothing left to do loads no model (annotate, qa generate);
- `caprl synth` over an existing dataset replaces it cleanly (no orphaned media) and never deletes a user's files;
- `qa filter`'s summary.json says what this run asked, what was done before, and how long it took;
- `caprl eval prism` shows failed captions wherever it shows M_Acc, and warns;
- model loading is quiet (no weight-loading bars).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caprl.cli import app
from caprl.data.io import read_dataset
from caprl.synth import generate_image_dataset

runner = CliRunner()
PRECHECKS = ("too_few_options", "duplicate_options", "gold_missing", "duplicate", "near_duplicate")


def _ok(args: list) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return generate_image_dataset(3, tmp_path_factory.mktemp("cli_runs") / "shapes", seed=7, progress=False)


def test_reruns_with_nothing_to_do_load_no_model(tmp_path, shapes, tiny_models, request):
    ann = ["annotate", "--data", shapes, "--captioner", tiny_models.captioner, "--out", tmp_path / "ann"]
    ann += ["--max-new-tokens", "4"]
    gen = ["qa", "generate", "--data", shapes, "--vlm", tiny_models.captioner, "--out", tmp_path / "gen"]
    gen += ["--k", "1", "--max-new-tokens", "8"]
    flt = ["qa", "filter", "--data", shapes, "--vlm", tiny_models.captioner, "--out", tmp_path / "flt"]
    flt += ["--r", "1", "--max-new-tokens", "2"]
    first = _ok(ann)
    assert "Loading weights" not in first  # quiet: no weight-loading bars
    assert re.search(r"captioned now\s+│\s+3", first)
    _ok(gen)
    asked = int(re.search(r"asked now / already done\s+│\s+(\d+) / 0", _ok(flt)).group(1))

    request.getfixturevalue("no_model_loads")
    assert re.search(r"already done\s+│\s+3", _ok(ann))
    assert re.search(r"already done\s+│\s+3", _ok(gen))
    done = int(re.search(r"asked now / already done\s+│\s+0 / (\d+)", _ok(flt)).group(1))
    assert done >= asked > 0  # (already done also counts the questions set aside unasked)


def test_synth_over_a_dataset_replaces_it_without_orphans(tmp_path):
    out = tmp_path / "shapes"
    _ok(["synth", "image", "--n", "5", "--out", out, "--no-progress"])
    text = _ok(["synth", "image", "--n", "2", "--out", out, "--seed", "3", "--no-progress"])
    assert "replacing the 5-sample dataset" in text
    on_disk = sorted(p.name for p in (out / "media" / "images").iterdir())
    assert on_disk == sorted(Path(s.media.path).name for s in read_dataset(out).samples) and len(on_disk) == 2

    # A folder with anything caprl synth did not make is refused, and nothing in it is touched.
    mine = tmp_path / "mine"
    (mine / "media" / "images").mkdir(parents=True)
    (mine / "notes.txt").write_text("keep me")
    result = runner.invoke(app, ["synth", "image", "--n", "2", "--out", str(mine), "--no-progress"])
    assert result.exit_code != 0 and "holds files caprl synth did not make" in result.output
    assert (mine / "notes.txt").read_text() == "keep me" and not (mine / "samples.parquet").exists()


def test_qa_filter_summary_says_what_this_run_did(tmp_path, shapes):
    from caprl.qa.filter import filter_qa
    from caprl.qa.oracle import ShapesOracle

    out = tmp_path / "filtered"
    oracle = ShapesOracle(read_dataset(shapes))
    first = filter_qa(shapes, oracle, out)
    n = sum(len(s.mcqs) for s in read_dataset(shapes))
    set_aside = sum(first.by_reason.get(r, 0) for r in PRECHECKS)  # never asked: bad options, duplicates
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["asked_now"] == first.asked_now == n - set_aside > 0 and on_disk["already_done"] == 0
    assert on_disk["seconds"] > 0
    filter_qa(shapes, oracle, out)
    again = json.loads((out / "summary.json").read_text())
    assert again["asked_now"] == 0 and again["already_done"] == n


def test_eval_shows_failed_captions_where_it_shows_the_score(tmp_path, tiny_models, monkeypatch):
    for var in [v for v in __import__("os").environ if v.startswith("CAPRL_EVAL")]:
        monkeypatch.delenv(var)
    data = generate_image_dataset(3, tmp_path / "shapes", seed=8, progress=False)
    broken = read_dataset(data).samples[0]
    (data / broken.media.path).write_bytes(b"\x89PNG but not really")
    out = tmp_path / "eval"
    text = _ok(["eval", "prism", "-b", "shapes-image", "--data", f"shapes-image={data}", "--captioner",
                tiny_models.captioner, "--reader", tiny_models.reader, "--out", out, "--k", "2",
                "--max-new-tokens", "4", "--no-baseline", "--bootstrap", "100"])  # fmt: skip
    report = json.loads((out / "report.json").read_text())
    [bench] = report["benchmarks"]
    questions = len(broken.mcqs)
    assert bench["caption_errors"] == 2 * questions  # k captions of each of its questions
    assert "captions failed and count as wrong" in text
    assert f"warning: shapes-image: {2 * questions} of {2 * bench['n']} captions failed" in text
    md = (out / "report.md").read_text()
    assert f"shapes-image: {2 * questions} of {2 * bench['n']} captions failed" in md
    html = (out / "report.html").read_text()
    assert f"{2 * questions} of {2 * bench['n']} captions failed (media could not be read)" in html
    assert "report.html" in text  # the last line names every report
