"""VLM-judge reward: a vision-language model looks at the media and a caption and scores the caption.

An alternative to the question-answering reward (CapRL++ ships one for video). The judge is any ``Captioner``; it
gets the media and a prompt holding the caption, and must answer with a JSON object of integer scores 0-10:

- ``factuality``: what the caption states is correct (objects, attributes, counts, actions, text);
- ``temporal_alignment`` (video only): events in the right order, timestamps at the right times;
- ``coverage``: how much of the important content the caption describes;
- ``hallucination``: **freedom** from invented content, 10 = nothing invented. Higher is better on every
  dimension, so no score is inverted when fusing. The prompt says so explicitly.

Fusion. ``score = sum_d w_d * s_d / 10 / sum_d w_d`` over the dimensions that apply, so it lies in [0, 1]. For a
video all four apply and the default weights 0.30 / 0.25 / 0.25 / 0.20 (factuality, temporal alignment, coverage,
hallucination) sum to 1, as in the reference. For an image temporal alignment does not apply: it is not asked for,
ignored if returned anyway, and the remaining weights are renormalised (0.30, 0.25, 0.20 over 0.75 = 0.40, 0.333,
0.267).

Parsing is tolerant of form, strict about content. Accepted: code fences, prose around the object, ``<think>``
blocks, single quotes and trailing commas (read with ``ast.literal_eval``, never ``eval``), key case/spacing
(``"Temporal Alignment"``), numbers written as strings, and explicitly stated scales (``"7/10"``, ``"0.7/1"``,
``"80%"``, ``{"score": 8}`` per dimension, or a ``"scale"`` key such as ``"0-1"``). Rejected: a missing dimension
(never filled in or renormalised away), a value out of range, a non-number, several different score objects in one
answer, and values that all lie in [0, 1] with a fraction when no scale is stated (a 0-1 answer to a 0-10 question
cannot be told from a very low 0-10 answer, so it is not guessed).

A rejected answer is retried (``retries`` more times, each at a new seed and at ``retry_temperature`` at least, so
it can come out differently); if every attempt fails, the result is reported with ``score=None``, the reason,
and every raw answer. A judge never invents a score (no 0.0 for "could not parse").

Videos: the reference judge watches 2 frames per second; load videos for the judge with ``JUDGE_SAMPLING``.

>>> judge = VLMJudge(TransformersCaptioner("Qwen/Qwen2.5-VL-7B-Instruct"))        # doctest: +SKIP
>>> judge.score([JudgeItem(media=frames, caption="[00:00] A dog runs ...", id="v1")])  # doctest: +SKIP
[JudgeResult(id='v1', score=0.71, scores={'factuality': 8.0, ...}, attempts=1, ...)]
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from PIL import Image

from caprl.captioners.base import Captioner, CaptionerError, CaptionRequest, GenerationSettings
from caprl.data.media import VideoFrames
from caprl.schema import FrameSampling

DIMENSIONS: tuple[str, ...] = ("factuality", "temporal_alignment", "coverage", "hallucination")
IMAGE_DIMENSIONS: tuple[str, ...] = ("factuality", "coverage", "hallucination")
DEFAULT_WEIGHTS: dict[str, float] = {
    "factuality": 0.30,
    "temporal_alignment": 0.25,
    "coverage": 0.25,
    "hallucination": 0.20,
}
SCALE_MAX = 10.0
JUDGE_SAMPLING = FrameSampling(fps=2.0)
"""Frame sampling for judged videos (2 fps, as the reference judge)."""

DEFAULT_SETTINGS = GenerationSettings(max_new_tokens=256, temperature=0.0, seed=0)

_CRITERIA = {
    "factuality": (
        "is what the caption states correct (objects, attributes, counts, actions, positions, visible text)? "
        "10 = everything stated is correct, 0 = almost nothing stated is correct."
    ),
    "temporal_alignment": (
        "are events described in the order they happen, and do any timestamps match when they happen? "
        "10 = order and times all right, 0 = order and times wrong."
    ),
    "coverage": (
        "how much of the important content does the caption describe? "
        "10 = nothing important is missing, 0 = almost nothing is described."
    ),
    "hallucination": (
        "is the caption free of invented content (things or events that are not there)? "
        "10 = nothing is invented, 0 = most of it is invented. Higher means fewer hallucinations."
    ),
}


def dimensions_for(modality: str) -> tuple[str, ...]:
    """The dimensions asked for and fused for ``"image"`` or ``"video"``."""
    if modality == "video":
        return DIMENSIONS
    if modality == "image":
        return IMAGE_DIMENSIONS
    raise ValueError(f"modality must be 'image' or 'video', got {modality!r}")


def judge_prompt(caption: str, modality: str, *, duration: float | None = None) -> str:
    """The judge's instruction for one caption (the media goes beside it, in the same user turn)."""
    dims = dimensions_for(modality)
    if modality == "video":
        length = f"{duration:.1f} seconds long, " if duration else ""
        intro = (
            f"You are checking a caption of a video ({length}frames shown in time order). "
            "Compare the caption with what the video actually shows."
        )
    else:
        intro = "You are checking a caption of an image. Compare the caption with what the image actually shows."
    criteria = "\n".join(f"- {d}: {_CRITERIA[d]}" for d in dims)
    template = "{" + ", ".join(f'"{d}": <0-10>' for d in dims) + "}"
    return (
        f"{intro}\n\nRate the caption on each criterion below with an integer from 0 to 10:\n{criteria}\n\n"
        f'Caption:\n"""\n{caption}\n"""\n\n'
        f"Reply with only this JSON object, filled in, and nothing else:\n{template}"
    )


