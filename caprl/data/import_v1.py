"""CapRL v1 training rows -> Samples (``caprl-v1``).

A row is a list of chat messages (or an object holding one under ``messages``/``conversations`` next to ``id``,
``image``, ...; or a JSON string of either) whose last message with role ``answer`` holds a Python-literal list of
``(question_with_options, letter)`` pairs. The literal is read with ``ast.literal_eval`` only, never ``eval``; each
question string is split with ``caprl.data.mcq_text`` (every CapRL option style, the "cannot answer" option
dropped). The media is a user content part (``{"type": "image", "image": path}``) or the row's ``image`` field.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from typing import Any

from caprl.data.convert import (
    ImportContext,
    RowError,
    content_text,
    derive_id,
    image_from_row,
    jsonable,
    maybe_parse,
    message_content,
    message_role,
    prompt_from_messages,
    resolve_existing,
    sha1,
    single,
)
from caprl.data.mcq_text import MCQTextError, mcq_from_text
from caprl.schema import DEFAULT_IMAGE_PROMPT, DEFAULT_VIDEO_PROMPT, MCQ, ImageMedia, Sample, VideoMedia


def _v1_messages(row: Any) -> tuple[list[Mapping[str, Any]], dict[str, Any]]:
    """The chat messages of a v1 row and the row's other fields (id, image, ...) when it is an object."""
    row = maybe_parse(row, "messages")
    fields: dict[str, Any] = {}
    if isinstance(row, Mapping):
        key = next((k for k in ("messages", "message", "conversations") if k in row), None)
        if key is None:
            raise RowError("expected a list of chat messages or an object with 'messages'", "messages")
        fields = {k: v for k, v in row.items() if k != key}
        row = maybe_parse(row[key], key)
    if not isinstance(row, list | tuple) or not row or not all(isinstance(m, Mapping) for m in row):
        raise RowError("expected a non-empty list of chat messages {role, content}", "messages")
    return list(row), fields


def _v1_pairs(messages: list[Mapping[str, Any]]) -> list[tuple[str, Any]]:
    answers = [m for m in messages if message_role(m) == "answer"]
    if not answers:
        raise RowError("no message with role 'answer' holding the QA pairs", "messages")
    content = message_content(answers[-1])
    if isinstance(content, list | tuple) and content and all(isinstance(p, Mapping) for p in content):
        content = content_text(content)
    if isinstance(content, str):
        try:
            # A Python literal by definition of the format: literal_eval only, never eval.
            content = ast.literal_eval(content.strip())
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
            raise RowError(
                f"answer is not a Python literal list of (question, letter) pairs ({type(exc).__name__})", "answer"
            ) from None
    if not isinstance(content, list | tuple) or not content:
        raise RowError("answer must be a non-empty list of (question, letter) pairs", "answer")
    pairs = []
    for i, pair in enumerate(content):
        if not isinstance(pair, list | tuple) or len(pair) != 2 or not isinstance(pair[0], str):
            raise RowError(f"expected a (question_with_options, letter) pair, got {pair!r:.80}", f"answer[{i}]")
        pairs.append((pair[0], pair[1]))
    return pairs


def _v1_mcq(text: str, letter: Any, field: str) -> MCQ:
    if isinstance(letter, bool) or not isinstance(letter, str | int):
        raise RowError(f"the gold answer must be a letter, got {letter!r:.40}", field)
    try:
        return mcq_from_text(text, letter)
    except MCQTextError as exc:
        shown = f": {text!r:.120}" if exc.field == "question" else ""
        raise RowError(f"{exc.reason}{shown}", f"{field}.{exc.field}") from None


def _v1_media(messages: list[Mapping[str, Any]], fields: Mapping[str, Any], ctx: ImportContext):
    """Media from a user content part ({"type": "image"|"video", ...}) or the row's image/images/video field."""
    for m in messages:
        content = message_content(m)
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
            value = single(fields[key], key, kind)
            if kind == "image" and not isinstance(value, str):
                return image_from_row({"image": value}, ctx)
            if isinstance(value, str) and value:
                return _v1_media_from_path(kind, value, ctx)
    raise RowError("no image: expected an image content part or an 'image'/'images' field", "image")


def _v1_media_from_path(kind: str, path: str, ctx: ImportContext):
    resolved = resolve_existing(path, ctx, kind, kind)
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
    chat = [m for m in messages if message_role(m) != "answer"]
    prompt, system = prompt_from_messages(chat, default)

    rid = fields.get("id")
    rid = str(rid) if rid is not None and str(rid).strip() else None
    media_key = next(iter(media_meta.values()), "") or sha1(getattr(media, "data", None) or b"")
    sid = rid or derive_id(ctx.format, media_key, [q.question for q in mcqs])
    source: dict[str, Any] = {"format": ctx.format, "row": index, **media_meta}
    if rid is not None:
        source["id"] = rid
    if system:
        source["system_prompt"] = system
    others = {k: v for k, v in fields.items() if k not in ("id", "image", "images", "video", "videos")}
    if others:
        source["fields"] = jsonable(others)
    return Sample(id=sid, media=media, prompt=prompt, mcqs=mcqs, metadata={"source": source})
