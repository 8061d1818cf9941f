"""Request bodies to engine items, with an error per bad item that names its index and field.

The bodies are validated by hand rather than by FastAPI, because one bad item must not cost the others their
rewards: the envelope (``items``, ``options``) is checked first and refuses the whole request; then each item
on its own. Everything the engine would raise on is caught here, so an item that passes is one the engine can
score (engine failures are then the reader's, reported as 5xx).

Judge items (``"mode": "judge"``) are checked the same way, their media included as far as it can be without
decoding it: base64 is decoded, paths are resolved under the server's media root and must name a file. Decoding
happens in the judge's worker (see ``caprl.server.judging``). QA items may carry media of the same form for the
correctness term's claim verifier (``correctness_weight`` on, no ``scene``; a server with a reader and a judge).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from caprl.data.mcq_text import MCQTextError, mcq_from_choices, mcq_from_text
from caprl.reward.correctness import NO_SCENE
from caprl.reward.engine import MODES, RewardConfig, RewardItem
from caprl.reward.judge import JUDGE_SAMPLING
from caprl.reward.options import check_unanswerable_letter
from caprl.schema import MAX_OPTIONS, MCQ, FrameSampling
from caprl.server.judging import JudgeJob, MediaProblem, decode_base64, resolve_media_path
from caprl.server.protocol import (
    ImageMediaInput,
    ItemError,
    ItemInput,
    JudgeItemInput,
    RewardOptions,
    VideoMediaInput,
)
from caprl.server.settings import ServerSettings
from caprl.synth.truth import check_caption

_MIN_TEMPERATURE = 1e-3  # below it the sampled letter's softmax underflows to NaN
_MAX_WEIGHT = 1e3  # keeps reward + weighted terms finite, which the engine checks and fails on otherwise


class RequestError(Exception):
    """A request refused as a whole (bad JSON, bad envelope or options, too large)."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        kind: str | None = None,
    ):
        super().__init__(detail)
        self.status, self.detail, self.field, self.headers = status, detail, field, headers or {}
        self.kind = kind
        """The ``caprl_errors_total`` label (default: from the status)."""


@dataclass
class ParsedRequest:
    """What the engine and the judge get: the effective config and the items that passed (None where ``errors``
    say why): ``RewardItem`` for the reader, ``JudgeJob`` for the judge. ``modes`` is each item's mode as asked."""

    config: RewardConfig
    items: list[RewardItem | JudgeJob | None]
    errors: list[ItemError] = field(default_factory=list)
    include_questions: bool = True
    modes: list[str] = field(default_factory=list)

    @property
    def valid(self) -> list[tuple[int, RewardItem | JudgeJob]]:
        return [(i, it) for i, it in enumerate(self.items) if it is not None]

    def mode(self, index: int) -> str:
        return self.modes[index] if index < len(self.modes) else "qa"


_UNION_TAGS = frozenset({"int", "str", "bool", "float", "list", "dict", "none", "image", "video"})  # + media tags


def _first_error(exc: ValidationError) -> tuple[str | None, str]:
    """(field path like ``mcqs.0.gold``, reason) of pydantic's first error, without union-member tags."""
    first = exc.errors()[0]
    parts = [str(p) for p in first["loc"] if isinstance(p, int) or (p not in _UNION_TAGS and "[" not in str(p))]
    reason = first["msg"].removeprefix("Value error, ")
    if exc.error_count() > 1:
        reason += f" (+{exc.error_count() - 1} more)"
    return ".".join(parts) or None, reason


class _ItemProblem(Exception):
    def __init__(self, field: str | None, reason: str, status: int = 422):
        super().__init__(reason)
        self.field, self.reason, self.status = field, reason, status


