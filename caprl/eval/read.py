"""The read stage: a text-only reader answers every question from each of its ``k`` captions (and, for the
baseline, from no caption), appended to ``OUT/<benchmark>/reads.jsonl`` and never asked twice.

Multiple-choice questions take the reader's letter-scoring path by default (the option letters' probabilities
from one forward pass, batched, questions about one caption next to each other so their prefix is shared);
``read_mode="generate"`` asks for text instead. Open and grounding questions always generate (greedy).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from caprl.errors import CaprlError
from caprl.eval.benchmarks.base import Benchmark
from caprl.eval.caption import Progress, caption_index, unit_id
from caprl.eval.config import Lazy, PrismConfig
from caprl.eval.records import AppendLog
from caprl.eval.types import EvalItem, ReadRecord, stable_id
from caprl.readers.base import LetterQuery, Reader

BLIND = "blind"


class StageError(CaprlError, RuntimeError):
    """A stage whose inputs are not there (e.g. reading before captioning)."""


@dataclass(frozen=True)
class ReadTask:
    item: EvalItem
    caption: str
    caption_id: str
    captioner: str
    sample_index: int


def read_id(caption_id: str, question_id: str, reader: str, read_config: str) -> str:
    return stable_id(caption_id, question_id, reader, read_config)


def reads_log(cfg: PrismConfig, bench: str) -> AppendLog[ReadRecord]:
    return AppendLog(cfg.bench_dir(bench) / "reads.jsonl", ReadRecord, "read_id")


def read_tasks(bench: Benchmark, items: Sequence[EvalItem], cfg: PrismConfig, captioner: str) -> list[ReadTask]:
    """Every (question, caption) pair to read, grouped by caption; raises when captions are missing."""
    index = caption_index(bench, items, cfg, captioner)
    missing = sum(r is None for recs in index.values() for r in recs)
    if missing:
        raise StageError(
            f"{bench.name}: {missing} of {len(index) * cfg.k} captions by {captioner!r} are not made yet "
            f"(settings {cfg.settings_key()}): run the caption stage first (--stage caption)"
        )
    tasks = []
    for item in items:
        for rec in index[unit_id(item, cfg)]:
            assert rec is not None
            if rec.caption is not None:
                tasks.append(ReadTask(item, rec.caption, rec.caption_id, captioner, rec.sample_index))
    # Questions about one caption next to each other: readers share (compute once) their common prefix.
    tasks.sort(key=lambda t: t.caption_id)
    return tasks


def run_read_stage(
    bench: Benchmark, items: Sequence[EvalItem], cfg: PrismConfig, reader: Lazy, progress: Progress | None = None
) -> int:
    """Read what is not read yet; returns how many answers were written."""
    if cfg.reader is None:
        raise StageError("the read stage needs a reader name (--reader)")
    log = reads_log(cfg, bench.name)
    read_config = cfg.read_config(bench.mcq_instruction, bench.open_instruction)
    tasks = read_tasks(bench, items, cfg, cfg.captioner)
    if cfg.baseline:
        tasks += [ReadTask(item, "", BLIND, BLIND, -1) for item in items]
    done = log.ids()
    todo = [t for t in tasks if read_id(t.caption_id, t.item.id, cfg.reader, read_config) not in done]
    if progress:
        progress("read", bench.name, 0, len(todo))
    if not todo:
        return 0
    model: Reader = reader.get()  # type: ignore[assignment]
    written = 0
    for start in range(0, len(todo), cfg.read_batch):
        chunk = todo[start : start + cfg.read_batch]
        records = _read_chunk(bench, chunk, cfg, model, read_config)
        written += log.append(records)
        if progress:
            progress("read", bench.name, len(chunk), len(todo))
    return written


def _read_chunk(
    bench: Benchmark, chunk: list[ReadTask], cfg: PrismConfig, model: Reader, read_config: str
) -> list[ReadRecord]:
    assert cfg.reader is not None
    scored = [t for t in chunk if t.item.is_mcq and cfg.read_mode == "score"]
    generated = [t for t in chunk if not (t.item.is_mcq and cfg.read_mode == "score")]
    records: list[ReadRecord] = []

    def record(t: ReadTask, mode: str, output: str, **kw: object) -> ReadRecord:
        return ReadRecord(
            read_id=read_id(t.caption_id, t.item.id, cfg.reader or "", read_config),
            benchmark=bench.name,
            question_id=t.item.id,
            caption_id=t.caption_id,
            captioner=t.captioner,
            sample_index=t.sample_index,
            reader=cfg.reader or "",
            read_config=read_config,
            mode=mode,  # type: ignore[arg-type]
            output=output,
            **kw,  # type: ignore[arg-type]
        )

    if scored:
        queries = [LetterQuery(bench.messages(t.caption, t.item), t.item.letters) for t in scored]
        for t, s in zip(scored, model.score_letters(queries), strict=True):
            probs = {letter: round(float(p), 6) for letter, p in zip(s.letters, s.probs, strict=True)}
            records.append(record(t, "score", s.argmax, probs=probs, letter_mass=round(s.letter_mass, 6)))
    if generated:
        texts = model.generate(
            [bench.messages(t.caption, t.item) for t in generated],
            max_new_tokens=cfg.read_max_new_tokens,
            temperature=0.0,
        )
        records.extend(record(t, "generate", text) for t, text in zip(generated, texts, strict=True))
    return records
