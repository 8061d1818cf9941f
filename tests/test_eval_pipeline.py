"""Prism end to end on the shapes world with the tiny models: stages, kill and resume (records exactly once),
cached captions re-read with zero captioner calls, the LLM-judge path, paired comparison and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from caprl.data.io import read_dataset
from caprl.eval import DataPaths, JudgeNotConfigured, PrismConfig, StageError, run_prism
from caprl.readers.base import LetterScores

REPORT_KEYS = {"n", "m_acc", "bon", "ci95", "parse_failure_rate", "no_caption_acc"}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls on a shared 2-core machine
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> dict[str, Path]:
    from caprl.synth import generate_image_dataset, generate_video_dataset

    root = tmp_path_factory.mktemp("shapes")
    return {
        "shapes-image": generate_image_dataset(6, root / "img", seed=0, progress=False),
        "shapes-video": generate_video_dataset(2, root / "vid", seed=0, max_frames=8, progress=False),
    }


@pytest.fixture(scope="module")
def captioner(tiny_models):
    from caprl.captioners.transformers import TransformersCaptioner

    return TransformersCaptioner(str(tiny_models.captioner), batch_size=8)


@pytest.fixture(scope="module")
def reader(tiny_models):
    from caprl.readers import load_reader

    return load_reader(str(tiny_models.reader))


class Counting:
    """A captioner wrapper that counts calls and can fail (as a killed process would) after some calls."""

    def __init__(self, inner, fail_after: int | None = None):
        self.inner, self.fail_after = inner, fail_after
        self.name = getattr(inner, "name", "counting")
        self.calls = self.requests = 0

    def caption(self, requests, settings=None):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("captioner died")
        self.calls += 1
        self.requests += len(requests)
        return self.inner.caption(requests, settings)


class Scripted:
    """A captioner that writes a fixed text per request, without looking at the media."""

    name = "scripted"

    def __init__(self, text: str = "A picture of coloured shapes."):
        self.text = text

    def caption(self, requests, settings=None):
        return [[f"{self.text} ({r.id}, {j})" for j in range(settings.n)] for r in requests]


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def paths_for(shapes: dict[str, Path]) -> DataPaths:
    return DataPaths(data={k: str(v) for k, v in shapes.items()}, env={})


def config(out: Path, **kw) -> PrismConfig:
    base = dict(benchmarks=["shapes-image"], out=out, captioner="tiny-cap", reader="tiny-reader", k=2, max_new_tokens=8)
    return PrismConfig(**{**base, **kw})


# ------------------------------------------------------------------------------------------------ end to end


def test_image_kill_during_captioning_then_resume_exactly_once(tmp_path, shapes, captioner, reader):
    out = tmp_path / "out"
    paths = paths_for(shapes)
    units = len(read_dataset(shapes["shapes-image"]).samples)

    dying = Counting(captioner, fail_after=2)
    with pytest.raises(RuntimeError, match="captioner died"):
        run_prism(config(out, stage="caption", caption_batch=1), captioner=dying, reader=reader, paths=paths)
    captions = out / "shapes-image" / "captions.jsonl"
    assert len(lines(captions)) == 2 * 2  # two units done, k=2 each
    with open(captions, "a") as f:
        f.write('{"caption_id": "torn-by-a-ki')  # what a kill in the middle of a write leaves

    resumed = Counting(captioner)
    report = run_prism(config(out, caption_batch=1), captioner=resumed, reader=reader, paths=paths)
    assert resumed.requests == units - 2  # only the missing units were captioned
    recs = lines(captions)
    ids = [r["caption_id"] for r in recs]
    assert len(ids) == len(set(ids)) == units * 2
    assert sorted((r["unit_id"], r["sample_index"]) for r in recs) == sorted(
        (s.id, j) for s in read_dataset(shapes["shapes-image"]).samples for j in range(2)
    )
    reads = lines(out / "shapes-image" / "reads.jsonl")
    assert len({r["read_id"] for r in reads}) == len(reads)

    [bench] = report["benchmarks"]
    assert set(bench) >= REPORT_KEYS and bench["k"] == 2
    n_questions = sum(len(s.mcqs) for s in read_dataset(shapes["shapes-image"]).samples)
    assert bench["n"] == n_questions and bench["n_media"] == units
    assert len(reads) == n_questions * 3  # two captions + the no-caption baseline
    assert 0 <= bench["ci95"][0] <= bench["m_acc"] <= bench["ci95"][1] <= 1
    assert bench["m_acc"] <= bench["bon"] and bench["parse_failure_rate"] == 0.0  # letter scoring always parses
    assert 0 <= bench["no_caption_acc"] <= 1 and bench["categories"]
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk["benchmarks"][0]["m_acc"] == bench["m_acc"]
    assert "| shapes-image |" in (out / "report.md").read_text()

    # Everything cached: the captioner is neither built nor called, and the report is the same.
    built = []
    again = run_prism(config(out), captioner=lambda: built.append(1), reader=reader, paths=paths)
    assert built == [] and again["benchmarks"][0]["m_acc"] == bench["m_acc"]

    # Another reader (generate mode) re-reads cached captions (of the first 12 questions): zero captioner calls.
    counting = Counting(captioner)
    other = run_prism(
        config(out, reader="tiny-reader-generate", read_mode="generate", read_max_new_tokens=6, limit=12),
        captioner=counting,
        reader=reader,
        paths=paths,
    )
    assert counting.calls == 0
    assert 0.0 <= other["benchmarks"][0]["parse_failure_rate"] <= 1.0
    assert len(lines(out / "shapes-image" / "reads.jsonl")) == (n_questions + 12) * 3


def test_caption_stage_killed_by_sigkill_resumes_exactly_once(tmp_path, shapes):
    out = tmp_path / "out"
    script = textwrap.dedent(
        """
        import sys, time
        from caprl.eval import DataPaths, PrismConfig, run_prism

        class Slow:
            name = "slow"
            def caption(self, requests, settings=None):
                time.sleep(0.25)
                return [[f"caption {r.id} {j}" for j in range(settings.n)] for r in requests]

        cfg = PrismConfig(benchmarks=["shapes-image"], out=sys.argv[1], captioner="slow", k=3, stage="caption",
                          caption_batch=1)
        run_prism(cfg, captioner=Slow(), paths=DataPaths(data={"shapes-image": sys.argv[2]}, env={}))
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(out), str(shapes["shapes-image"])])
    captions = out / "shapes-image" / "captions.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if captions.exists() and len(captions.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the caption stage finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = len(lines(captions))
    units = len(read_dataset(shapes["shapes-image"]).samples)
    assert 3 <= before < units * 3

    class Fast(Scripted):
        name = "slow"

    counting = Counting(Fast())
    cfg = PrismConfig(benchmarks=["shapes-image"], out=out, captioner="slow", k=3, stage="caption")
    run_prism(cfg, captioner=counting, paths=paths_for(shapes))
    recs = lines(captions)
    assert len(recs) == len({r["caption_id"] for r in recs}) == units * 3
    assert counting.requests == units - before // 3


