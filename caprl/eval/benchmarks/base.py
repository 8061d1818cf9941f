"""What a benchmark is: a loader, a caption prompt, a reader prompt, answer extraction and a metric.

A benchmark module builds one ``Benchmark`` and the registry (``caprl.eval.benchmarks``) collects it. Loaders are
functions ``load(ctx) -> Iterator[EvalItem]`` that read rows with ``ctx.rows()`` (whatever format the files at the
data path are in) and turn them into items with ``ctx.image(...)`` / ``ctx.video(...)``.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caprl.errors import InputError
from caprl.eval import extract, prompts
from caprl.eval.data import DataPaths, DataSpec, MediaStore, data_files, image_bytes, read_rows
from caprl.eval.metrics.anls import anls
from caprl.eval.metrics.chartqapro import chartqapro_item_score
from caprl.eval.metrics.grounding import THRESHOLDS, grounding_scores
from caprl.eval.metrics.judge import JudgeSpec
from caprl.eval.metrics.mcq import mcq_accuracy
from caprl.eval.metrics.relaxed import relaxed_accuracy
from caprl.eval.types import EvalItem, stable_id
from caprl.reward.extract import extract_choice
from caprl.schema import (
    DEFAULT_IMAGE_PROMPT,
    DEFAULT_VIDEO_PROMPT,
    LETTERS,
    FrameSampling,
    ImageMedia,
    Modality,
    VideoMedia,
)

# CapRL++ shows a captioner 128 frames of a benchmark video.
DEFAULT_FRAMES = FrameSampling(num_frames=128, max_frames=128)


class BenchmarkError(InputError):
    """Benchmark rows that cannot be turned into items (names the file and row)."""

    exit_code = 2  # as `caprl eval prism` exits for its other data errors (``DataMissing``)


# ------------------------------------------------------------------------------------------------------ metrics


@dataclass(frozen=True)
class Metric:
    """Scores one extracted answer. ``score`` returns the primary value under ``"score"`` and any secondary ones
    (``extras``) beside it; ``scale`` is the best possible score (1, or 3 for a 0-3 judge)."""

    name: str
    scale: float = 1.0
    extras: tuple[str, ...] = ()
    judge: JudgeSpec | None = None

    def judged(self, item: EvalItem) -> bool:
        """Whether this item's answer goes to the LLM judge."""
        return self.judge is not None and not item.is_mcq

    def score(self, prediction: str | None, item: EvalItem) -> dict[str, float]:
        if prediction is None:
            return {"score": 0.0, **dict.fromkeys(self.extras, 0.0)}
        if item.is_mcq:
            return {"score": mcq_accuracy(prediction, item.gold_letter or "")}
        return self._open(prediction, item)

    def _open(self, prediction: str, item: EvalItem) -> dict[str, float]:
        raise BenchmarkError(f"metric {self.name}: item {item.id!r} is not multiple-choice and has no open scorer")


class RelaxedAccuracy(Metric):
    def _open(self, prediction: str, item: EvalItem) -> dict[str, float]:
        return {"score": relaxed_accuracy(prediction, item.answers)}


class ANLS(Metric):
    def _open(self, prediction: str, item: EvalItem) -> dict[str, float]:
        return {"score": anls(prediction, item.answers)}


class ChartQAProMetric(Metric):
    def _open(self, prediction: str, item: EvalItem) -> dict[str, float]:
        qtype, flags = item.extra.get("question_type"), item.extra.get("year_flags")
        return {"score": chartqapro_item_score(prediction, item.answers, qtype, flags)}


class Grounding(Metric):
    def _open(self, prediction: str, item: EvalItem) -> dict[str, float]:
        assert item.span is not None
        scores = grounding_scores(extract.parse_span(prediction), item.span)
        return {"score": scores.pop("miou"), **scores}


MCQ_ACCURACY = Metric("accuracy")
GROUNDING = Grounding("miou", extras=tuple(f"r1@{m}" for m in THRESHOLDS))


