"""What the per-format converters share: the import context, row errors, chat prompts, ground truths, media.

A converter (``caprl.data.import_verl``, ``caprl.data.import_v1``) turns one raw row into a ``Sample`` and raises
``RowError`` (a reason and the field) for a row that does not fit; the driver (``caprl.data.importers``) attaches
the row's index and id.

Ids: a row's ``id`` (or ``extra_info.id``) when it has one; otherwise ``<prefix>-<16 hex>`` where the hex is a
SHA-1 of the media key (video/image path, or the image bytes' SHA-1) and the question texts (``derive_id``). Such
ids do not depend on the row's position, so re-importing a filtered or reordered file gives the same ids.

Media paths that are relative resolve against ``media_root`` and are stored absolute, because an imported
dataset's own relative paths resolve against its output directory.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from caprl.data.mcq_text import MCQTextError, mcqs_from_ground_truth, parse_literal
from caprl.schema import MCQ, FrameSampling, ImageMedia, Sample, VideoMedia

_PLACEHOLDER_RE = re.compile(r"<(?:image|video)>")


@dataclass(frozen=True)
class ImportContext:
    """What a converter needs besides the row: the format name, the media root, the expected modality."""

    format: str
    media_root: Path | None = None
    modality: str | None = None


Converter = Callable[[Any, int, ImportContext], Sample]


class RowError(Exception):
    """A reason a row is bad (and the field), before the driver attaches the row's index and id."""

    def __init__(self, reason: str, field: str | None = None):
        super().__init__(reason)
        self.reason, self.field = reason, field


def maybe_parse(value: Any, field: str) -> Any:
    if isinstance(value, str):
        try:
            return parse_literal(value)
        except ValueError as exc:
            raise RowError(str(exc), field) from None
    return value


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of source metadata (bytes are summarised; they belong in media, not metadata)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    return str(value)


def derive_id(prefix: str, media_key: str, questions: list[str]) -> str:
    """Stable id from the media key and question texts (see the module docstring)."""
    digest = hashlib.sha1(json.dumps([media_key, questions], ensure_ascii=False).encode("utf-8")).hexdigest()
    return f"{prefix}-{digest[:16]}"


def structured_or_text(value: Any) -> Any:
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


def strip_placeholders(text: str) -> str:
    return _PLACEHOLDER_RE.sub("", text).strip()


def content_text(content: Any) -> str:
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
    raise RowError(f"message content must be text or a list of parts, got {type(content).__name__}", "prompt")


def message_role(msg: Mapping[str, Any]) -> str:
    return str(msg.get("role", msg.get("from", ""))).strip().lower()


def message_content(msg: Mapping[str, Any]) -> Any:
    return msg.get("content", msg.get("value"))


def prompt_from_messages(value: Any, default: str) -> tuple[str, str | None]:
    """Prompt text from verl's ``prompt`` (messages, a JSON string of them, or plain text) and any system text.

    ``<image>``/``<video>`` placeholders are removed; an empty prompt falls back to ``default``.
    """
    value = structured_or_text(value)
    if value is None:
        return default, None
    if isinstance(value, str):
        return strip_placeholders(value) or default, None
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(m, Mapping) for m in value):
        raise RowError("prompt must be a list of chat messages {role, content} or a string", "prompt")
    user = [content_text(message_content(m)) for m in value if message_role(m) in ("user", "human", "")]
    system = [content_text(message_content(m)) for m in value if message_role(m) == "system"]
    text = strip_placeholders("\n".join(user))
    return text or default, ("\n".join(system) or None)


def ground_truth_mcqs(value: Any, field: str, *, allow_empty: bool = False) -> list[MCQ]:
    """MCQs from a ground truth (see ``caprl.data.mcq_text.mcqs_from_ground_truth``); a bad one raises ``RowError``
    naming the question and field under ``field`` (``reward_model.ground_truth[1].options``)."""
    if value is None:
        raise RowError("missing ground truth", field)
    try:
        return mcqs_from_ground_truth(value, allow_empty=allow_empty)
    except MCQTextError as exc:
        raise RowError(exc.reason, exc.field_path(field)) from None


def resolve_existing(path: str, ctx: ImportContext, what: str, field: str) -> str:
    """Absolute path of a media file that must exist (relative paths need ``media_root``)."""
    path = path.removeprefix("file://")
    p = Path(path).expanduser()
    if not p.is_absolute():
        if ctx.media_root is None:
            raise RowError(f"relative {what} path {path!r} needs a media root (--media-root)", field)
        p = ctx.media_root / p
    if not p.is_file():
        raise RowError(f"{what} file not found: {p}", field)
    return str(p)


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def single(value: Any, field: str, what: str) -> Any:
    value = structured_or_text(value)
    if isinstance(value, list | tuple):
        if len(value) != 1:
            reason = f"expected exactly one {what}, got {len(value)} (multi-{what} rows are not supported)"
            raise RowError(reason, field)
        return value[0]
    return value


def image_from_row(row: Mapping[str, Any], ctx: ImportContext) -> tuple[ImageMedia, dict[str, Any]]:
    """The row's image: embedded bytes when present (source path kept in metadata), else an existing file."""
    if row.get("image") is not None:
        fld, value = "image", row["image"]
    else:
        fld, value = "images", single(row.get("images"), "images", "image")
    if isinstance(value, Mapping):
        data, path = value.get("bytes"), value.get("path")
        path = path if path is not None else value.get("image")
    elif isinstance(value, bytes | bytearray):
        data, path = value, None
    elif isinstance(value, str):
        data, path = None, value
    else:
        raise RowError("image must be {bytes, path}, bytes or a path", fld)
    if data:
        return ImageMedia(data=bytes(data)), ({"image_path": path} if path else {})
    if isinstance(path, str) and path:
        return ImageMedia(path=resolve_existing(path, ctx, "image", fld)), {"image_path": path}
    raise RowError("image has neither bytes nor a path", fld)


def video_from_row(row: Mapping[str, Any], ctx: ImportContext) -> tuple[VideoMedia, dict[str, Any]]:
    """The row's video (one path, or a verl {video, fps|nframes, max_frames} dict) resolved against media_root."""
    value = single(row.get("videos", row.get("video")), "videos", "video")
    sampling = FrameSampling()
    if isinstance(value, Mapping):
        keys = {"fps": value.get("fps"), "num_frames": value.get("nframes"), "max_frames": value.get("max_frames")}
        try:
            sampling = FrameSampling(**{k: v for k, v in keys.items() if v is not None})
        except ValidationError as exc:
            raise RowError(f"bad frame sampling: {exc.errors()[0]['msg']}", "videos") from None
        value = value.get("video", value.get("path"))
    if not isinstance(value, str) or not value.strip():
        raise RowError("video must be a path (or a {video: path} dict)", "videos")
    return VideoMedia(path=resolve_existing(value, ctx, "video", "videos"), sampling=sampling), {"video_path": value}


def mapping_field(value: Any, field: str) -> dict[str, Any]:
    value = maybe_parse(value, field)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RowError(f"{field} must be an object, got {type(value).__name__}", field)
    return dict(value)
