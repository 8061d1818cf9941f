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


def test_preset_runs_record_the_final_settings_and_reruns_compare_them(tmp_path, data, tiny_models, request):
    """What a row records is the reward config after the preset and the flags given: a rerun reaching the same
    config by other flags is the same run; another preset or an overriding flag is refused, naming the field."""
    captions = tmp_path / "captions.jsonl"
    _captions(captions, data)
    out = tmp_path / "rewards.jsonl"
    base = ["reward", "score", "--data", str(data), "--captions", str(captions), "--reader", str(tiny_models.reader)]
    base += ["--out", str(out)]
    result = runner.invoke(app, [*base, "--preset", "caprl-v1", "--n", "2"])
    assert result.exit_code == 0, result.output
    settings = [json.loads(line)["settings"] for line in out.read_text().splitlines()]
    assert len(settings) == 6 and all(s == settings[0] for s in settings)
    s = settings[0]
    assert (s["n_questions"], s["qa_weight"], s["shuffle"]) == (2, 2.0, False)  # --n, then the preset's values
    assert (s["prompt"], s["path"]) == ("caprl", "generate")
    assert (s["answer_parse"], s["unanswerable_letter"], s["seed"]) == ("first_letter", None, 0)
    before = out.read_bytes()

    request.getfixturevalue("no_model_loads")  # from here on, loading a model fails the test
    again = runner.invoke(app, [*base, "--preset", "caprl-v1", "--n", "2", "--no-shuffle", "--seed", "0"])
    assert again.exit_code == 0, again.output  # the flags restate the preset: the same settings
    assert re.search(r"already done\s+│\s+6", again.output) and out.read_bytes() == before
    for extra, changed in (
        (["--preset", "caprl", "--n", "2"], "shuffle: False -> True"),
        (["--preset", "caprl-v1", "--n", "2", "--shuffle"], "shuffle: False -> True"),
        (["--preset", "caprl-v1", "--n", "2", "--qa-weight", "1"], "qa_weight: 2.0 -> 1.0"),
        (["--preset", "caprl-v1"], "n_questions: 2 -> 8"),
        (["--n", "2"], "prompt: 'caprl' -> 'default'"),
    ):
        refused = runner.invoke(app, [*base, *extra])
        assert refused.exit_code != 0 and "holds rewards scored with other settings" in refused.output, extra
        assert changed in refused.output and "Traceback" not in refused.output, (extra, refused.output)
        assert out.read_bytes() == before


@pytest.mark.parametrize(
    ("extra", "shown"),
    [
        (["--temperature", "0"], "--temperature: "),
        (["--preset", "caprl", "--path", "score"], "answer lead-in"),
        (["--prompt", "caprl"], "answer lead-in"),
        (["--preset", "caprl", "--temperature", "-1"], "--temperature: "),
        (["--length-weight", "0.5"], "--length-weight needs --length-tokenizer"),
    ],
)
def test_reward_flag_errors_name_the_flag_before_any_model_loads(tmp_path, data, tiny_models, no_model_loads, extra,
                                                                 shown):  # fmt: skip
    captions = tmp_path / "captions.jsonl"
    _captions(captions, data)
    args = ["reward", "score", "--data", str(data), "--captions", str(captions), "--reader", str(tiny_models.reader)]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "r.jsonl"), *extra])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and shown in result.output and "Traceback" not in result.output
    assert not (tmp_path / "r.jsonl").exists()


@pytest.mark.parametrize(
    ("extra", "flag"),
    [
        (["--preset", "caprl-v2"], "--preset"),
        (["--prompt", "fancy"], "--prompt"),
        (["--answer-parse", "x"], "--answer-parse"),
    ],
)
def test_reward_choices_are_checked_by_the_flag_parser(tmp_path, data, no_model_loads, extra, flag):
    args = ["reward", "score", "--data", str(data), "--captions", str(tmp_path / "c.jsonl"), "--reader", "r"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "r.jsonl"), *extra])
    assert result.exit_code == 2 and flag in result.output
