"""Importers for the public CapRL data formats.

Two layers: ``open_rows`` reads raw rows from any supported container (a parquet file, a directory of parquet or
jsonl files, a jsonl/json file, a ``datasets.Dataset``/``DatasetDict`` or a directory written by
``save_to_disk``, or a plain list of rows); a per-format converter turns one row into a ``Sample``.

Formats (``FORMATS``):

- ``caprl-qa`` (alias ``verl``): verl-style rows as in CapRL-QA-75K -- ``image`` {bytes, path} (or verl's
  ``images`` list, or ``videos``), ``prompt`` as one user message with an ``<image>`` placeholder,
  ``reward_model.ground_truth`` a list of {question, choices, answer}. Rows written by ``caprl data export --to
  verl`` carry our own fields in ``extra_info`` and come back exactly as they were exported.
- ``caprl-video-qa``: the same layout with ``videos`` (one path relative to ``media_root``), as in
  CapRL-Video-QA-20K. Needs ``media_root``.
- ``caprl-v1``: CapRL v1 chat rows whose last message (role ``answer``) holds a Python-literal list of
  ``(question_with_options, letter)`` pairs; the options are split out of the question text.

Ids: a row's ``id`` (or ``extra_info.id``) when it has one; otherwise ``<prefix>-<16 hex>`` where the hex is a
SHA-1 of the media key (video/image path, or the image bytes' SHA-1) and the question texts. Such ids do not depend
on the row's position, so re-importing a filtered or reordered file gives the same ids.

Media paths that are relative resolve against ``media_root`` and are stored absolute, because an imported
dataset's own relative paths resolve against its output directory. Embedded image bytes stay embedded unless
``extract_media`` writes them to ``OUT/media/``.

Rows that do not fit are reported with their index and reason (``ImportErrorRecord``); ``strict`` raises a
``SchemaError`` on the first instead.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import BaseModel, ValidationError

from caprl.data.io import write_dataset
from caprl.schema import (
    DEFAULT_IMAGE_PROMPT,
    DEFAULT_VIDEO_PROMPT,
    LETTERS,
    MCQ,
    FrameSampling,
    ImageMedia,
    Sample,
    SchemaError,
    VideoMedia,
)

ROW_BATCH = 256
_PLACEHOLDER_RE = re.compile(r"<(?:image|video)>")


# --------------------------------------------------------------------------------------------------------------
# Results and errors
# --------------------------------------------------------------------------------------------------------------


class ImportErrorRecord(BaseModel):
    """One input row that could not be imported: its 0-based index in the input, its id if known, and why."""

    row: int
    id: str | None = None
    field: str | None = None
    reason: str

    @classmethod
    def from_schema_error(cls, exc: SchemaError, row: int) -> ImportErrorRecord:
        return cls(row=exc.row if exc.row is not None else row, id=exc.id, field=exc.field, reason=exc.reason)

    def __str__(self) -> str:
        where = [f"row {self.row}"]
        if self.id is not None:
            where.append(f"id={self.id!r}")
        if self.field:
            where.append(f"field {self.field!r}")
        return f"{', '.join(where)}: {self.reason}"


@dataclass
class ImportResult:
    """Samples imported from one input, and the rows that were skipped."""

    format: str
    samples: list[Sample] = field(default_factory=list)
    errors: list[ImportErrorRecord] = field(default_factory=list)
    n_rows: int = 0
    output: Path | None = None

    @property
    def n_imported(self) -> int:
        return len(self.samples)

    @property
    def n_skipped(self) -> int:
        return len(self.errors)


# --------------------------------------------------------------------------------------------------------------
# Row reading layer
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowReadError:
    """Stands in for a row the container itself could not parse (a bad jsonl line), so reading can go on."""

    reason: str


@dataclass
class RowSource:
    """Raw rows of an input, and how many there are when that is known up front (for progress bars)."""

    rows: Iterable[Any]
    total: int | None
    description: str

    def __iter__(self) -> Iterator[Any]:
        return iter(self.rows)


def _is_hf_dataset(obj: Any) -> bool:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        return False
    return isinstance(obj, datasets.Dataset | datasets.DatasetDict)


def _pick_split(dsd: Any, split: str | None) -> Any:
    names = list(dsd.keys())
    if split is not None:
        if split not in dsd:
            raise ValueError(f"no split {split!r} in this dataset (splits: {', '.join(names)})")
        return dsd[split]
    if len(names) == 1:
        return dsd[names[0]]
    raise ValueError(f"the dataset has several splits ({', '.join(names)}): choose one with split=/--split")


def _hf_rows(ds: Any) -> Iterator[dict[str, Any]]:
    # Arrow format gives the stored structs ({bytes, path}) rather than decoded PIL images, so image bytes
    # arrive untouched (no re-encoding) whatever features the dataset declares.
    for table in ds.with_format("arrow").iter(batch_size=ROW_BATCH):
        yield from table.to_pylist()


def _hf_source(obj: Any, split: str | None, description: str) -> RowSource:
    import datasets

    ds = _pick_split(obj, split) if isinstance(obj, datasets.DatasetDict) else obj
    return RowSource(rows=_hf_rows(ds), total=len(ds), description=description)


def _parquet_rows(paths: list[Path]) -> Iterator[dict[str, Any]]:
    for p in paths:
        for batch in pq.ParquetFile(p).iter_batches(batch_size=ROW_BATCH):
            yield from batch.to_pylist()


def _jsonl_rows(paths: list[Path]) -> Iterator[Any]:
    for p in paths:
        with open(p, encoding="utf-8") as f:
            for lineno, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    yield RowReadError(f"{p.name} line {lineno} is not valid JSON ({exc.msg} at column {exc.colno})")


def _json_rows(path: Path) -> list[Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, list):
        raise ValueError(f"{path}: a .json input must hold a list of rows, found {type(data).__name__}")
    return data


def _count_jsonl(paths: list[Path]) -> int:
    n = 0
    for p in paths:
        with open(p, encoding="utf-8") as f:
            n += sum(1 for line in f if line.strip())
    return n


def _matches_split(path: Path, root: Path, split: str) -> bool:
    rel = path.relative_to(root)
    if split in rel.parts[:-1]:
        return True
    name = path.name
    return any(name.startswith(split + sep) for sep in ("-", ".", "_"))


def _file_source(paths: list[Path], description: str) -> RowSource:
    suffixes = {p.suffix for p in paths}
    if suffixes == {".parquet"}:
        total = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
        return RowSource(rows=_parquet_rows(paths), total=total, description=description)
    if suffixes == {".jsonl"}:
        return RowSource(rows=_jsonl_rows(paths), total=_count_jsonl(paths), description=description)
    if suffixes == {".json"} and len(paths) == 1:
        rows = _json_rows(paths[0])
        return RowSource(rows=rows, total=len(rows), description=description)
    raise ValueError(f"{description}: unsupported input ({', '.join(sorted(suffixes))}); use .parquet, .jsonl or .json")


def _dir_source(root: Path, split: str | None) -> RowSource:
    import datasets

    if (root / "dataset_dict.json").exists() or (root / "state.json").exists():
        return _hf_source(datasets.load_from_disk(str(root)), split, str(root))
    for pattern in ("*.parquet", "*.jsonl"):
        files = sorted(p for p in root.rglob(pattern) if p.is_file())
        if split is not None:
            files = [p for p in files if _matches_split(p, root, split)]
        if files:
            return _file_source(files, str(root))
    which = f" for split {split!r}" if split else ""
    raise FileNotFoundError(f"{root}: no parquet or jsonl files{which}, and not a datasets.save_to_disk directory")


def open_rows(source: Any, *, split: str | None = None) -> RowSource:
    """Raw rows of ``source``: a path (file or directory), a ``datasets.Dataset``/``DatasetDict``, or a list."""
    if _is_hf_dataset(source):
        return _hf_source(source, split, type(source).__name__)
    if isinstance(source, str | Path):
        p = Path(source).expanduser()
        if p.is_dir():
            return _dir_source(p, split)
        if not p.exists():
            raise FileNotFoundError(f"{source}: no such file or directory")
        return _file_source([p], str(p))
    if isinstance(source, list | tuple):
        return RowSource(rows=list(source), total=len(source), description="rows")
    raise TypeError(f"cannot read rows from {type(source).__name__}: give a path, a datasets.Dataset or a list")


# --------------------------------------------------------------------------------------------------------------
# Shared helpers for converters
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportContext:
    """What a converter needs besides the row: the format name, the media root, the expected modality."""

    format: str
    media_root: Path | None = None
    modality: str | None = None


Converter = Callable[[Any, int, ImportContext], Sample]


class _RowError(Exception):
    """A reason a row is bad, before the row index/id are attached."""

    def __init__(self, reason: str, field: str | None = None):
        super().__init__(reason)
        self.reason, self.field = reason, field


def parse_literal(text: str) -> Any:
    """Parse a JSON or Python-literal string (``ast.literal_eval``; never ``eval``); ValueError when it is neither."""
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        pass
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        preview = text if len(text) <= 80 else text[:77] + "..."
        raise ValueError(f"not valid JSON or a Python literal ({type(exc).__name__}): {preview!r}") from None


def _maybe_parse(value: Any, field: str) -> Any:
    if isinstance(value, str):
        try:
            return parse_literal(value)
        except ValueError as exc:
            raise _RowError(str(exc), field) from None
    return value


def _jsonable(value: Any) -> Any:
    """A JSON-safe copy of source metadata (bytes are summarised; they belong in media, not metadata)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    return str(value)