def test_video_end_to_end(tmp_path, shapes, captioner, reader):
    report = run_prism(
        config(tmp_path / "out", benchmarks=["shapes-video"], k=1),
        captioner=captioner,
        reader=reader,
        paths=paths_for(shapes),
    )
    [bench] = report["benchmarks"]
    assert set(bench) >= REPORT_KEYS and bench["n_media"] == 2 and bench["m_acc"] == bench["bon"]
    [rec] = lines(tmp_path / "out" / "shapes-video" / "captions.jsonl")[:1]
    assert json.loads(rec["frames"])["max_frames"] == 8  # the dataset's own frame sampling


def test_stages_in_order_and_paired_comparison(tmp_path, shapes, reader):
    out, paths = tmp_path / "out", paths_for(shapes)
    with pytest.raises(StageError, match="caption stage first"):
        run_prism(config(out, stage="read"), reader=reader, paths=paths)
    run_prism(config(out, stage="caption", captioner="terse"), captioner=Scripted("Shapes."), paths=paths)
    run_prism(config(out, stage="caption", captioner="rich"), captioner=Scripted("Many shapes."), paths=paths)
    for name in ("terse", "rich"):
        assert run_prism(config(out, stage="read", captioner=name), reader=reader, paths=paths) is None
    report = run_prism(config(out, stage="score", captioner="rich", compare="terse"), paths=paths)
    [bench] = report["benchmarks"]
    comp = bench["compare"]
    assert comp["captioner"] == "terse" and comp["n"] == bench["n"]
    assert comp["diff"] == pytest.approx(bench["m_acc"] - comp["m_acc"])
    assert comp["diff_ci95"][0] <= comp["diff"] <= comp["diff_ci95"][1]
    assert "vs captioner" in (out / "report.md").read_text()


