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
from caprl.eval.profiles import scoring
from caprl.eval.records import AppendLog
from caprl.eval.types import EvalItem, ReadRecord, stable_id
from caprl.readers.base import LetterQuery, Reader, takes_seeds

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


def read_config(bench: Benchmark, cfg: PrismConfig) -> str:
    """The reading configuration the records are keyed by: caprl's prompts and mode, or the profile's reading."""
    reading = scoring(cfg.profile, bench.name).reading
    if reading is not None:
        return f"generate:{reading.key}"
    return cfg.read_config(bench.mcq_instruction, bench.open_instruction)


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
    config = read_config(bench, cfg)
    tasks = read_tasks(bench, items, cfg, cfg.captioner)
    if cfg.baseline:
        tasks += [ReadTask(item, "", BLIND, BLIND, -1) for item in items]
    done = log.ids()
    todo = [t for t in tasks if read_id(t.caption_id, t.item.id, cfg.reader, config) not in done]
    if progress:
        progress("read", bench.name, 0, len(todo))
    if not todo:
        return 0
    model: Reader = reader.get()  # type: ignore[assignment]
    written = 0
    for start in range(0, len(todo), cfg.read_batch):
        chunk = todo[start : start + cfg.read_batch]
        records = _read_chunk(bench, chunk, cfg, model, config)
        written += log.append(records)
        if progress:
            progress("read", bench.name, len(chunk), len(todo))
    return written


def _read_chunk(
    bench: Benchmark, chunk: list[ReadTask], cfg: PrismConfig, model: Reader, read_config: str
) -> list[ReadRecord]:
    assert cfg.reader is not None
    reading = scoring(cfg.profile, bench.name).reading
    letters = cfg.read_mode == "score" and reading is None  # a profile's reading always generates
    scored = [t for t in chunk if t.item.is_mcq and letters]
    generated = [t for t in chunk if not (t.item.is_mcq and letters)]
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
    if generated and reading is not None:
        # Sampled (CapRL's reader runs at temperature 1): each read gets its own seed, fixed by what it reads, so a
        # rerun of a killed read stage gives the same answers.
        kwargs: dict[str, object] = {}
        if takes_seeds(model):
            kwargs["seeds"] = [
                int(read_id(t.caption_id, t.item.id, str(cfg.seed), read_config)[:8], 16) for t in generated
            ]
        texts = model.generate(
            [reading.messages(t.caption, t.item) for t in generated],
            max_new_tokens=reading.max_new_tokens,
            temperature=reading.temperature,
            **kwargs,  # type: ignore[arg-type]
        )
        records.extend(record(t, "generate", text) for t, text in zip(generated, texts, strict=True))
    elif generated:
        texts = model.generate(
            [bench.messages(t.caption, t.item) for t in generated],
            max_new_tokens=cfg.read_max_new_tokens,
            temperature=0.0,
        )
        records.extend(record(t, "generate", text) for t, text in zip(generated, texts, strict=True))
    return records