def derive_id(prefix: str, media_key: str, questions: list[str]) -> str:
    """Stable id from the media key and question texts (see the module docstring)."""
    digest = hashlib.sha1(json.dumps([media_key, questions], ensure_ascii=False).encode("utf-8")).hexdigest()
    return f"{prefix}-{digest[:16]}"


def _structured_or_text(value: Any) -> Any:
    """A string holding a JSON/literal list or object is parsed; any other value (plain text too) is kept.

    Prompts and media fields arrive either way, and a plain prompt may well start with "[" ("[mm:ss] ...").
    """
    if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
        try:
            parsed = parse_literal(value)
        except ValueError:
            return value
        if isinstance(parsed, list | tuple | Mapping):
            return parsed
    return value


def _strip_placeholders(text: str) -> str:
    return _PLACEHOLDER_RE.sub("", text).strip()


def _content_text(content: Any) -> str:
    """Text of a chat message's content: a string, or a list of parts whose text parts are joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list | tuple):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "".join(texts)
    raise _RowError(f"message content must be text or a list of parts, got {type(content).__name__}", "prompt")


def _message_role(msg: Mapping[str, Any]) -> str:
    return str(msg.get("role", msg.get("from", ""))).strip().lower()


def _message_content(msg: Mapping[str, Any]) -> Any:
    return msg.get("content", msg.get("value"))


def prompt_from_messages(value: Any, default: str) -> tuple[str, str | None]:
    """Prompt text from verl's ``prompt`` (messages, a JSON string of them, or plain text) and any system text.

    ``<image>``/``<video>`` placeholders are removed; an empty prompt falls back to ``default``.
    """
    value = _structured_or_text(value)
    if value is None:
        return default, None
    if isinstance(value, str):
        return _strip_placeholders(value) or default, None
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(m, Mapping) for m in value):
        raise _RowError("prompt must be a list of chat messages {role, content} or a string", "prompt")
    user = [_content_text(_message_content(m)) for m in value if _message_role(m) in ("user", "human", "")]
    system = [_content_text(_message_content(m)) for m in value if _message_role(m) == "system"]
    text = _strip_placeholders("\n".join(user))
    return text or default, ("\n".join(system) or None)


def _mcq(question: Any, options: Any, answer: Any, kind: Any, field: str) -> MCQ:
    if not isinstance(question, str):
        raise _RowError(f"question must be a string, got {type(question).__name__}", f"{field}.question")
    options = _maybe_parse(options, f"{field}.choices")
    if not isinstance(options, list | tuple) or not all(isinstance(o, str) for o in options):
        raise _RowError("choices must be a list of strings", f"{field}.choices")
    if answer is None:
        raise _RowError("missing answer", f"{field}.answer")
    try:
        return MCQ.from_labelled(question, list(options), answer, kind=None if kind is None else str(kind))
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise _RowError(first["msg"].removeprefix("Value error, "), f"{field}.{loc}" if loc else field) from None
    except ValueError as exc:
        raise _RowError(str(exc), f"{field}.answer") from None


def mcqs_from_ground_truth(
    value: Any, field: str = "reward_model.ground_truth", *, allow_empty: bool = False
) -> list[MCQ]:
    """MCQs from a verl ground truth: a list of {question, choices, answer}, possibly as a JSON/literal string."""
    value = _maybe_parse(value, field)
    if value is None:
        raise _RowError("missing ground truth", field)
    if isinstance(value, Mapping):
        value = [value]
    if allow_empty and isinstance(value, list | tuple) and not value:
        return []
    if not isinstance(value, list | tuple) or not value:
        raise _RowError("ground truth must be a non-empty list of {question, choices, answer}", field)
    mcqs = []
    for i, item in enumerate(value):
        f = f"{field}[{i}]"
        if not isinstance(item, Mapping):
            raise _RowError(f"expected a {{question, choices, answer}} object, got {type(item).__name__}", f)
        choices = item.get("choices", item.get("options"))
        mcqs.append(_mcq(item.get("question"), choices, item.get("answer"), item.get("kind"), f))
    return mcqs


def _resolve_existing(path: str, ctx: ImportContext, what: str, field: str) -> str:
    """Absolute path of a media file that must exist (relative paths need ``media_root``)."""
    path = path.removeprefix("file://")
    p = Path(path).expanduser()
    if not p.is_absolute():
        if ctx.media_root is None:
            raise _RowError(f"relative {what} path {path!r} needs a media root (--media-root)", field)
        p = ctx.media_root / p
    if not p.is_file():
        raise _RowError(f"{what} file not found: {p}", field)
    return str(p)


def _sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


# --------------------------------------------------------------------------------------------------------------
# verl-style rows: caprl-qa, caprl-video-qa, verl
# --------------------------------------------------------------------------------------------------------------


def _single(value: Any, field: str, what: str) -> Any:
    value = _structured_or_text(value)
    if isinstance(value, list | tuple):
        if len(value) != 1:
            reason = f"expected exactly one {what}, got {len(value)} (multi-{what} rows are not supported)"
            raise _RowError(reason, field)
        return value[0]
    return value


def _image_from_row(row: Mapping[str, Any], ctx: ImportContext) -> tuple[ImageMedia, dict[str, Any]]:
    """The row's image: embedded bytes when present (source path kept in metadata), else an existing file."""
    if row.get("image") is not None:
        fld, value = "image", row["image"]
    else:
        fld, value = "images", _single(row.get("images"), "images", "image")
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        path = path if path is not None else value.get("image")
    elif isinstance(value, bytes | bytearray):
        data, path = value, None
    elif isinstance(value, str):
        data, path = None, value
    else:
        raise _RowError("image must be {bytes, path}, bytes or a path", fld)
    if data:
        return ImageMedia(data=bytes(data)), ({"image_path": path} if path else {})
    if isinstance(path, str) and path:
        return ImageMedia(path=_resolve_existing(path, ctx, "image", fld)), {"image_path": path}
    raise _RowError("image has neither bytes nor a path", fld)