# ---------------------------------------------------------------------------------------------------- judge


class FakeReader:
    """Answers B to every MCQ and 'Water' or 'Fire' to open questions, whatever the caption."""

    name = "fake-reader"

    def score_letters(self, queries):
        out = []
        for q in queries:
            probs = np.full(len(q.letters), 0.1)
            probs[1] = 1.0
            out.append(LetterScores(q.letters, probs / probs.sum(), 0.9))
        return out

    def generate(self, prompts, *, max_new_tokens=10, temperature=0.0, seed=None):
        return ["Answer: Water" if "What forms" in p[-1]["content"] else "Fire." for p in prompts]


class FakeJudge:
    """Replies as MMVU's judge does (structured JSON), correct when the reader's whole answer was 'Answer: Water'."""

    name = "fake-judge"

    def __init__(self):
        self.prompts = 0

    def generate(self, prompts, *, max_new_tokens=64, temperature=0.0, seed=None):
        self.prompts += len(prompts)
        right = "Model Response to the Question: Answer: Water"
        return [json.dumps({"extracted_answer": "x", "correct": right in p[-1]["content"]}) for p in prompts]


def mmvu_data(tmp_path: Path) -> DataPaths:
    """A three-question MMVU folder: one multiple-choice question (gold B), two open ones (Water, Wood)."""
    from caprl.synth import make_video_sample

    root = tmp_path / "MMVU"
    (root / "videos" / "Chemistry").mkdir(parents=True)
    (root / "videos" / "Chemistry" / "1.mp4").write_bytes(make_video_sample(0, seed=0)[1])
    rows = [
        {"id": "mc", "video": "videos/Chemistry/1.mp4", "question": "Which?", "choices": {"A": "x", "B": "y"},
         "answer": "B", "question_type": "multiple-choice", "metadata": {"subject": "Chemistry"}},
        {"id": "oe1", "video": "videos/Chemistry/1.mp4", "question": "What forms?", "choices": {},
         "answer": "Water", "question_type": "open-ended", "metadata": {"subject": "Chemistry"}},
        {"id": "oe2", "video": "videos/Chemistry/1.mp4", "question": "What burns?", "choices": {},
         "answer": "Wood", "question_type": "open-ended", "metadata": {"subject": "Chemistry"}},
    ]  # fmt: skip
    (root / "validation.json").write_text(json.dumps(rows))
    return DataPaths(data={"mmvu": str(root)}, env={})