def item_error(kind: str, index: int, item_id: str | None, problem: _ItemProblem | MediaProblem) -> ItemError:
    where = f"{kind} {index}" + (f" (id {item_id!r})" if item_id is not None else "")
    if problem.field:
        where += f", field {problem.field!r}"
    return ItemError(
        index=index, id=item_id, field=problem.field, status=problem.status, message=f"{where}: {problem.reason}"
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def load_json(body: bytes) -> Any:
    """Decode a request body; 400 with the position of the fault when it is not JSON."""
    if not body.strip():
        raise RequestError(400, "the body is empty; send a JSON object")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"the body is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise RequestError(
            400, f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except (ValueError, RecursionError) as exc:
        raise RequestError(400, f"the body is not valid JSON: {exc}") from None


# ------------------------------------------------------------------------------------------------- config


def check_config(config: RewardConfig, settings: ServerSettings) -> None:
    """Raise ``ValueError('field: reason')`` for settings the engine would fail on or that cost without bound."""
    if config.n_questions is not None and config.n_questions > settings.max_questions_per_item:
        raise ValueError(f"n_questions: at most {settings.max_questions_per_item} on this server")
    if config.max_new_tokens > settings.max_new_tokens_limit:
        raise ValueError(f"max_new_tokens: at most {settings.max_new_tokens_limit} on this server")
    if not _MIN_TEMPERATURE <= config.temperature <= 1e3:
        raise ValueError(f"temperature: must lie in [{_MIN_TEMPERATURE:g}, 1000]")
    for name in ("length_weight", "timestamp_weight", "correctness_weight", "wrong_penalty"):
        value = getattr(config, name)
        if not (math.isfinite(value) and abs(value) <= _MAX_WEIGHT):
            raise ValueError(f"{name}: must be finite and within +-{_MAX_WEIGHT:g}")
    if config.length_weight and config.length_zero_at <= config.length_full_until:
        raise ValueError("length_zero_at: must exceed length_full_until")
    if MODES[config.mode].question_score(config).needs_probabilities and config.path == "generate":
        raise ValueError("path: soft scores need letter probabilities, use path 'score' (or a hard score)")
    if config.unanswerable_option and not config.unanswerable_text.strip():
        raise ValueError("unanswerable_text: empty")


def effective_config(options: Any, base: RewardConfig, settings: ServerSettings) -> RewardConfig:
    """The server's config with a request's ``options`` applied; RequestError (422) naming the option."""
    if options is None:
        return base
    try:
        given = RewardOptions.model_validate(options).model_dump(exclude_unset=True)
        config = RewardConfig.model_validate({**base.model_dump(), **given})
    except ValidationError as exc:
        field, reason = _first_error(exc)
        where = f"options.{field}" if field else "options"
        raise RequestError(422, f"field {where!r}: {reason}", field=where) from None
    try:
        check_config(config, settings)
    except ValueError as exc:
        name, _, reason = str(exc).partition(": ")
        raise RequestError(422, f"field 'options.{name}': {reason}", field=f"options.{name}") from None
    return config


# -------------------------------------------------------------------------------------------------- items


def _mcq(question: str, options: list[str], gold: Any, kind: str | None, field: str, gold_field: str) -> MCQ:
    """A bulk item's MCQ (options in any label style; the data's own "cannot answer" option dropped, see
    ``caprl.data.mcq_text``), or the problem at ``field.question``, ``field.options`` or ``gold_field``."""
    try:
        return mcq_from_choices(question, options, gold, kind)
    except MCQTextError as exc:
        raise _ItemProblem(gold_field if exc.field == "answer" else f"{field}.{exc.field}", exc.reason) from None


def _check_item(
    caption: str,
    mcqs: Sequence[MCQ],
    caption_tokens: int | None,
    config: RewardConfig,
    ctx: _Context,
    scene: dict[str, Any] | None = None,
    has_media: bool = False,
) -> None:
    """What the engine would fail on for this item under ``config``."""
    if config.correctness_weight:
        if scene is not None:  # the scene graph verifies (media, if also sent, is not needed)
            try:
                check_caption(scene, "")
            except (TypeError, KeyError, ValueError) as exc:
                raise _ItemProblem("scene", f"not a shapes-world scene graph ({type(exc).__name__}: {exc})") from None
        elif has_media:
            if not (ctx.has_judge and ctx.has_reader):
                raise _ItemProblem(
                    "media", "the correctness term checks claims against media with a VLM judge, and this server has "
                    "none (start it with --judge MODEL beside --reader), or send the shapes-world 'scene'",
                )  # fmt: skip
        else:
            field = "media" if ctx.has_judge else "scene"
            raise _ItemProblem(field, f"required: no 'scene' and no 'media'; {NO_SCENE}")
    if len(caption) > ctx.settings.max_caption_chars:
        raise _ItemProblem(
            ctx.caption_field,
            f"caption has {len(caption)} characters, more than this server's {ctx.settings.max_caption_chars}",
        )
    if len(mcqs) > ctx.settings.max_questions_per_item:
        raise _ItemProblem(
            ctx.mcqs_field, f"{len(mcqs)} MCQs, more than this server's {ctx.settings.max_questions_per_item}"
        )
    if config.unanswerable_option:
        extra = config.unanswerable_text.strip().lower()
        for j, q in enumerate(mcqs):
            if len(q.options) >= MAX_OPTIONS:
                raise _ItemProblem(
                    ctx.options_field(j),
                    f"{len(q.options)} options leave no letter for the added 'cannot be answered' option "
                    f"(at most {MAX_OPTIONS - 1}, or send options.unanswerable_option=false)",
                )
            if extra in (o.lower() for o in q.options):
                raise _ItemProblem(ctx.options_field(j), "an option repeats the added 'cannot be answered' option")
            if config.unanswerable_letter is not None:
                try:
                    check_unanswerable_letter(config.unanswerable_letter, len(q.options))
                except ValueError as exc:
                    raise _ItemProblem(ctx.options_field(j), str(exc)) from None
    if config.length_weight and caption_tokens is None and not ctx.can_count_tokens:
        raise _ItemProblem(
            "caption_tokens", "required: the length term is on and this server has no tokenizer to count tokens"
        )


@dataclass(frozen=True)
class _Context:
    settings: ServerSettings
    can_count_tokens: bool
    has_reader: bool = True
    has_judge: bool = False
    caption_field: str = "caption"
    mcqs_field: str = "mcqs"
    option_template: str = "mcqs.{j}.options"

    def options_field(self, j: int) -> str:
        return self.option_template.format(j=j)


def _envelope(data: Any, allowed: set[str], required: str, settings: ServerSettings) -> list[Any]:
    if not isinstance(data, dict):
        raise RequestError(422, f"the body must be a JSON object with {required!r}, got {type(data).__name__}")
    if required not in data:
        raise RequestError(422, f"field {required!r}: required", field=required)
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise RequestError(422, f"field {unknown[0]!r}: unknown field (expected {sorted(allowed)})", field=unknown[0])
    rows = data[required]
    if not isinstance(rows, list):
        raise RequestError(422, f"field {required!r}: must be a list, got {type(rows).__name__}", field=required)
    if len(rows) > settings.max_request_items:
        raise RequestError(
            413,
            f"field {required!r}: {len(rows)} items, more than this server's {settings.max_request_items} per request; "
            "split the request",
            field=required,
        )
    return rows


def parse_rewards_request(
    data: Any,
    base: RewardConfig,
    settings: ServerSettings,
    *,
    can_count_tokens: bool,
    has_reader: bool = True,
    has_judge: bool = False,
) -> ParsedRequest:
    """``POST /v1/rewards``: see ``caprl.server.protocol.RewardsRequest``. ``has_reader`` / ``has_judge``: which
    models this server holds (an item for a model it does not hold is refused, naming its ``mode``)."""
    rows = _envelope(data, {"items", "options", "include_questions"}, "items", settings)
    include = data.get("include_questions", True)
    if not isinstance(include, bool):
        raise RequestError(422, "field 'include_questions': must be true or false", field="include_questions")
    config = effective_config(data.get("options"), base, settings)
    ctx = _Context(settings, can_count_tokens, has_reader=has_reader, has_judge=has_judge)
    out = ParsedRequest(config, [], include_questions=include)
    for i, raw in enumerate(rows):
        rid = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
        mode = raw.get("mode") if isinstance(raw, dict) else None
        out.modes.append("judge" if mode == "judge" else "qa")
        try:
            item = _judge_item(raw, ctx) if mode == "judge" else _rewards_item(raw, config, ctx)
        except (_ItemProblem, MediaProblem) as problem:
            out.items.append(None)
            out.errors.append(item_error("item", i, rid, problem))
        else:
            out.items.append(item)
    return out


_MODES = "must be 'qa' (the MCQ reward; the default) or 'judge' (the VLM judge; needs 'media')"


def _rewards_item(raw: Any, config: RewardConfig, ctx: _Context) -> RewardItem:
    if isinstance(raw, dict):
        if "mode" in raw and raw["mode"] != "qa":
            raise _ItemProblem("mode", f"{raw['mode']!r}: {_MODES}")
        if "media" in raw:
            if not config.correctness_weight:
                raise _ItemProblem(
                    "media", "a QA item's media is for the correctness term, which is off (options.correctness_weight "
                    'is 0): the QA reward reads the caption alone; for the VLM judge\'s score send "mode": "judge"',
                )  # fmt: skip
            media = raw["media"]
            if isinstance(media, dict) and "type" not in media:
                raise _ItemProblem("media.type", "required: 'image' or 'video'")
    if not ctx.has_reader:
        raise _ItemProblem(
            "mode", "this server has no reader (it serves the VLM judge only): send judge items "
            '({"mode": "judge", "caption", "media"}), or use a server started with --reader',
        )  # fmt: skip
    try:
        given = ItemInput.model_validate(raw)
    except ValidationError as exc:
        raise _ItemProblem(*_first_error(exc)) from None
    mcqs = [
        _mcq(q.question, q.options, q.gold, q.kind, f"mcqs.{j}", f"mcqs.{j}.gold") for j, q in enumerate(given.mcqs)
    ]
    _check_item(given.caption, mcqs, given.caption_tokens, config, ctx, given.scene, given.media is not None)
    job = None
    if given.media is not None and given.scene is None:
        if given.media.type != given.modality:
            raise _ItemProblem(
                "modality", f"{given.modality!r} does not match the media's type {given.media.type!r}: send "
                f'"modality": "{given.media.type}"',
            )  # fmt: skip
        job = _media_job(given.media, given.caption, given.id, ctx.settings)
    return RewardItem(
        caption=given.caption, mcqs=mcqs, modality=given.modality, id=given.id, caption_tokens=given.caption_tokens,
        scene=given.scene, media=job,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------- judge items


def _judge_item(raw: dict[str, Any], ctx: _Context) -> JudgeJob:
    if not ctx.has_judge:
        raise _ItemProblem(
            "mode", "this server has no VLM judge loaded; start it with --judge MODEL to score judge items"
        )
    if "mcqs" in raw or "caption_tokens" in raw:
        name = "mcqs" if "mcqs" in raw else "caption_tokens"
        raise _ItemProblem(name, "not used by the judge, which scores the caption against the media; leave it out")
    media = raw.get("media")
    if isinstance(media, dict) and "type" not in media:
        raise _ItemProblem("media.type", "required: 'image' or 'video'")
    try:
        given = JudgeItemInput.model_validate(raw)
    except ValidationError as exc:
        raise _ItemProblem(*_first_error(exc)) from None
    media, settings = given.media, ctx.settings
    if given.modality is not None and given.modality != media.type:
        raise _ItemProblem("modality", f"{given.modality!r} does not match the media's type {media.type!r}")
    if len(given.caption) > settings.max_caption_chars:
        raise _ItemProblem(
            "caption",
            f"caption has {len(given.caption)} characters, more than this server's {settings.max_caption_chars}",
        )
    return _media_job(media, given.caption, given.id, settings)


def _media_job(
    media: ImageMediaInput | VideoMediaInput, caption: str, item_id: str | None, settings: ServerSettings
) -> JudgeJob:
    """Where an item's media is (inline bytes, or a path checked under the media root), not yet decoded."""
    if media.type == "image":
        if media.data is not None:
            return JudgeJob(caption, "image", item_id, data=decode_base64(media.data))
        assert media.path is not None
        resolve_media_path(media.path, settings.media_root)
        return JudgeJob(caption, "image", item_id, path=media.path, root=settings.media_root)
    resolve_media_path(media.path, settings.media_root)
    return JudgeJob(
        caption, "video", item_id, path=media.path, root=settings.media_root,
        sampling=_sampling(media.sampling, settings.max_judge_frames),
    )  # fmt: skip


def _sampling(given: Any, limit: int) -> FrameSampling:
    """The item's frame sampling (default: the judge's 2 fps), ``max_frames`` defaulting to and bounded by
    ``limit``."""
    if given is None:
        return JUDGE_SAMPLING.model_copy(update={"max_frames": limit})
    for name in ("max_frames", "num_frames"):
        value = getattr(given, name)
        if value is not None and value > limit:
            raise _ItemProblem(f"media.sampling.{name}", f"{value} frames, more than this server's {limit}")
    return FrameSampling(
        fps=given.fps, num_frames=given.num_frames, max_frames=given.max_frames if given.max_frames else limit
    )


# ---------------------------------------------------------------------------------------------- CapRL body


def parse_get_reward_request(
    data: Any,
    config: RewardConfig,
    settings: ServerSettings,
    *,
    can_count_tokens: bool,
    has_reader: bool = True,
    has_judge: bool = False,
) -> ParsedRequest:
    """``POST /get_reward``, CapRL's bodies.

    QA: ``{"prompts": [[caption, [[question_with_options, gold_letter], ...]], ...]}``; every item gets the server's
    ``get_reward_modality`` (CapRL++'s ``--task``), so a video server applies its timestamp term here. Question
    strings are read by ``caprl.data.mcq_text`` (every CapRL option style; the data's "cannot answer" option is
    dropped). Errors name ``caption``, ``qa``, ``qa.J``, ``qa.J.question``, ``qa.J.answer``.

    VLM judge (CapRL++'s ``score_mode``): ``{"score_mode": "vl_judge", "samples": [{"caption", "video_path"}, ...]}``
    with video paths under the server's media root (relative, or absolute inside it). Errors name ``caption`` and
    ``video_path``.

    Keys CapRL sends but does not use (``query``, ``labels``, a sample's other keys) are ignored, as CapRL ignores
    them.
    """
    if not isinstance(data, dict):
        raise RequestError(422, f"the body must be a JSON object with 'prompts', got {type(data).__name__}")
    mode = data.get("score_mode", "qa")
    if mode == "vl_judge":
        return _judge_samples(data, config, settings, has_judge=has_judge)
    if mode != "qa":
        raise RequestError(
            422, f"field 'score_mode': {mode!r} is not 'qa' (MCQ reward, the default) or 'vl_judge' (the VLM judge)",
            field="score_mode",
        )  # fmt: skip
    rows = _envelope({"prompts": data["prompts"]} if "prompts" in data else data, {"prompts"}, "prompts", settings)
    if not has_reader and rows:
        raise RequestError(
            422, "this server has no reader (it serves the VLM judge only); QA prompts need a server started with "
            '--reader (judge requests: {"score_mode": "vl_judge", "samples": [...]})', field="prompts",
        )  # fmt: skip
    ctx = _Context(settings, can_count_tokens, mcqs_field="qa", option_template="qa.{j}.question")
    out = ParsedRequest(config, [])
    for i, raw in enumerate(rows):
        try:
            item = _caprl_item(raw, config, ctx)
        except _ItemProblem as problem:
            out.items.append(None)
            out.errors.append(item_error("prompt", i, None, problem))
        else:
            out.items.append(item)
    return out


def _caprl_item(raw: Any, config: RewardConfig, ctx: _Context) -> RewardItem:
    if not isinstance(raw, list) or len(raw) != 2:
        raise _ItemProblem(None, "a prompt must be a list [caption, [[question_with_options, gold_letter], ...]]")
    caption, pairs = raw
    if not isinstance(caption, str):
        raise _ItemProblem("caption", f"must be a string, got {type(caption).__name__}")
    if not isinstance(pairs, list) or not pairs:
        raise _ItemProblem("qa", "must be a non-empty list of [question_with_options, gold_letter] pairs")
    mcqs = []
    for j, pair in enumerate(pairs):
        if not isinstance(pair, list) or len(pair) != 2:
            raise _ItemProblem(f"qa.{j}", "must be a pair [question_with_options, gold_letter]")
        text, letter = pair
        if not isinstance(text, str):
            raise _ItemProblem(f"qa.{j}.question", f"must be a string, got {type(text).__name__}")
        if not isinstance(letter, str):
            raise _ItemProblem(f"qa.{j}.answer", f"must be a letter string, got {type(letter).__name__}")
        try:
            mcqs.append(mcq_from_text(text, letter))
        except MCQTextError as exc:
            if exc.field == "answer":
                raise _ItemProblem(f"qa.{j}.answer", exc.reason) from None
            # The question and its options are one string: say which string.
            raise _ItemProblem(f"qa.{j}.question", f"{exc.reason}: {text[:120]!r}") from None
    _check_item(caption, mcqs, None, config, ctx)
    return RewardItem(caption=caption, mcqs=mcqs, modality=ctx.settings.get_reward_modality)


def _judge_samples(data: dict[str, Any], config: RewardConfig, settings: ServerSettings, *, has_judge: bool):
    samples = data.get("samples")
    if not isinstance(samples, list):
        raise RequestError(422, "field 'samples': required, a list of {caption, video_path}", field="samples")
    if len(samples) > settings.max_request_items:
        raise RequestError(
            413, f"field 'samples': {len(samples)} items, more than this server's {settings.max_request_items} per "
            "request; split the request", field="samples",
        )  # fmt: skip
    if not has_judge and samples:
        raise RequestError(
            422, "this server has no VLM judge loaded; start it with --judge MODEL (and --media-root) for "
            '"score_mode": "vl_judge"', field="score_mode",
        )  # fmt: skip
    out = ParsedRequest(config, [])
    for i, raw in enumerate(samples):
        out.modes.append("judge")
        try:
            item = _judge_sample(raw, settings)
        except (_ItemProblem, MediaProblem) as problem:
            out.items.append(None)
            out.errors.append(item_error("sample", i, None, problem))
        else:
            out.items.append(item)
    return out


def _judge_sample(raw: Any, settings: ServerSettings) -> JudgeJob:
    if not isinstance(raw, dict):
        raise _ItemProblem(None, f"a sample must be an object {{caption, video_path}}, got {type(raw).__name__}")
    caption, path = raw.get("caption"), raw.get("video_path")
    if not isinstance(caption, str):
        raise _ItemProblem("caption", "required, a string" if caption is None else "must be a string")
    if len(caption) > settings.max_caption_chars:
        raise _ItemProblem(
            "caption", f"caption has {len(caption)} characters, more than this server's {settings.max_caption_chars}"
        )
    if not isinstance(path, str) or not path:
        # CapRL's judge scores such a sample from the caption alone; a judge that never saw the video is no judge.
        raise _ItemProblem("video_path", "required: the judge scores the caption against the video")
    resolve_media_path(path, settings.media_root, "video_path")
    return JudgeJob(
        caption, "video", None, path=path, root=settings.media_root,
        sampling=_sampling(None, settings.max_judge_frames), path_field="video_path",
    )  # fmt: skip