def _video_from_row(row: Mapping[str, Any], ctx: ImportContext) -> tuple[VideoMedia, dict[str, Any]]:
    """The row's video (one path, or a verl {video, fps|nframes, max_frames} dict) resolved against media_root."""
    value = _single(row.get("videos", row.get("video")), "videos", "video")
    sampling = FrameSampling()
    if isinstance(value, Mapping):
        keys = {"fps": value.get("fps"), "num_frames": value.get("nframes"), "max_frames": value.get("max_frames")}
        try:
            sampling = FrameSampling(**{k: v for k, v in keys.items() if v is not None})
        except ValidationError as exc:
            raise _RowError(f"bad frame sampling: {exc.errors()[0]['msg']}", "videos") from None
        value = value.get("video", value.get("path"))
    if not isinstance(value, str) or not value.strip():
        raise _RowError("video must be a path (or a {video: path} dict)", "videos")
    return VideoMedia(path=_resolve_existing(value, ctx, "video", "videos"), sampling=sampling), {"video_path": value}


def _mapping(value: Any, field: str) -> dict[str, Any]:
    value = _maybe_parse(value, field)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _RowError(f"{field} must be an object, got {type(value).__name__}", field)
    return dict(value)


def _row_id(row: Mapping[str, Any], extra: Mapping[str, Any]) -> str | None:
    for value in (row.get("id"), extra.get("id")):
        if value is not None and str(value).strip():
            return str(value)
    return None


