"""The score stage: each read answer is extracted and scored with the benchmark's metric; answers that need an
LLM judge are judged (verdicts appended to ``OUT/<benchmark>/judge.jsonl``, raw output kept, never judged twice).
Writes ``OUT/<benchmark>/scores.jsonl`` (one ``ItemScore`` per question, rewritten on every run: it is derived).

Scoring is cheap and reads the raw answers, so re-scoring after a metric or extraction change needs no model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from caprl.data.io import atomic_write
from caprl.eval.benchmarks.base import Benchmark
from caprl.eval.caption import Progress, caption_index, unit_id
from caprl.eval.config import Lazy, PrismConfig
from caprl.eval.metrics.judge import JudgeModel, JudgeNotConfigured, not_configured_message
from caprl.eval.profiles import Scoring, scoring
from caprl.eval.read import BLIND, StageError, read_config, read_id, reads_log
from caprl.eval.records import AppendLog
from caprl.eval.types import EvalItem, ItemScore, JudgeRecord, ReadRecord, stable_id


@dataclass
class _Pending:
    """A read whose score waits for the judge."""

    read: ReadRecord
    item: EvalItem
    prediction: str


@dataclass
class ScoreOutcome:
    scores: list[ItemScore]
    judged: int = 0
    judge_failures: int = 0
    missing_reads: int = 0
    notes: list[str] = field(default_factory=list)
    captioner: str = ""
    reads: dict[tuple[str, int], ReadRecord] = field(default_factory=dict)
    """(question id, sample index or -1 for no caption) -> the answer that was scored (for the HTML report)."""
    predictions: dict[tuple[str, int], str | None] = field(default_factory=dict)
    """The same keys -> the answer as the metric saw it (None: nothing could be read from it)."""


def judge_log(cfg: PrismConfig, bench: str) -> AppendLog[JudgeRecord]:
    return AppendLog(cfg.bench_dir(bench) / "judge.jsonl", JudgeRecord, "judge_id")


def run_score_stage(
    bench: Benchmark,
    items: Sequence[EvalItem],
    cfg: PrismConfig,
    judge: Lazy,
    *,
    captioner: str | None = None,
    progress: Progress | None = None,
    write: bool = True,
) -> ScoreOutcome:
    """Scores of every question for ``captioner`` (default: the run's) read by the run's reader."""
    if cfg.reader is None:
        raise StageError("the score stage needs a reader name (--reader)")
    captioner = captioner or cfg.captioner
    rules = scoring(cfg.profile, bench.name)
    config = read_config(bench, cfg)
    reads = reads_log(cfg, bench.name).by_id()
    index = caption_index(bench, items, cfg, captioner)
    if any(r is None for recs in index.values() for r in recs):
        raise StageError(f"{bench.name}: captions by {captioner!r} are missing: run --stage caption first")

    def find(caption_id: str, item: EvalItem) -> ReadRecord:
        rec = reads.get(read_id(caption_id, item.id, cfg.reader or "", config))
        if rec is None:
            raise StageError(
                f"{bench.name}: question {item.id!r} has not been read by {cfg.reader!r} from caption "
                f"{caption_id}: run the read stage first (--stage read)"
            )
        return rec

    # (question, sample index or -1 for blind) -> metric values; judged answers are filled in below.
    values: dict[tuple[str, int], dict[str, float]] = {}
    parsed: dict[tuple[str, int], bool] = {}
    pending: list[tuple[tuple[str, int], _Pending]] = []
    errors: dict[str, int] = {}
    used: dict[tuple[str, int], ReadRecord] = {}
    predictions: dict[tuple[str, int], str | None] = {}
    for item in items:
        plan: list[tuple[int, str | None]] = [
            (j, rec.caption_id if rec and rec.caption is not None else None)
            for j, rec in enumerate(index[unit_id(item, cfg)])
        ]
        if cfg.baseline:
            plan.append((-1, BLIND))
        errors[item.id] = sum(cid is None for _, cid in plan)
        for j, cid in plan:
            key = (item.id, j)
            if cid is None:  # the caption failed (its media could not be loaded): the question scores 0
                values[key] = {"score": 0.0, **dict.fromkeys(bench.metric.extras, 0.0)}
                parsed[key] = True
                continue
            read = find(cid, item)
            prediction = rules.answer(read.output, item, read.mode)
            used[key], predictions[key] = read, prediction
            parsed[key] = rules.parsed(prediction)
            if rules.sends_to_judge(prediction, item, bench.metric.judged(item)):
                pending.append((key, _Pending(read, item, prediction)))
            else:
                values[key] = rules.score(prediction, item)
    outcome = ScoreOutcome(scores=[], captioner=captioner, reads=used, predictions=predictions)
    if pending:
        _judge(bench, rules, cfg, judge, pending, values, outcome, progress)

    for item in items:
        k_values = [values[(item.id, j)] for j in range(cfg.k)]
        extras = {name: [v.get(name, 0.0) for v in k_values] for name in bench.metric.extras}
        outcome.scores.append(
            ItemScore(
                benchmark=bench.name,
                question_id=item.id,
                media_id=item.media_id,
                category=item.category,
                scores=[v["score"] for v in k_values],
                parsed=[parsed[(item.id, j)] for j in range(cfg.k)],
                caption_errors=errors[item.id],
                blind=values[(item.id, -1)]["score"] if cfg.baseline else None,
                blind_parsed=parsed.get((item.id, -1)) if cfg.baseline else None,
                extras=extras,
                group=rules.group_of(item) if rules.aggregate != "mean" else None,
            )
        )
    if write:
        path = cfg.bench_dir(bench.name) / ("scores.jsonl" if captioner == cfg.captioner else "scores.compare.jsonl")
        lines = "".join(json.dumps(s.model_dump(mode="json")) + "\n" for s in outcome.scores)
        atomic_write(path, lambda p: p.write_text(lines, encoding="utf-8"))
    return outcome


def _judge(
    bench: Benchmark,
    rules: Scoring,
    cfg: PrismConfig,
    judge: Lazy,
    pending: list[tuple[tuple[str, int], _Pending]],
    values: dict[tuple[str, int], dict[str, float]],
    outcome: ScoreOutcome,
    progress: Progress | None,
) -> None:
    spec = rules.judge or bench.metric.judge  # the profile's own prompt, else the benchmark's
    assert spec is not None, f"{bench.name}: answers sent to a judge, and no judge prompt"
    if rules.judge_tag:
        # The profile shows the judge another answer text (e.g. with its <think> block): its own verdicts.
        spec = replace(spec, name=f"{spec.name}@{rules.judge_tag}")
    log = judge_log(cfg, bench.name)
    # Verdicts already on disk (under this rubric) still count; only new answers need the judge.
    verdicts = {r.read_id: r for r in log if r.prompt_sha == spec.prompt_sha}
    todo = [p for _, p in pending if p.read.read_id not in verdicts]
    if todo and not judge.given:
        raise JudgeNotConfigured(not_configured_message(bench.name, len(todo)))
    if progress:
        progress("judge", bench.name, 0, len(todo))
    if todo:
        model: JudgeModel = judge.get()  # type: ignore[assignment]
        for start in range(0, len(todo), cfg.read_batch):
            chunk = todo[start : start + cfg.read_batch]
            prompts = [spec.messages(p.item.question, "; ".join(p.item.answers), p.prediction) for p in chunk]
            replies = model.generate(prompts, max_new_tokens=cfg.judge_max_new_tokens, temperature=0.0)
            records = [
                JudgeRecord(
                    judge_id=stable_id(p.read.read_id, model.name, spec.prompt_sha),
                    read_id=p.read.read_id,
                    judge=model.name,
                    prompt_sha=spec.prompt_sha,
                    raw=reply,
                    score=spec.parse(reply),
                )
                for p, reply in zip(chunk, replies, strict=True)
            ]
            log.append(records)
            verdicts.update({r.read_id: r for r in records})
            outcome.judged += len(records)
            if progress:
                progress("judge", bench.name, len(chunk), len(todo))
    for key, p in pending:
        verdict = verdicts[p.read.read_id]
        if rules.judge_reply is None and verdict.score is None:
            outcome.judge_failures += 1
        score = verdict.score if rules.judge_reply is None else rules.judge_reply(verdict.raw)
        if rules.judge_reply is not None and score is None:
            outcome.judge_failures += 1
        values[key] = {"score": score or 0.0}