def test_llm_judge_scores_open_answers_and_keeps_raw_output(tmp_path):
    paths = mmvu_data(tmp_path)
    cfg = config(tmp_path / "out", benchmarks=["mmvu"], k=1, frames=4)

    with pytest.raises(JudgeNotConfigured, match="--judge URL"):
        run_prism(cfg, captioner=Scripted(), reader=FakeReader(), paths=paths)

    judge = FakeJudge()
    report = run_prism(cfg.model_copy(update={"stage": "score"}), judge=judge, paths=paths)
    [bench] = report["benchmarks"]
    assert bench["m_acc"] == pytest.approx(2 / 3)  # MCQ right (letters), Water judged right, Fire judged wrong
    assert bench["no_caption_acc"] == pytest.approx(2 / 3) and bench["judge_failures"] == 0
    verdicts = lines(tmp_path / "out" / "mmvu" / "judge.jsonl")
    assert judge.prompts == len(verdicts) == 4  # two open questions x (caption + no caption)
    assert {json.loads(v["raw"])["correct"] for v in verdicts} == {True, False}
    assert all(v["judge"] == "fake-judge" for v in verdicts)

    # Verdicts on disk are reused: re-scoring needs no judge at all.
    again = run_prism(cfg.model_copy(update={"stage": "score"}), paths=paths)
    assert again["benchmarks"][0]["m_acc"] == bench["m_acc"] and judge.prompts == 4


class BinaryJudge:
    """Replies as lmms-eval's MMVU judge is told to ("1" or "0"; here " 1\n"), keeping every prompt."""

    name = "fake-judge"

    def __init__(self):
        self.prompts: list[list[dict]] = []

    def generate(self, prompts, *, max_new_tokens=64, temperature=0.0, seed=None):
        self.prompts += prompts
        return [" 1\n" for _ in prompts]


def test_lmms_eval_mmvu_judges_only_what_its_rules_reject_with_its_own_prompt(tmp_path):
    """Under ``--profile lmms-eval``, an open answer lmms-eval's rules accept is read (not a parse failure, not
    "nothing could be read" in report.html) and scores 1 with no judge; one they reject goes to the judge with
    lmms-eval's one-message prompt, its verdicts kept apart from those given to MMVU's official prompt."""
    from caprl.eval.metrics.judge import MMVU_OPEN_ENDED
    from caprl.eval.profiles.lmms_eval import MMVU_JUDGE

    paths, out = mmvu_data(tmp_path), tmp_path / "out"
    cfg = config(out, benchmarks=["mmvu"], k=1, frames=4, profile="lmms-eval")
    judge = BinaryJudge()
    [bench] = run_prism(cfg, captioner=Scripted(), reader=FakeReader(), judge=judge, paths=paths)["benchmarks"]

    # "Answer: Water" contains the gold Water: accepted, never judged. "Fire." (gold Wood) is rejected: judged
    # twice (with the caption, and without for the no-caption figure), in lmms-eval's words.
    assert len(judge.prompts) == 2
    for prompt in judge.prompts:
        assert prompt == MMVU_JUDGE.messages("What burns?", "Wood", "Fire.")
        [message] = prompt
        assert message["role"] == "user" and message["content"].startswith("You are a strict evaluator")
        assert message["content"].endswith(
            "Question: Question: What burns?\nCorrect Answer: Wood\nModel Prediction: Fire."
        )
    scores = {s["question_id"].split("/")[-1]: s for s in lines(out / "mmvu" / "scores.jsonl")}
    open_ = [s for q, s in scores.items() if q != "mc"]
    assert [s["scores"] for s in open_] == [[1.0], [1.0]] and all(s["blind"] == 1.0 for s in open_)
    assert all(all(s["parsed"]) and s["blind_parsed"] for s in scores.values())
    assert bench["parse_failure_rate"] == 0.0 and bench["judge_failures"] == 0
    verdicts = lines(out / "mmvu" / "judge.jsonl")
    assert len(verdicts) == 2 and {v["prompt_sha"] for v in verdicts} == {MMVU_JUDGE.prompt_sha}
    html = (out / "report.html").read_text()
    assert "nothing could be read" not in html and "Answer: Water" in html

    # caprl's own profile asks MMVU's official prompt: lmms-eval's verdicts are not its verdicts.
    official = FakeJudge()
    run_prism(cfg.model_copy(update={"stage": "score", "profile": "caprl"}), judge=official, paths=paths)
    assert official.prompts == 4
    shas = {v["prompt_sha"] for v in lines(out / "mmvu" / "judge.jsonl")}
    assert shas == {MMVU_JUDGE.prompt_sha, MMVU_OPEN_ENDED.prompt_sha}
    # Back under lmms-eval, its own verdicts on disk are enough: no judge needed.
    [again] = run_prism(cfg.model_copy(update={"stage": "score"}), paths=paths)["benchmarks"]
    assert again["m_acc"] == bench["m_acc"] and again["no_caption_acc"] == bench["no_caption_acc"]