# ---- parsing ------------------------------------------------------------------------------------------------


class JudgeParseError(ValueError):
    """A judge answer that does not give a valid score for every dimension; ``str(err)`` says why."""


_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)
_KEY_ALIASES = {"temporal": "temporal_alignment", "hallucinations": "hallucination", "factual": "factuality"}
_NUMBER = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*(?:(?:/|out\s+of)\s*(\d+(?:\.\d*)?))?$", re.I)
_PERCENT = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*%$")
_RANGE = re.compile(r"^\s*(?:\d+(?:\.\d*)?)\s*(?:-|–|to)\s*(\d+(?:\.\d*)?)\s*$", re.I)


def _object_spans(text: str) -> list[str]:
    """Every outermost ``{...}`` in ``text``, balanced, with braces inside quoted strings ignored."""
    spans, depth, start, quote, escaped = [], 0, 0, None, False
    for i, ch in enumerate(text):
        if depth and quote:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if depth and ch in "\"'":
            quote = ch
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0:
                spans.append(text[start : i + 1])
    return spans


def _load_object(span: str) -> Any:
    try:
        return json.loads(span)
    except ValueError:
        pass
    try:  # single quotes, trailing commas; literal_eval evaluates literals only
        return ast.literal_eval(span)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return None


def _norm_key(key: Any) -> str:
    k = re.sub(r"[\s\-]+", "_", str(key).strip().lower())
    return _KEY_ALIASES.get(k, k)


def _number(value: Any, dim: str) -> tuple[float, float | None]:
    """A value and the scale maximum it states (``None`` when it states none)."""
    if isinstance(value, Mapping):  # {"score": 8, "reason": "..."}
        inner = {_norm_key(k): v for k, v in value.items()}
        if "score" not in inner:
            raise JudgeParseError(f"{dim}: an object without a 'score' ({json.dumps(value, default=str)[:80]})")
        return _number(inner["score"], dim)
    if isinstance(value, bool) or value is None:
        raise JudgeParseError(f"{dim}: {value!r} is not a number")
    if isinstance(value, (int, float)):
        return float(value), None
    if isinstance(value, str):
        s = value.strip()
        m = _PERCENT.match(s)
        if m:
            return float(m.group(1)), 100.0
        m = _NUMBER.match(s)
        if m:
            denominator = float(m.group(2)) if m.group(2) else None
            if denominator is not None and denominator <= 0:
                raise JudgeParseError(f"{dim}: {value!r} has a zero scale")
            return float(m.group(1)), denominator
    raise JudgeParseError(f"{dim}: {value!r} is not a number")


def _stated_scale(obj: Mapping[str, Any]) -> float | None:
    for key in ("scale", "max", "max_score", "out_of"):
        if key not in obj:
            continue
        value = obj[key]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
        if isinstance(value, str):
            m = _RANGE.match(value) or re.match(r"^\s*(\d+(?:\.\d*)?)\s*$", value)
            if m and float(m.group(1)) > 0:
                return float(m.group(1))
        raise JudgeParseError(f"unreadable scale {value!r}")
    return None


