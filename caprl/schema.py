"""The data model every caprl stage shares: MCQ, Media, Sample.

These are pydantic models because they cross boundaries (parquet/jsonl files, HTTP, configs).
Option labels are never stored: an MCQ holds bare option texts and the index of the gold one;
labels (A, B, C, ...) are assigned when an MCQ is rendered, after any shuffling.

>>> q = MCQ.from_labelled("What colour is the circle?", ["A) red", "B) blue", "C) green"], "B")
>>> q.options, q.gold, q.gold_letter
(['red', 'blue', 'green'], 1, 'B')
"""

from __future__ import annotations

import base64
import binascii
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_serializer, field_validator, model_validator

from caprl.errors import InputError

LETTERS = string.ascii_uppercase
MAX_OPTIONS = len(LETTERS)
Modality = Literal["image", "video"]

DEFAULT_IMAGE_PROMPT = "Please describe this image in detail."
DEFAULT_VIDEO_PROMPT = (
    "Please describe this video in detail, in chronological order, "
    "with timestamps in [mm:ss] or [mm:ss - mm:ss] format."
)

# One option label at the start of a string: "A) x", "A. x", "(A) x", "A: x", "[A] x", "A）x".
_LABEL_RE = re.compile(r"^\s*(?:\(\s*([A-Z])\s*\)|\[\s*([A-Z])\s*\]|([A-Z])\s*[\).:：）])\s*(.*)$", re.S)
# A gold answer written as a letter, possibly decorated: "C", "(C)", "C)", "C.", "Answer: C".
_GOLD_RE = re.compile(r"^\s*(?:answer\s*[:：]?\s*)?[\(\[]?\s*([A-Z])\s*[\)\]\.:：）]?\s*$", re.I)


class SchemaError(InputError):
    """A record that does not fit the data model; says which row (or file and 1-based line) and field."""

    def __init__(
        self,
        message: str,
        *,
        row: int | None = None,
        field: str | None = None,
        id: str | None = None,
        source: str | None = None,
        line: int | None = None,
    ):
        self.row, self.field, self.id = row, field, id
        where = [] if source is None else [source]
        if line is not None:
            where.append(f"line {line}")
        elif row is not None:
            where.append(f"row {row}")
        if id is not None:
            where.append(f"id={id!r}")
        if field:
            where.append(f"field {field!r}")
        self.reason = message
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


def split_option_label(text: str) -> tuple[str | None, str]:
    """Split a leading option label off ``text``: ``"(B) blue" -> ("B", "blue")``; no label -> ``(None, text)``."""
    m = _LABEL_RE.match(text)
    if not m:
        return None, text.strip()
    letter = m.group(1) or m.group(2) or m.group(3)
    return letter, m.group(4).strip()


def strip_option_labels(options: list[str]) -> list[str]:
    """Remove labels from a list of options, whatever the source style.

    Labels are removed only when *every* option carries one and they read A, B, C, ... in order, so bare
    options that merely start with a capital ("A. Lincoln" alone, "I think") are left untouched.
    """
    parts = [split_option_label(o) for o in options]
    letters = [p[0] for p in parts]
    if all(letters) and letters == list(LETTERS[: len(options)]):
        return [p[1] for p in parts]
    return [o.strip() for o in options]


def parse_gold(answer: str | int, options: list[str]) -> int:
    """Index of the gold option given a letter ("C", "(C)", "Answer: C"), an index, or the option text."""
    if isinstance(answer, bool):
        raise ValueError(f"gold answer must be a letter, an index or an option text, got {answer!r}")
    if isinstance(answer, int):
        index = answer
    else:
        text = str(answer).strip()
        m = _GOLD_RE.match(text)
        if m and (len(text) <= 3 or text.lower().startswith("answer")):
            index = LETTERS.index(m.group(1).upper())
        else:
            _, bare = split_option_label(text)
            matches = [i for i, o in enumerate(options) if o.strip().lower() in (text.lower(), bare.lower())]
            if len(matches) != 1:
                raise ValueError(f"gold answer {answer!r} is neither a letter nor exactly one of the options")
            index = matches[0]
    if not 0 <= index < len(options):
        raise ValueError(
            f"gold answer {answer!r} points outside the {len(options)} options "
            f"(valid letters: {LETTERS[0]}-{LETTERS[len(options) - 1]})"
        )
    return index