# ------------------------------------------------------------------------------------------------------ CLI


def test_cli_stages_report_and_errors(tmp_path, shapes, tiny_models, monkeypatch):
    from caprl.cli import app

    for var in [v for v in os.environ if v.startswith("CAPRL_EVAL")]:
        monkeypatch.delenv(var)
    runner = CliRunner()
    out = tmp_path / "out"
    common = [
        "eval", "prism", "-b", "shapes-image", "--captioner", str(tiny_models.captioner),
        "--reader", str(tiny_models.reader), "--out", str(out), "--k", "1", "--max-new-tokens", "6",
        "--limit", "8", "--data", f"shapes-image={shapes['shapes-image']}",
    ]  # fmt: skip
    for stage in ("caption", "read", "score"):
        result = runner.invoke(app, [*common, "--stage", stage])
        assert result.exit_code == 0, result.output
    assert "M_Acc" in result.output and "shapes-image" in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["benchmarks"][0]["n"] == 8 and set(report["benchmarks"][0]) >= REPORT_KEYS

    missing = runner.invoke(app, [*common[:3], "chartqa", *common[4:10]])
    assert missing.exit_code == 2 and "ahmed-masry/ChartQA" in missing.output

    listing = runner.invoke(app, ["eval", "list"])
    assert listing.exit_code == 0 and "video-mme" in listing.output
    assert "--stage" in runner.invoke(app, ["eval", "prism", "--help"]).output


class FromReferences:
    """A captioner that writes each image's detailed reference caption, with one object's colour made false in
    the second of its k captions."""

    name = "references"

    def __init__(self, ds):
        self.by_id = {s.id: s for s in ds.samples}

    def caption(self, requests, settings=None):
        out = []
        for r in requests:
            s = self.by_id[r.id.split("#")[0]]  # request ids are "<unit id>#<index>"
            o = s.metadata["scene"]["objects"][0]
            other = "black" if o["colour"] != "black" else "pink"
            true = s.references["detailed"]
            lie = true.replace(f"{o['size']} {o['colour']} {o['shape']}", f"{o['size']} {other} {o['shape']}", 1)
            out.append([true, lie][: settings.n])
        return out


def test_shapes_reports_how_true_the_captions_are(tmp_path, shapes, reader):
    from caprl.synth.truth import truth_summary

    ds = read_dataset(shapes["shapes-image"])
    captioner = FromReferences(ds)
    out = tmp_path / "out"
    report = run_prism(config(out), captioner=captioner, reader=reader, paths=paths_for(shapes))
    [bench] = report["benchmarks"]
    written = captioner.caption([type("R", (), {"id": s.id}) for s in ds.samples], type("S", (), {"n": 2}))
    want = truth_summary([s.metadata["scene"] for s in ds.samples], written)
    assert bench["truth"] == want
    assert want["hallucination_rate"] == 0.5 and want["precision"] < 1.0 and 0.9 < want["recall"] < 1.0
    md = (out / "report.md").read_text()
    assert "Caption truth" in md and f"| shapes-image | {want['statements_per_caption']:.1f} |" in md
    html = (out / "report.html").read_text()
    assert 'class="truth"' in html and "hallucinating captions" in html