# ---------------------------------------------------------------------------------------------------- benchmark


@dataclass
class LoadContext:
    """What a loader needs: where the files are, where their media are, and a store for decoded images.

    Media files named by rows are looked for under the user's media root when one is given, else in the
    benchmark's media folder beside the data path and beside the annotation file the row came from (the first
    that holds the file wins, so "point at the download folder" and "point at the annotation file" both work).
    """

    benchmark: str
    path: Path
    store: MediaStore
    frames: FrameSampling | None
    spec: DataSpec = field(default_factory=lambda: DataSpec(download=()))
    media_root: Path | None = None
    """The user's media folder (``--media-root``); None: the defaults above."""
    counter: int = 0
    names: dict[str, str] = field(default_factory=dict)
    """media id -> the medium's name in the release (its file name), for matching captions made elsewhere."""

    def rows(self) -> Iterator[dict[str, Any]]:
        try:
            files = data_files(self.path, self.spec.layouts)
        except FileNotFoundError as exc:
            raise BenchmarkError(f"{self.benchmark}: {exc}") from None
        if not files:
            raise BenchmarkError(f"{self.benchmark}: {self.path} holds no .parquet/.arrow/.tsv/.json/.jsonl files")
        for f in files:
            yield from read_rows(f)

    def media_roots(self, row: dict[str, Any] | None = None) -> list[Path]:
        if self.media_root is not None:
            return [self.media_root]
        bases = [self.path if self.path.is_dir() else self.path.parent]
        if row is not None and row.get("_path"):
            bases.append(Path(row["_path"]).parent)
        roots = [b / self.spec.media_dir if self.spec.media_dir else b for b in bases]
        return list(dict.fromkeys(roots))

    def find(self, names: Sequence[str], row: dict[str, Any] | None = None) -> Path | None:
        """The first of ``names`` that exists under the media roots (tried in order), or None."""
        for root in self.media_roots(row):
            for name in names:
                if (root / name).exists():
                    return root / name
        return None

    def image(self, value: Any, *, name: str | None = None) -> tuple[str, ImageMedia]:
        """An embedded image cell (bytes, HF ``{bytes, path}`` struct, base64, PIL) → (media id, media), decoded
        once into the store; ``name`` is its file name in the release, when the row gives one."""
        struct_path = value.get("path") if isinstance(value, dict) else None
        media_id, media = self.store.put(image_bytes(value))
        if name or struct_path:
            self.names.setdefault(media_id, str(name or struct_path))
        return media_id, media

    def image_file(
        self, name: str, row: dict[str, Any] | None = None, *, alternatives: Sequence[str] = ()
    ) -> tuple[str, ImageMedia]:
        """An image file named by a row (or one of ``alternatives``, e.g. the name with an extension added)."""
        found = self.find([name, *alternatives], row)
        if found is None or not found.is_file():
            tried = ", ".join(str(r) for r in self.media_roots(row))
            where = f" (row from {row['_path']})" if row and row.get("_path") else ""
            raise BenchmarkError(
                f"{self.benchmark}: image file {name!r}{where} not found in {tried}; "
                f"point --media-root {self.benchmark}=DIR at the folder holding the images"
            )
        media_id = f"img:{name}"
        self.names.setdefault(media_id, name)
        return media_id, ImageMedia(path=str(found))

    def video(
        self,
        relative: str,
        clip: tuple[float, float] | None = None,
        row: dict[str, Any] | None = None,
        *,
        alternatives: Sequence[str] = (),
    ) -> tuple[str, VideoMedia]:
        """A video file (or folder of frames) under the media roots → (media id, media). A file that is not
        there is not an error here: its captions record the error and its questions score 0."""
        found = self.find([relative, *alternatives], row) or self.media_roots(row)[0] / relative
        media_id = f"vid:{relative}" + ("" if clip is None else f"@{clip[0]:g}-{clip[1]:g}")
        self.names.setdefault(media_id, relative)
        return media_id, VideoMedia(path=str(found), sampling=self.frames or DEFAULT_FRAMES)

    def next_id(self, row: dict[str, Any], *names: str) -> str:
        """The row's own id when it has one of ``names``, else a running number (stable: files are sorted)."""
        self.counter += 1
        for n in names:
            if row.get(n) not in (None, ""):
                return str(row[n])
        return f"{self.counter:06d}"


VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv", ".wmv", ".mpg", ".mpeg", ".gif")


def video_file(name: str) -> str:
    """A video name as a file name: ``.mp4`` added unless it already ends like a video (a QVHighlights id such as
    ``NUsG9BgSes0_210.0_360.0`` ends in ``.0``, which is not an extension)."""
    return name if name.lower().endswith(VIDEO_SUFFIXES) else f"{name}.mp4"


@dataclass(frozen=True)
class Benchmark:
    """One Prism benchmark. ``load`` turns the files at the data path into items."""

    name: str
    title: str
    modality: Modality
    data: DataSpec
    load: Callable[[LoadContext], Iterator[EvalItem]]
    metric: Metric = MCQ_ACCURACY
    caption_prompt: str = ""
    mcq_instruction: str = ""
    open_instruction: str = ""
    subset: int | None = None
    """Keep this many items, chosen by a stable hash of their ids (SEED-Bench 2k)."""
    data_from: str | None = None
    """Another benchmark whose data path this one falls back to (the 2k subset reads the full SEED-Bench)."""
    builtin: Callable[[Path], Path] | None = None
    """Makes the data when none is found (the shapes world): called with a cache folder, returns the data path."""
    frames: FrameSampling | None = field(default_factory=lambda: DEFAULT_FRAMES)
    """How video frames are sampled for the captioner (None: as each item's media says)."""
    caption_check: Callable[[Path, dict[str, list[str]]], dict[str, Any]] | None = None
    """Checks the captions themselves against the data (the shapes world: every statement against the scene graph),
    given the data path and each medium's captions; its figures go to the report as ``truth``."""

    def __post_init__(self) -> None:
        video = self.modality == "video"
        if not self.caption_prompt:
            object.__setattr__(self, "caption_prompt", DEFAULT_VIDEO_PROMPT if video else DEFAULT_IMAGE_PROMPT)
        if not self.mcq_instruction:
            object.__setattr__(self, "mcq_instruction", prompts.MCQ_VIDEO if video else prompts.MCQ_IMAGE)
        if not self.open_instruction:
            object.__setattr__(self, "open_instruction", prompts.OPEN_VIDEO if video else prompts.OPEN_IMAGE)

    @property
    def needs_judge(self) -> bool:
        return self.metric.judge is not None

    # ---- loading

    def load_items(
        self, paths: DataPaths, cache: Path, *, frames: FrameSampling | None = None, limit: int | None = None
    ) -> list[EvalItem]:
        path = self.locate(paths, cache)
        owner = self.data_from if self.data_from and not paths.candidates(self.name) else self.name
        ctx = LoadContext(
            benchmark=self.name,
            path=path,
            store=MediaStore(cache / "media" / self.name),
            frames=frames or self.frames,
            spec=self.data,
            media_root=paths.media_root(owner),
        )
        items = list(self.load(ctx))
        seen: set[str] = set()
        for i, it in enumerate(items):
            if it.id in seen:
                raise BenchmarkError(f"{self.name}: duplicate item id {it.id!r} in {path}")
            seen.add(it.id)
            if it.media_name is None and it.media_id in ctx.names:
                items[i] = it.model_copy(update={"media_name": ctx.names[it.media_id]})
        if self.subset is not None and len(items) > self.subset:
            keep = set(sorted(seen, key=lambda i: stable_id(self.name, "subset", i))[: self.subset])
            items = [it for it in items if it.id in keep]
        return items[:limit] if limit is not None else items

    def locate(self, paths: DataPaths, cache: Path) -> Path:
        """The data path: the user's, the shared one (``data_from``), or a built-in one made now."""
        try:
            return paths.locate(self.name, self.data)
        except FileNotFoundError:
            if self.data_from and paths.candidates(self.data_from):
                return paths.locate(self.data_from, self.data)
            if self.builtin is None:
                raise
            return self.builtin(cache / "data" / self.name)

    # ---- reading

    def messages(self, caption: str, item: EvalItem) -> list[dict[str, Any]]:
        if item.is_mcq:
            return prompts.mcq_messages(caption, item, self.mcq_instruction)
        return prompts.open_messages(caption, item, self.open_instruction)

    def answer(self, raw: str, item: EvalItem, mode: str) -> str | None:
        """The answer the metric scores, from the reader's raw output; None when nothing can be read from it."""
        if item.is_mcq:
            if mode == "score":
                # The argmax letter, exactly one of the item's: a substring test would read "" (in every string)
                # or "AB" as an answer, where they are parse failures.
                letter = raw.strip()
                return letter if len(letter) == 1 and letter in item.letters else None
            return extract_choice(raw, list(item.options or []))
        if item.span is not None:
            found = extract.span(raw)
            return None if found is None else extract.format_span(found)
        if self.metric.judged(item):
            # The judge reads the whole answer and extracts the final one itself, as the official judges do.
            return extract.without_thinking(raw) or None
        return extract.short_answer(raw)