def _require_mapping(row: Any) -> Mapping[str, Any]:
    if not isinstance(row, Mapping):
        raise _RowError(f"expected a row object, got {type(row).__name__}")
    return row


def convert_verl_row(row: Any, index: int, ctx: ImportContext) -> Sample:
    """One verl-style row (CapRL-QA-75K, CapRL-Video-QA-20K, or our own verl export) -> Sample."""
    from caprl.data.export import is_caprl_extra_info, restore_sample

    row = _require_mapping(row)
    extra = _mapping(row.get("extra_info"), "extra_info")
    ours = is_caprl_extra_info(extra)
    reward_model = _mapping(row.get("reward_model"), "reward_model")
    gt_field = "reward_model.ground_truth" if "ground_truth" in reward_model else "ground_truth"
    # Our own samples may legitimately have no MCQs yet; a public row without any is broken.
    gt = reward_model.get("ground_truth", row.get("ground_truth"))
    mcqs = mcqs_from_ground_truth(gt, gt_field, allow_empty=ours)
    if ours:
        try:
            return restore_sample(row, extra, mcqs)
        except ValueError as exc:
            raise _RowError(f"bad caprl export fields: {exc}", "extra_info") from None

    has_video = row.get("videos") is not None or row.get("video") is not None
    modality = ctx.modality or ("video" if has_video else "image")
    media: ImageMedia | VideoMedia
    if modality == "video":
        if not has_video:
            raise _RowError("no video: expected a 'videos' column", "videos")
        media, media_meta = _video_from_row(row, ctx)
        media_key = media_meta["video_path"]
    else:
        if row.get("image") is None and row.get("images") is None:
            raise _RowError("no image: expected an 'image' or 'images' column", "image")
        media, media_meta = _image_from_row(row, ctx)
        media_key = media.path or _sha1(media.data or b"")
    default = DEFAULT_VIDEO_PROMPT if modality == "video" else DEFAULT_IMAGE_PROMPT
    prompt, system = prompt_from_messages(row.get("prompt"), default)

    rid = _row_id(row, extra)
    sid = rid or derive_id(ctx.format, media_key, [q.question for q in mcqs])
    source: dict[str, Any] = {"format": ctx.format, "row": index, **media_meta}
    if rid is not None:
        source["id"] = rid
    for key in ("data_source", "ability"):
        if row.get(key) is not None:
            source[key] = _jsonable(row[key])
    if system:
        source["system_prompt"] = system
    if extra:
        source["extra_info"] = _jsonable(extra)
    return Sample(id=sid, media=media, prompt=prompt, mcqs=mcqs, metadata={"source": source})


