"""`caprl reward score`: scores a captions file against a dataset, resumes without duplicates, reports bad rows."""

import json
import re

import pytest
from typer.testing import CliRunner

from caprl.cli import app
from caprl.synth import generate_image_dataset

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return generate_image_dataset(3, tmp_path_factory.mktemp("shapes"), seed=4, progress=False)


def _captions(path, data_dir):
    from caprl.data.io import read_dataset

    rows = []
    for s in read_dataset(data_dir):
        rows += [{"id": s.id, "caption": s.references["exhaustive"]}, {"id": s.id, "caption": s.references["terse"]}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return rows


def test_score_resume_and_bad_rows(tmp_path, data, tiny_models):
    captions = tmp_path / "captions.jsonl"
    rows = _captions(captions, data)
    out = tmp_path / "rewards.jsonl"
    args = ["reward", "score", "--data", str(data), "--captions", str(captions), "--reader", str(tiny_models.reader)]
    args += ["--out", str(out), "--mode", "soft", "--batch-size", "4"]
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["id"], r["caption_index"]) for r in records] == [(row["id"], i % 2) for i, row in enumerate(rows)]
    for r in records:
        assert 0.0 <= r["reward"] <= 1.0 and r["questions"]
        assert r["reward"] == pytest.approx(sum(q["score"] for q in r["questions"]) / len(r["questions"]))

    # A killed run leaves a cut line: it is re-scored, the rest skipped, nothing duplicated.
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:3]) + "\n" + lines[3][:20])
    with captions.open("a") as f:
        f.write('{"id": "no-such-sample", "caption": "x"}\n{"caption": "missing id"}\n')
    result = runner.invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "already done" in result.output and "no-such-sample" in result.output and "line 8" in result.output
    again = [json.loads(line) for line in out.read_text().splitlines()]  # every line whole again
    keys = [(r["id"], r["caption_index"]) for r in again]
    assert sorted(keys) == sorted({(row["id"], i % 2) for i, row in enumerate(rows)})
    assert len(keys) == len(set(keys))


def test_rows_record_their_settings_and_other_settings_are_refused(tmp_path, data, tiny_models, request):
    """A file of rewards from two modes or seeds would be silently wrong: a re-run with other settings is refused
    and changes nothing; the same settings with nothing left to score load no reader."""
    captions = tmp_path / "captions.jsonl"
    _captions(captions, data)
    out = tmp_path / "rewards.jsonl"
    base = ["reward", "score", "--data", str(data), "--captions", str(captions), "--reader", str(tiny_models.reader)]
    base += ["--out", str(out)]
    args = [*base, "--mode", "soft", "--n", "3", "--seed", "5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 6
    for r in records:
        s = r["settings"]
        assert (s["mode"], s["n_questions"], s["seed"], s["unanswerable_option"]) == ("soft", 3, 5, True)
        assert s["reader"] == f"transformers:{tiny_models.reader}"
    before = out.read_bytes()

    request.getfixturevalue("no_model_loads")  # from here on, loading a model fails the test
    for extra, changed in (
        (["--mode", "hard", "--n", "3", "--seed", "5"], "mode: 'soft' -> 'hard'"),
        (["--mode", "soft", "--n", "3", "--seed", "6"], "seed: 5 -> 6"),
        (["--mode", "soft", "--seed", "5"], "n_questions: 3 -> None"),
        (["--mode", "soft", "--n", "3", "--seed", "5", "--no-unanswerable"], "unanswerable_option: True -> False"),
    ):
        refused = runner.invoke(app, [*base, *extra])
        assert refused.exit_code != 0 and "holds rewards scored with other settings" in refused.output
        assert changed in refused.output and "Traceback" not in refused.output
        assert out.read_bytes() == before
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert re.search(r"already done\s+│\s+6", again.output) and out.read_bytes() == before


def test_a_run_that_scores_nothing_fails_and_counts_what_it_left_out(tmp_path, data, tiny_models, no_model_loads):
    captions = tmp_path / "captions.jsonl"
    captions.write_text("".join(json.dumps({"id": f"nope-{i}", "caption": "x"}) + "\n" for i in range(8)))
    out = tmp_path / "rewards.jsonl"
    args = ["reward", "score", "--data", str(data), "--captions", str(captions), "--reader", str(tiny_models.reader)]
    result = runner.invoke(app, [*args, "--out", str(out)])
    assert result.exit_code != 0
    assert "nope-0" in result.output and "nope-4" in result.output and "nope-5" not in result.output
    assert "... and 3 more left out (8 in all)" in result.output
    assert "error: nothing was scored: all 8 captions" in result.output
    assert not out.exists()