def _scores_from_object(obj: Any, dims: Sequence[str]) -> dict[str, float]:
    if not isinstance(obj, Mapping):
        raise JudgeParseError("not a JSON object")
    norm = {_norm_key(k): v for k, v in obj.items()}
    if not any(d in norm for d in dims):  # one level of wrapping: {"scores": {...}}
        nested = [v for v in norm.values() if isinstance(v, Mapping) and any(_norm_key(k) in dims for k in v)]
        if len(nested) == 1:
            return _scores_from_object(nested[0], dims)
    missing = [d for d in dims if d not in norm]
    if missing:
        raise JudgeParseError(f"missing {', '.join(missing)}")
    object_scale = _stated_scale(norm)
    values: dict[str, float] = {}
    any_stated = object_scale is not None
    for d in dims:
        value, scale = _number(norm[d], d)
        if not math.isfinite(value):
            raise JudgeParseError(f"{d}: {value} is not finite")
        scale = scale if scale is not None else object_scale
        any_stated = any_stated or scale is not None
        if scale is not None:
            if not 0 <= value <= scale:
                raise JudgeParseError(f"{d}: {value:g} is outside the stated scale 0-{scale:g}")
            value = value * SCALE_MAX / scale
        values[d] = value
    for d, v in values.items():
        if not 0 <= v <= SCALE_MAX:
            raise JudgeParseError(f"{d}: {v:g} is outside 0-10")
    if not any_stated and all(v <= 1 for v in values.values()) and any(v != int(v) for v in values.values()):
        raise JudgeParseError(
            "all values lie in [0, 1] with fractions and no scale is stated: a 0-1 answer to a 0-10 question "
            "cannot be told from a very low score"
        )
    return values


T = TypeVar("T")


def agreed_object(
    spans: Sequence[str],
    load: Callable[[str], Any],
    convert: Callable[[Any], T],
    error: type[ValueError],
    what: str,
) -> T:
    """What the candidate objects in an answer say, when at least one reads (``convert`` raises ``error`` for one
    that does not) and all that read agree; else ``error`` with the reasons. Never a guess among disagreeing ones."""
    found: list[T] = []
    reasons: list[str] = []
    for span in spans:
        obj = load(span)
        if obj is None:
            reasons.append("an object that is neither JSON nor a Python literal")
            continue
        try:
            found.append(convert(obj))
        except error as exc:
            reasons.append(str(exc))
    if not found:
        raise error(reasons[-1] if len(reasons) == 1 else "; ".join(dict.fromkeys(reasons)))
    if any(f != found[0] for f in found[1:]):
        raise error(f"{len(found)} different {what} objects in one answer")
    return found[0]


def parse_judge_output(text: str, modality: str) -> dict[str, float]:
    """The scores (0-10) of every dimension for ``modality`` in a judge's answer; ``JudgeParseError`` if none.

    Every ``{...}`` in the answer is a candidate; the answer is valid when at least one candidate gives all the
    dimensions and all candidates that do agree.
    """
    dims = dimensions_for(modality)
    body = _THINK.sub(" ", text or "").strip()
    if not body:
        raise JudgeParseError("empty answer")
    spans = _object_spans(body)
    if not spans:
        raise JudgeParseError("no JSON object in the answer")
    return agreed_object(spans, _load_object, lambda obj: _scores_from_object(obj, dims), JudgeParseError, "score")


# ---- fusion -------------------------------------------------------------------------------------------------


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Weights for exactly the four dimensions, non-negative, with a positive sum for images and for videos."""
    unknown = sorted(set(weights) - set(DIMENSIONS))
    missing = [d for d in DIMENSIONS if d not in weights]
    if unknown or missing:
        raise ValueError(f"weights need exactly {list(DIMENSIONS)}; unknown {unknown}, missing {missing}")
    out = {d: float(weights[d]) for d in DIMENSIONS}
    if any(not math.isfinite(w) or w < 0 for w in out.values()):
        raise ValueError(f"weights must be finite and >= 0, got {out}")
    for modality in ("image", "video"):
        if sum(out[d] for d in dimensions_for(modality)) <= 0:
            raise ValueError(f"weights give {modality} captions no positive weight: {out}")
    return out


def fuse(scores: Mapping[str, float], modality: str, weights: Mapping[str, float] = DEFAULT_WEIGHTS) -> float:
    """Weighted mean of the applicable dimensions' scores (0-10), divided by 10: a value in [0, 1]."""
    dims = dimensions_for(modality)
    total = sum(weights[d] for d in dims)
    return sum(weights[d] * scores[d] for d in dims) / total / SCALE_MAX


# ---- the judge ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JudgeItem:
    """A caption to judge and the media it describes (a PIL image, or ``VideoFrames`` sampled at 2 fps)."""

    media: Image.Image | VideoFrames
    caption: str
    id: str | None = None

    @property
    def modality(self) -> str:
        return "video" if isinstance(self.media, VideoFrames) else "image"