# --------------------------------------------------------------------------------------------------------------
# caprl-v1 rows
# --------------------------------------------------------------------------------------------------------------

# One option label: "(A)", "（A）", "[A]" anywhere, or "A)", "A.", "A:", "A）" after whitespace, the start or CJK
# punctuation ("？A）"). "A." / "A:" must be followed by whitespace so that "U.S." or "3:30" never count; closing
# brackets need no space after them ("A）红色").
_OPTION_LABEL_RE = re.compile(
    r"[(（](?P<p>[A-Z])[)）]|\[(?P<b>[A-Z])\]"
    r"|(?<![^\s\u3000-\u303f\uff00-\uffef])(?P<l>[A-Z])(?P<c>[)）：]|[.:](?=\s|$))"
)
_SAME_STYLE = {"）": ")", "：": ":"}  # full-width closers count as their ASCII twins
_OPTIONS_HEADER_RE = re.compile(r"(?:^|\n)\s*(?:options|choices)\s*[:：]?\s*$", re.I)


@dataclass(frozen=True)
class _Label:
    start: int
    end: int
    letter: str
    style: str
    line_start: bool


def _labels(text: str) -> list[_Label]:
    out = []
    for m in _OPTION_LABEL_RE.finditer(text):
        letter = m.group("p") or m.group("b") or m.group("l")
        closer = m.group("c")
        style = "()" if m.group("p") else "[]" if m.group("b") else _SAME_STYLE.get(closer, closer)
        line_start = text[text.rfind("\n", 0, m.start()) + 1 : m.start()].strip() == ""
        out.append(_Label(m.start(), m.end(), letter, style, line_start))
    return out


def _best_chain(labels: list[_Label]) -> list[_Label]:
    """Longest run A, B, C, ... in order and in one label style; ties go to the later run (options come last)."""
    best: list[_Label] = []
    for i, first in enumerate(labels):
        if first.letter != "A":
            continue
        chain = [first]
        for lab in labels[i + 1 :]:
            if lab.style == first.style and lab.letter == LETTERS[len(chain)]:
                chain.append(lab)
        if len(chain) >= len(best):
            best = chain
    return best if len(best) >= 2 else []