# ----------------------------------------------------------------------------------------------- row helpers


def literal_list(value: Any) -> list[Any]:
    """A list cell that may arrive as a list, a numpy array, a Python-literal string ("['a', 'b']") or a scalar."""
    if value is None:
        return []
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str) and value.strip().startswith("["):
        try:
            parsed = ast.literal_eval(value.strip())  # a literal only: never eval()
        except (SyntaxError, ValueError):
            return [value]
        return list(parsed) if isinstance(parsed, list | tuple) else [parsed]
    return [value]


_INLINE = re.compile(r"(?:^|[\s,;])\(?([A-H])\)?\s*[:.)]\s*")


def split_inline_options(text: str) -> tuple[str, list[str]]:
    """``"Q?\\nOptions: A: x, B: y"`` → ``("Q?", ["x", "y"])`` (MMStar writes its options into the question)."""
    head, sep, tail = text.partition("Options:")
    if not sep:
        return text.strip(), []
    marks = [m for m in _INLINE.finditer(tail)]
    # Keep only the marks that read A, B, C, ... in order: letters inside option texts are not labels.
    labels: list[re.Match[str]] = []
    for m in marks:
        if m.group(1) == LETTERS[len(labels)]:
            labels.append(m)
    options = []
    for i, m in enumerate(labels):
        end = labels[i + 1].start() if i + 1 < len(labels) else len(tail)
        options.append(tail[m.end() : end].strip().rstrip(",;").strip())
    return head.strip(), options


def letter_columns(row: dict[str, Any]) -> list[str]:
    """Options held in ``A``, ``B``, ... columns (VLMEvalKit), up to the first empty one."""
    options = []
    for letter in LETTERS:
        value = row.get(letter)
        if value is None or (isinstance(value, float) and value != value) or str(value).strip() in ("", "nan"):
            break
        options.append(str(value))
    return options


def gold_index(answer: Any, options: list[str]) -> int:
    """Gold as an index from a letter (``"B"``, ``"(B)"``), an int index, or the option's text."""
    from caprl.schema import parse_gold, strip_option_labels

    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)
    return parse_gold(answer if isinstance(answer, int) else str(answer), strip_option_labels(options))


def mcq_item(
    *, id: str, media_id: str, media: Any, question: str, options: list[str], answer: Any, **kw: Any
) -> EvalItem:
    """An MCQ item with option labels stripped (``"A. x"`` → ``"x"``) and the gold resolved."""
    from caprl.schema import strip_option_labels

    options = [str(o) for o in options]
    bare = strip_option_labels(options)
    return EvalItem(
        id=id, media_id=media_id, media=media, question=question, options=bare, gold=gold_index(answer, options), **kw
    )