@dataclass
class JudgeResult:
    """The judge's verdict on one item.

    ``score`` is the fused score in [0, 1], or ``None`` when no attempt gave valid scores (``error`` says why).
    ``scores`` holds the per-dimension scores on 0-10. ``raw`` keeps every answer the judge gave, in order, and
    ``errors`` the reason each rejected one was rejected; ``attempts == len(raw)``.
    """

    id: str | None
    modality: str
    score: float | None
    scores: dict[str, float] | None = None
    attempts: int = 0
    raw: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.score is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "modality": self.modality,
            "score": self.score,
            "scores": self.scores,
            "attempts": self.attempts,
            "raw": list(self.raw),
            "errors": list(self.errors),
            "error": self.error,
        }


def ask_each(
    captioner: Captioner, requests: Sequence[CaptionRequest], settings: GenerationSettings
) -> list[str | CaptionerError]:
    """One answer per request; when the batch fails, requests are asked alone so one bad one fails alone."""
    try:
        return [texts[0] for texts in captioner.caption(list(requests), settings)]
    except CaptionerError as exc:
        if len(requests) == 1:
            return [exc]
    out: list[str | CaptionerError] = []
    for req in requests:
        try:
            out.append(captioner.caption([req], settings)[0][0])
        except CaptionerError as exc:
            out.append(exc)
    return out


class VLMJudge:
    """Score captions with a VLM judge (any ``Captioner``), batched, with retries for malformed answers.

    ``settings`` are the judge's decoding settings for the first attempt (default: greedy, 256 new tokens,
    ``n`` is always 1). Retry ``k`` uses seed ``settings.seed + k`` and temperature
    ``max(settings.temperature, retry_temperature)``: a greedy judge would only repeat itself.
    """

    def __init__(
        self,
        captioner: Captioner,
        *,
        retries: int = 2,
        weights: Mapping[str, float] | None = None,
        settings: GenerationSettings | None = None,
        retry_temperature: float = 0.7,
        system: str | None = None,
    ):
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if retry_temperature < 0:
            raise ValueError(f"retry_temperature must be >= 0, got {retry_temperature}")
        self.captioner = captioner
        self.retries = retries
        self.weights = check_weights(weights if weights is not None else DEFAULT_WEIGHTS)
        self.settings = replace(settings or DEFAULT_SETTINGS, n=1)
        self.retry_temperature = retry_temperature
        self.system = system

    def settings_for(self, attempt: int) -> GenerationSettings:
        """Decoding settings of attempt ``attempt`` (0 = the first)."""
        if attempt == 0:
            return self.settings
        base = self.settings.seed if self.settings.seed is not None else 0
        temperature = max(self.settings.temperature, self.retry_temperature)
        return replace(self.settings, seed=base + attempt, temperature=temperature)

    def request(self, item: JudgeItem) -> CaptionRequest:
        duration = item.media.duration if isinstance(item.media, VideoFrames) else None
        prompt = judge_prompt(item.caption, item.modality, duration=duration)
        return CaptionRequest(media=item.media, prompt=prompt, id=item.id, system=self.system)

    def _ask(self, items: Sequence[JudgeItem], settings: GenerationSettings) -> list[str | CaptionerError]:
        return ask_each(self.captioner, [self.request(it) for it in items], settings)

    def score(self, items: Sequence[JudgeItem]) -> list[JudgeResult]:
        """One ``JudgeResult`` per item, in order."""
        items = list(items)
        results = [JudgeResult(id=it.id, modality=it.modality, score=None) for it in items]
        pending = list(range(len(items)))
        for attempt in range(self.retries + 1):
            if not pending:
                break
            answers = self._ask([items[i] for i in pending], self.settings_for(attempt))
            still = []
            for i, answer in zip(pending, answers, strict=True):
                res = results[i]
                if isinstance(answer, CaptionerError):
                    # Media the judge cannot take fails the same way every time: report it, do not retry.
                    res.error = f"judge call failed: {answer}"
                    continue
                res.raw.append(answer)
                res.attempts += 1
                try:
                    scores = parse_judge_output(answer, res.modality)
                except JudgeParseError as exc:
                    res.errors.append(str(exc))
                    still.append(i)
                    continue
                res.scores = scores
                res.score = fuse(scores, res.modality, self.weights)
            pending = still
        for i in pending:
            res = results[i]
            res.error = f"no valid scores in {res.attempts} attempt(s); last: {res.errors[-1]}"
        return results