def split_question_options(text: str) -> tuple[str, list[str]]:
    """Split a question with embedded options into ``(question, [bare options])``.

    Looks for labels A, B, C, ... in order and in one style (``A)``, ``A.``, ``A:``, ``(A)``, ``[A]``). Labels at
    line starts win over inline ones. With line-start labels the last option ends at its line's end and any text
    after it (e.g. "Answer with the letter.") is appended to the question. Raises ValueError when fewer than two
    labelled options are found.

    >>> split_question_options("What is it?\\nA) cat\\nB) dog")
    ('What is it?', ['cat', 'dog'])
    >>> split_question_options("What is it? (A) cat (B) dog")
    ('What is it?', ['cat', 'dog'])
    """
    labels = _labels(text)
    chain = _best_chain([lab for lab in labels if lab.line_start])
    line_mode = bool(chain)
    chain = chain or _best_chain(labels)
    if not chain:
        raise ValueError("could not find options labelled A, B, ... in the question text")
    question = text[: chain[0].start].strip()
    options = [text[a.end : b.start].strip() for a, b in zip(chain, chain[1:], strict=False)]
    tail = text[chain[-1].end :]
    trailing = ""
    if line_mode and "\n" in tail.strip("\n"):
        tail = tail.lstrip(" \t")
        cut = tail.find("\n")
        tail, trailing = tail[:cut], tail[cut:].strip()
    options.append(tail.strip())
    if not line_mode:
        # Inline lists often separate options with commas or semicolons: "A. red, B. blue".
        options = [o.rstrip(",;，；").strip() for o in options]
    question = _OPTIONS_HEADER_RE.sub("", question).strip()
    if trailing:
        question = f"{question}\n{trailing}" if question else trailing
    return question, options


def _v1_messages(row: Any) -> tuple[list[Mapping[str, Any]], dict[str, Any]]:
    """The chat messages of a v1 row and the row's other fields (id, image, ...) when it is an object."""
    row = _maybe_parse(row, "messages")
    fields: dict[str, Any] = {}
    if isinstance(row, Mapping):
        key = next((k for k in ("messages", "message", "conversations") if k in row), None)
        if key is None:
            raise _RowError("expected a list of chat messages or an object with 'messages'", "messages")
        fields = {k: v for k, v in row.items() if k != key}
        row = _maybe_parse(row[key], key)
    if not isinstance(row, list | tuple) or not row or not all(isinstance(m, Mapping) for m in row):
        raise _RowError("expected a non-empty list of chat messages {role, content}", "messages")
    return list(row), fields


