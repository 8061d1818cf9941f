"""The caption stage: ``k`` captions per caption unit (a medium, or a question when captions are
question-aware), appended to ``OUT/<benchmark>/captions.jsonl`` and never made twice.

A caption record is keyed by (benchmark, unit, captioner, prompt, frame sampling, decoding settings, sample
index). Media that cannot be loaded get a record with the error instead of a caption: the run goes on, and the
report counts those captions as failed (their questions score 0).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from caprl.captioners.base import Captioner, CaptionRequest, GenerationSettings
from caprl.data.media import MediaError
from caprl.eval.benchmarks.base import Benchmark
from caprl.eval.config import EXTERNAL, Lazy, PrismConfig
from caprl.eval.media import load_unit_media
from caprl.eval.prompts import QUESTION_AWARE
from caprl.eval.records import AppendLog
from caprl.eval.types import CaptionRecord, EvalItem, stable_id
from caprl.schema import Media

Progress = Callable[[str, str, int, int], None]


@dataclass(frozen=True)
class CaptionUnit:
    """What one set of ``k`` captions describes."""

    id: str
    media: Media
    clip: tuple[float, float] | None
    prompt: str

    @property
    def frames(self) -> str:
        sampling = getattr(self.media, "sampling", None)
        if sampling is None:
            return "image"
        return sampling.model_dump_json() + ("" if self.clip is None else f"@{self.clip[0]:g}-{self.clip[1]:g}")


def unit_id(item: EvalItem, cfg: PrismConfig) -> str:
    return item.id if cfg.question_aware else item.media_id


def caption_units(bench: Benchmark, items: Sequence[EvalItem], cfg: PrismConfig) -> list[CaptionUnit]:
    prompt = cfg.caption_prompt or bench.caption_prompt
    units: dict[str, CaptionUnit] = {}
    for item in items:
        uid = unit_id(item, cfg)
        if uid in units:
            continue
        clip = item.extra.get("clip")
        text = QUESTION_AWARE.format(prompt=prompt, question=item.question) if cfg.question_aware else prompt
        units[uid] = CaptionUnit(uid, item.media, tuple(clip) if clip else None, text)
    return list(units.values())


def caption_id(bench: str, unit: CaptionUnit, captioner: str, settings: str, index: int) -> str:
    return stable_id(bench, unit.id, captioner, unit.prompt, unit.frames, settings, index)


def external_caption_id(bench: str, unit_id: str, captioner: str, index: int) -> str:
    """The id of a caption read from a file (no prompt, frames or settings are known)."""
    return stable_id(bench, unit_id, captioner, "", EXTERNAL, EXTERNAL, index)


def captions_log(cfg: PrismConfig, bench: str) -> AppendLog[CaptionRecord]:
    return AppendLog(cfg.bench_dir(bench) / "captions.jsonl", CaptionRecord, "caption_id")


def caption_index(
    bench: Benchmark, items: Sequence[EvalItem], cfg: PrismConfig, captioner: str
) -> dict[str, list[CaptionRecord | None]]:
    """unit id → its ``k`` caption records for ``captioner`` under ``cfg`` (None where not made yet): captions made
    with ``cfg``'s settings, or read from a file under that name (so either kind compares with the other)."""
    records = captions_log(cfg, bench.name).by_id()
    made = cfg.model_copy(update={"captions": None})  # the settings caprl would have captioned with
    settings = made.settings_key()

    def find(u: CaptionUnit, j: int) -> CaptionRecord | None:
        own = records.get(caption_id(bench.name, u, captioner, settings, j))
        return own or records.get(external_caption_id(bench.name, u.id, captioner, j))

    return {u.id: [find(u, j) for j in range(cfg.k)] for u in caption_units(bench, items, made)}


def run_caption_stage(
    bench: Benchmark, items: Sequence[EvalItem], cfg: PrismConfig, captioner: Lazy, progress: Progress | None = None
) -> int:
    """Make the missing captions; returns how many were written."""
    log = captions_log(cfg, bench.name)
    done = log.ids()
    settings = cfg.settings_key()
    todo: list[tuple[CaptionUnit, list[int]]] = []
    for unit in caption_units(bench, items, cfg):
        missing = [j for j in range(cfg.k) if caption_id(bench.name, unit, cfg.captioner, settings, j) not in done]
        if missing:
            todo.append((unit, missing))
    total = sum(len(m) for _, m in todo)
    if progress:
        progress("caption", bench.name, 0, total)
    if not todo:
        return 0
    model: Captioner = captioner.get()  # type: ignore[assignment]
    # Units missing the same number of captions go together: one call asks for n samples of each.
    by_need: dict[int, list[tuple[CaptionUnit, list[int]]]] = defaultdict(list)
    for unit, missing in todo:
        by_need[len(missing)].append((unit, missing))
    written = 0
    for n, group in sorted(by_need.items()):
        for start in range(0, len(group), cfg.caption_batch):
            chunk = group[start : start + cfg.caption_batch]
            records = _caption_chunk(bench.name, chunk, n, cfg, model, settings)
            written += log.append(records)
            if progress:
                progress("caption", bench.name, len(records), total)
    return written


def _caption_chunk(
    bench: str,
    chunk: list[tuple[CaptionUnit, list[int]]],
    n: int,
    cfg: PrismConfig,
    model: Captioner,
    settings: str,
) -> list[CaptionRecord]:
    def record(unit: CaptionUnit, j: int, text: str | None, error: str | None, seconds: float | None):
        return CaptionRecord(
            caption_id=caption_id(bench, unit, cfg.captioner, settings, j),
            benchmark=bench,
            unit_id=unit.id,
            captioner=cfg.captioner,
            prompt=unit.prompt,
            frames=unit.frames,
            settings=settings,
            sample_index=j,
            caption=text,
            error=error,
            seconds=seconds,
        )

    records: list[CaptionRecord] = []
    requests, owners = [], []
    for unit, missing in chunk:
        try:
            media = load_unit_media(unit.media, unit.clip)
        except MediaError as exc:
            records.extend(record(unit, j, None, f"media: {exc}", None) for j in missing)
            continue
        # The request id seeds sampling per (unit, first missing sample): a resumed unit gets fresh samples.
        requests.append(CaptionRequest(media=media, prompt=unit.prompt, id=f"{unit.id}#{missing[0]}"))
        owners.append((unit, missing))
    if requests:
        gen = GenerationSettings(
            max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, n=n, seed=cfg.seed
        )
        start = time.perf_counter()
        texts = model.caption(requests, gen)
        per_caption = (time.perf_counter() - start) / max(1, len(requests) * n)
        for (unit, missing), samples in zip(owners, texts, strict=True):
            records.extend(record(unit, j, text, None, per_caption) for j, text in zip(missing, samples, strict=True))
    return records
