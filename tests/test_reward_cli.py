"""`caprl reward score`: scores a captions file against a dataset, resumes without duplicates, reports bad rows."""

import json

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


def test_score_with_a_caprl_preset_and_overrides(tmp_path, data, tiny_models):
    from caprl.reward.extract import first_capital_letter

    captions = tmp_path / "captions.jsonl"
    _captions(captions, data)
    out = tmp_path / "rewards.jsonl"
    args = ["reward", "score", "--data", str(data), "--captions", str(captions), "--reader", str(tiny_models.reader)]
    result = runner.invoke(app, [*args, "--out", str(out), "--preset", "caprl-v1", "--n", "2"], terminal_width=200)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    for r in records:
        assert len(r["questions"]) == 2  # --n overrides the preset's 8
        assert r["reward"] == pytest.approx(2 * r["qa"])  # v1: twice the mean
        for q in r["questions"]:  # generated and parsed as CapRL does
            assert q["probs"] is None and q["chosen"] == first_capital_letter(q["raw_output"])
    bad = runner.invoke(app, [*args, "--out", str(tmp_path / "x.jsonl"), "--preset", "caprl", "--path", "score"])
    assert bad.exit_code != 0 and "answer lead-in" in bad.output