def _v1_pairs(messages: list[Mapping[str, Any]]) -> list[tuple[str, Any]]:
    answers = [m for m in messages if _message_role(m) == "answer"]
    if not answers:
        raise _RowError("no message with role 'answer' holding the QA pairs", "messages")
    content = _message_content(answers[-1])
    if isinstance(content, list | tuple) and content and all(isinstance(p, Mapping) for p in content):
        content = _content_text(content)
    if isinstance(content, str):
        try:
            # A Python literal by definition of the format: literal_eval only, never eval.
            content = ast.literal_eval(content.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise _RowError(
                f"answer is not a Python literal list of (question, letter) pairs ({type(exc).__name__})", "answer"
            ) from None
    if not isinstance(content, list | tuple) or not content:
        raise _RowError("answer must be a non-empty list of (question, letter) pairs", "answer")
    pairs = []
    for i, pair in enumerate(content):
        if not isinstance(pair, list | tuple) or len(pair) != 2 or not isinstance(pair[0], str):
            raise _RowError(f"expected a (question_with_options, letter) pair, got {pair!r:.80}", f"answer[{i}]")
        pairs.append((pair[0], pair[1]))
    return pairs


def _v1_mcq(text: str, letter: Any, field: str) -> MCQ:
    try:
        question, options = split_question_options(text)
    except ValueError as exc:
        raise _RowError(f"{exc}: {text!r:.120}", field) from None
    return _mcq(question, options, letter, None, field)


def _v1_media(messages: list[Mapping[str, Any]], fields: Mapping[str, Any], ctx: ImportContext):
    """Media from a user content part ({"type": "image"|"video", ...}) or the row's image/images/video field."""
    for m in messages:
        content = _message_content(m)
        if not isinstance(content, list | tuple):
            continue
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") not in ("image", "image_url", "video"):
                continue
            kind = "video" if part["type"] == "video" else "image"
            value = part.get(kind, part.get("image_url"))
            if isinstance(value, Mapping):
                value = value.get("url", value.get("path"))
            if isinstance(value, str) and value:
                return _v1_media_from_path(kind, value, ctx)
    for key, kind in (("image", "image"), ("images", "image"), ("video", "video"), ("videos", "video")):
        if fields.get(key) is not None:
            value = _single(fields[key], key, kind)
            if kind == "image" and not isinstance(value, str):
                return _image_from_row({"image": value}, ctx)
            if isinstance(value, str) and value:
                return _v1_media_from_path(kind, value, ctx)
    raise _RowError("no image: expected an image content part or an 'image'/'images' field", "image")


def _v1_media_from_path(kind: str, path: str, ctx: ImportContext):
    resolved = _resolve_existing(path, ctx, kind, kind)
    if kind == "video":
        return VideoMedia(path=resolved), {"video_path": path}
    return ImageMedia(path=resolved), {"image_path": path}


def convert_caprl_v1_row(row: Any, index: int, ctx: ImportContext) -> Sample:
    """One CapRL v1 chat row -> Sample."""
    messages, fields = _v1_messages(row)
    pairs = _v1_pairs(messages)
    mcqs = [_v1_mcq(text, letter, f"answer[{i}]") for i, (text, letter) in enumerate(pairs)]
    media, media_meta = _v1_media(messages, fields, ctx)
    default = DEFAULT_VIDEO_PROMPT if media.type == "video" else DEFAULT_IMAGE_PROMPT
    chat = [m for m in messages if _message_role(m) != "answer"]
    prompt, system = prompt_from_messages(chat, default)

    rid = fields.get("id")
    rid = str(rid) if rid is not None and str(rid).strip() else None
    media_key = next(iter(media_meta.values()), "") or _sha1(getattr(media, "data", None) or b"")
    sid = rid or derive_id(ctx.format, media_key, [q.question for q in mcqs])
    source: dict[str, Any] = {"format": ctx.format, "row": index, **media_meta}
    if rid is not None:
        source["id"] = rid
    if system:
        source["system_prompt"] = system
    others = {k: v for k, v in fields.items() if k not in ("id", "image", "images", "video", "videos")}
    if others:
        source["fields"] = _jsonable(others)
    return Sample(id=sid, media=media, prompt=prompt, mcqs=mcqs, metadata={"source": source})


# --------------------------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------------------------

FORMATS: dict[str, Converter] = {
    "caprl-qa": convert_verl_row,
    "caprl-video-qa": convert_verl_row,
    "caprl-v1": convert_caprl_v1_row,
    "verl": convert_verl_row,
}
_MODALITY = {"caprl-video-qa": "video"}
_NEEDS_MEDIA_ROOT = {"caprl-video-qa"}


def make_context(fmt: str, media_root: str | Path | None = None) -> ImportContext:
    """Check the format name and options up front, before any row is read."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown import format {fmt!r}: choose one of {', '.join(FORMATS)}")
    if fmt in _NEEDS_MEDIA_ROOT and media_root is None:
        raise ValueError(f"format {fmt!r} needs a media root (--media-root): its video paths are relative")
    root = Path(media_root).expanduser().absolute() if media_root is not None else None
    if root is not None and not root.is_dir():
        raise FileNotFoundError(f"media root {root} is not a directory")
    return ImportContext(format=fmt, media_root=root, modality=_MODALITY.get(fmt))


def convert_row(row: Any, index: int, ctx: ImportContext) -> Sample:
    """Convert one raw row; any problem raises a SchemaError naming the row (and id/field when known)."""
    if isinstance(row, RowReadError):
        raise SchemaError(row.reason, row=index)
    rid = None
    if isinstance(row, Mapping) and row.get("id") is not None:
        rid = str(row["id"])
    try:
        return FORMATS[ctx.format](row, index, ctx)
    except _RowError as exc:
        raise SchemaError(exc.reason, row=index, field=exc.field, id=rid) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        fld = ".".join(str(p) for p in first["loc"]) or None
        raise SchemaError(first["msg"].removeprefix("Value error, "), row=index, field=fld, id=rid) from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # Source data can be shaped in ways no check above foresaw; report the row instead of crashing the import.
        raise SchemaError(f"{type(exc).__name__}: {exc}", row=index, id=rid) from None


def import_rows(
    source: Any,
    fmt: str,
    *,
    media_root: str | Path | None = None,
    strict: bool = False,
    split: str | None = None,
    limit: int | None = None,
    on_row: Callable[[int], None] | None = None,
    rows: RowSource | None = None,
) -> ImportResult:
    """Import ``source`` (see ``open_rows``) in format ``fmt``; returns samples and skipped rows.

    ``limit`` caps the number of input rows read. ``strict`` raises the first row's SchemaError; otherwise bad
    rows (and later duplicates of an id) are skipped and recorded. ``on_row(i)`` is called after each row.
    """
    ctx = make_context(fmt, media_root)
    rows = rows if rows is not None else open_rows(source, split=split)
    result = ImportResult(format=fmt)
    first_seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        if limit is not None and index >= limit:
            break
        result.n_rows += 1
        try:
            sample = convert_row(row, index, ctx)
            if sample.id in first_seen:
                raise SchemaError(f"duplicate id (first seen at row {first_seen[sample.id]})", row=index, id=sample.id)
            first_seen[sample.id] = index
            result.samples.append(sample)
        except SchemaError as exc:
            if strict:
                raise
            result.errors.append(ImportErrorRecord.from_schema_error(exc, index))
        if on_row is not None:
            on_row(index)
    return result


_IMAGE_MAGIC = [
    (b"\x89PNG\r\n\x1a\n", ".png"),
    (b"\xff\xd8\xff", ".jpg"),
    (b"GIF87a", ".gif"),
    (b"GIF89a", ".gif"),
    (b"BM", ".bmp"),
]


def _image_suffix(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((ext for magic, ext in _IMAGE_MAGIC if data.startswith(magic)), ".bin")


def extract_media(samples: list[Sample], out_dir: str | Path) -> list[Sample]:
    """Write embedded image bytes to ``out_dir/media/<sha1>.<ext>`` and point the samples at those files.

    Files are named by content, so identical images are written once and re-running is harmless.
    """
    media_dir = Path(out_dir) / "media"
    out = []
    for s in samples:
        if s.media.type == "image" and s.media.data is not None:
            name = f"{_sha1(s.media.data)}{_image_suffix(s.media.data)}"
            target = media_dir / name
            if not target.exists():
                media_dir.mkdir(parents=True, exist_ok=True)
                target.write_bytes(s.media.data)
            s = s.model_copy(update={"media": ImageMedia(path=f"media/{name}")})
        out.append(s)
    return out


ERRORS_NAME = "import_errors.jsonl"


def import_dataset(
    source: Any,
    fmt: str,
    out_dir: str | Path,
    *,
    media_root: str | Path | None = None,
    strict: bool = False,
    split: str | None = None,
    limit: int | None = None,
    extract: bool = False,
    file_format: str = "parquet",
    on_row: Callable[[int], None] | None = None,
    rows: RowSource | None = None,
) -> ImportResult:
    """Import ``source`` and write a caprl dataset to ``out_dir``; skipped rows go to ``import_errors.jsonl``.

    Nothing is written when no row could be imported (the result says why).
    """
    result = import_rows(
        source, fmt, media_root=media_root, strict=strict, split=split, limit=limit, on_row=on_row, rows=rows
    )
    out = Path(out_dir)
    errors_path = out / ERRORS_NAME
    if not result.samples:
        return result
    samples = extract_media(result.samples, out) if extract else result.samples
    manifest = {
        "source": {
            "format": fmt,
            "input": str(source) if isinstance(source, str | Path) else type(source).__name__,
            "split": split,
            "n_rows": result.n_rows,
            "n_imported": result.n_imported,
            "n_skipped": result.n_skipped,
        }
    }
    result.output = write_dataset(samples, out, format=file_format, manifest=manifest)
    result.samples = samples
    if result.errors:
        errors_path.write_text("".join(e.model_dump_json() + "\n" for e in result.errors), encoding="utf-8")
    elif errors_path.exists():
        errors_path.unlink()  # a stale report from an earlier run would describe other data
    return result