class MCQ(BaseModel):
    """A multiple-choice question: bare option texts and the index of the gold one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    question: str
    options: list[str]
    gold: int
    kind: str | None = None
    """What the question tests (e.g. ``attribute``, ``count``, ``position``, ``text``, ``order``); free-form."""

    @field_validator("question")
    @classmethod
    def _question_not_empty(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("question is empty")
        return v

    @field_validator("options")
    @classmethod
    def _options_valid(cls, v: list[str]) -> list[str]:
        v = [o.strip() for o in v]
        if len(v) < 2:
            raise ValueError(f"an MCQ needs at least 2 options, got {len(v)}")
        if len(v) > MAX_OPTIONS:
            raise ValueError(f"an MCQ can have at most {MAX_OPTIONS} options, got {len(v)}")
        if any(not o for o in v):
            raise ValueError("an option is empty")
        lowered = [o.lower() for o in v]
        dupes = sorted({o for o in lowered if lowered.count(o) > 1})
        if dupes:
            raise ValueError(f"duplicate options: {dupes}")
        return v

    @model_validator(mode="after")
    def _gold_in_range(self) -> MCQ:
        if not 0 <= self.gold < len(self.options):
            raise ValueError(f"gold index {self.gold} is outside the {len(self.options)} options")
        return self

    @classmethod
    def from_labelled(cls, question: str, options: list[str], answer: str | int, kind: str | None = None) -> MCQ:
        """Build from options in any label style (``A) x``, ``A. x``, ``(A) x`` or bare) and a gold letter/text."""
        bare = strip_option_labels(list(options))
        return cls(question=question, options=bare, gold=parse_gold(answer, bare), kind=kind)

    @property
    def gold_letter(self) -> str:
        return LETTERS[self.gold]

    @property
    def gold_text(self) -> str:
        return self.options[self.gold]

    def labelled_options(self, style: str = "{letter}) {text}") -> list[str]:
        """Options with labels in the given style, e.g. ``"{letter}. {text}"`` for ``A. red``."""
        return [style.format(letter=LETTERS[i], text=o) for i, o in enumerate(self.options)]

    def render(self, style: str = "{letter}) {text}") -> str:
        """Question followed by one labelled option per line."""
        return "\n".join([self.question, *self.labelled_options(style)])


class FrameSampling(BaseModel):
    """How frames are taken from a video: at ``fps`` frames per second, or ``num_frames`` evenly spaced.

    Either way at most ``max_frames`` are returned (evenly thinned when there would be more).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fps: float | None = Field(default=None, gt=0)
    num_frames: int | None = Field(default=None, gt=0)
    max_frames: int = Field(default=64, gt=0)

    @model_validator(mode="after")
    def _one_mode(self) -> FrameSampling:
        if self.fps is not None and self.num_frames is not None:
            raise ValueError("give fps or num_frames, not both")
        return self

    @property
    def effective_fps(self) -> float | None:
        """Frames per second when sampling by rate (``fps``, or 2.0 when neither mode is set)."""
        if self.num_frames is not None:
            return None
        return self.fps if self.fps is not None else 2.0


class ImageMedia(BaseModel):
    """An image given by a file path (relative to the dataset root, or absolute) or by its encoded bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["image"] = "image"
    path: str | None = None
    data: bytes | None = Field(default=None, repr=False)
    """Encoded image bytes (PNG/JPEG/...); written as base64 in JSON."""

    @field_validator("data", mode="before")
    @classmethod
    def _decode_base64(cls, v: Any) -> Any:
        # JSON has no bytes type: jsonl files carry embedded images as base64 strings.
        if isinstance(v, str):
            try:
                return base64.b64decode(v, validate=True)
            except binascii.Error:
                raise ValueError("image data is a string but not valid base64") from None
        return v

    @field_serializer("data", when_used="json")
    def _encode_base64(self, v: bytes | None) -> str | None:
        return None if v is None else base64.b64encode(v).decode("ascii")

    @model_validator(mode="after")
    def _has_source(self) -> ImageMedia:
        if self.path is None and self.data is None:
            raise ValueError("an image needs a path or its bytes")
        return self


class VideoMedia(BaseModel):
    """A video file (relative to the dataset root, or absolute) and how frames are sampled from it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["video"] = "video"
    path: str
    sampling: FrameSampling = FrameSampling()

    @field_validator("path")
    @classmethod
    def _path_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("video path is empty")
        return v


Media = Annotated[ImageMedia | VideoMedia, Field(discriminator="type")]


def resolve_media_path(path: str, root: str | Path | None) -> Path:
    """Absolute path of a media file: ``path`` itself when absolute, else relative to the dataset ``root``."""
    p = Path(path)
    if p.is_absolute() or root is None:
        return p
    return Path(root) / p


class Sample(BaseModel):
    """One item: media, the prompt a captioner gets, the MCQs that judge its caption, and where it came from.

    ``references`` holds reference captions by name (the shapes world writes ``terse`` ... ``exhaustive``);
    ``metadata`` holds anything else from the source (JSON-serialisable).
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    media: Media
    prompt: str = DEFAULT_IMAGE_PROMPT
    mcqs: list[MCQ] = Field(default_factory=list)
    references: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("id")
    @classmethod
    def _id_not_empty(cls, v: str) -> str:
        if not str(v).strip():
            raise ValueError("id is empty")
        return str(v)

    @property
    def modality(self) -> str:
        return self.media.type


def validation_error_to_schema_error(
    exc: ValidationError, *, row: int | None = None, id: str | None = None
) -> SchemaError:
    """Turn pydantic's error into one line naming the row and the first failing field (``mcqs.2.options``)."""
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"] if p not in ("image", "video")) or None
    msg = first["msg"].removeprefix("Value error, ")
    extra = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return SchemaError(msg + extra, row=row, field=field, id=id)


def sample_from_dict(record: dict[str, Any], *, row: int | None = None) -> Sample:
    """Validate one record into a Sample; a bad record raises SchemaError naming its row and field."""
    try:
        return Sample.model_validate(record)
    except ValidationError as exc:
        rid = record.get("id") if isinstance(record, dict) else None
        raise validation_error_to_schema_error(exc, row=row, id=None if rid is None else str(rid)) from None
