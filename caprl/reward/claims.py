"""The correctness term for real media: the reader splits a caption into atomic claims, a VLM judge checks each.

CCCaption's correctness reward, with caprl's two models. Two steps per caption:

1. **Split** — the text-only reader (``caprl.readers``; it never sees the media) is asked, in chat messages, for
   one self-contained factual claim per line (``- ...``), greedily, with a token budget that grows with the caption.
   ``parse_claims`` reads the list: tolerant of form (``-``, ``*``, ``•``, ``1.``, ``1)`` bullets; a ``<think>``
   block; code fences; a header line ending in ``:``), strict about content (a line that is not a bullet, an empty
   bullet, an unfinished ``<think>`` or no claim at all is a parse error, never a guess: a dropped line would
   silently change the share). Exact repeats are kept once.
2. **Verify** — one judge request per caption: the media and the numbered claims, answered with a JSON object
   mapping each number to true/false (``parse_verdicts`` also takes ``"yes"``/``"no"``, ``1``/``0``, ``"claim 1"``
   keys, one level of wrapping, or a JSON list of booleans in order). A missing or extra number, a duplicate, or a
   value that is not a boolean is rejected, never filled in. The JSON spans are found as the judge reward finds
   them (``caprl.reward.judge``).

correctness = confirmed claims / claims. An empty caption has no claims and scores 0.0 without asking anyone
(nothing said, nothing verified — the scene verifier's rule). A rejected answer is retried (``retries`` more
times, each at a new seed and at ``retry_temperature`` at least, as ``VLMJudge`` does); when every attempt fails
the result has ``correctness=None``, the reason and every raw answer. A caption with more than ``max_claims``
claims is refused (its share would otherwise be an estimate over some of them).

>>> verifier = ClaimVerifier(reader, TransformersCaptioner("Qwen/Qwen2.5-VL-7B-Instruct"))   # doctest: +SKIP
>>> verifier.score([ClaimItem(caption="A red car parked by a tree.", media=image)])[0].correctness  # doctest: +SKIP
1.0
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from caprl.captioners.base import Captioner, CaptionerError, CaptionRequest, GenerationSettings
from caprl.data.media import VideoFrames, open_image, sample_frames
from caprl.readers.base import Messages, Reader, takes_seeds
from caprl.reward.correctness import ClaimVerdict, Verification, VerificationError

# The judge reward's readers of JSON spans in free text (balanced braces, quotes respected; JSON or a literal).
from caprl.reward.judge import _THINK, JUDGE_SAMPLING, _load_object, _object_spans, agreed_object, ask_each

if TYPE_CHECKING:
    from caprl.reward.engine import RewardItem

Media = Image.Image | VideoFrames

SPLIT_INSTRUCTION = (
    "Split the description below into atomic claims: short, self-contained factual statements about the {what}, "
    "each saying exactly one thing (one object, attribute, count, position, action, or piece of text). Repeat the "
    "subject in every claim instead of using pronouns, so each claim stands on its own. Do not add, infer or "
    'judge anything the description does not say. Write one claim per line, each line starting with "- ", and '
    "nothing else."
)

DEFAULT_JUDGE_SETTINGS = GenerationSettings(max_new_tokens=64, temperature=0.0, seed=0)


# ---- splitting ----------------------------------------------------------------------------------------------


class ClaimParseError(ValueError):
    """An answer that does not give what was asked (a claim list, or a verdict per claim); ``str(err)`` says why."""


def split_messages(caption: str, modality: str = "image") -> Messages:
    """The reader's chat messages asking for ``caption``'s atomic claims (rendered by the reader's template)."""
    what = "video" if modality == "video" else "image"
    text = SPLIT_INSTRUCTION.format(what=what) + f'\n\nDescription:\n"""\n{caption.strip()}\n"""'
    return [{"role": "user", "content": text}]


_FENCE = re.compile(r"^\s*```")
_BULLET = re.compile(r"^\s*(?:[-*•]|\(?\d{1,3}[.)])\s*(.*)$")
_HEADER = re.compile(r"^[^.!?]{0,80}:$")  # "Claims:", "Here are the atomic claims:"


def parse_claims(text: str) -> list[str]:
    """The claims in a reader's answer, in order, exact repeats dropped; ``ClaimParseError`` when there are none
    or a line is not one."""
    if text is None:
        raise ClaimParseError("empty answer")
    body = _THINK.sub("\n", text)
    if re.search(r"<think>", body, re.I):
        raise ClaimParseError("an unfinished <think> block (the answer ran out while thinking)")
    body = re.sub(r"</?think>", "\n", body, flags=re.I)
    claims: list[str] = []
    seen: set[str] = set()
    for n, line in enumerate(body.splitlines(), 1):
        stripped = line.strip()
        if not stripped or _FENCE.match(stripped):
            continue
        m = _BULLET.match(stripped)
        if m is None:
            if _HEADER.match(stripped) and not claims:
                continue
            # A line that is no bullet may be a claim without one, or a wrapped claim: which, is a guess.
            raise ClaimParseError(f"line {n} is not a '- ' claim: {stripped[:80]!r}")
        claim = m.group(1).strip()
        if not claim:
            raise ClaimParseError(f"line {n} is an empty bullet")
        key = claim.casefold()
        if key not in seen:
            seen.add(key)
            claims.append(claim)
    if not claims:
        raise ClaimParseError("no '- ' claim lines in the answer")
    return claims


# ---- verifying ----------------------------------------------------------------------------------------------


def verify_prompt(claims: Sequence[str], modality: str = "image") -> str:
    """The judge's instruction for one caption's claims (the media goes beside it, in the same user turn)."""
    what = "a video (frames shown in time order)" if modality == "video" else "an image"
    seen = "the video shows" if modality == "video" else "the image shows"
    numbered = "\n".join(f"{i}. {c}" for i, c in enumerate(claims, 1))
    example = ", ".join(f'"{i}": {"true" if i % 2 else "false"}' for i in range(1, min(len(claims), 2) + 1))
    return (
        f"You are checking statements about {what}. For each numbered claim below, decide whether it is true of "
        f"what {seen}: true if it is correct, false if it is wrong or cannot be seen.\n\nClaims:\n{numbered}\n\n"
        f"Reply with only a JSON object mapping every claim number (1 to {len(claims)}) to true or false, "
        f"like {{{example}}}, and nothing else."
    )


_TRUE = frozenset({"true", "yes", "y", "correct", "1"})
_FALSE = frozenset({"false", "no", "n", "incorrect", "0"})
_KEY = re.compile(r"^(?:claim\s*)?#?\s*(\d{1,4})$", re.I)
_LIST = re.compile(r"\[[^\[\]{}]*\]")  # a flat list: booleans in order


def _verdict(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ClaimParseError(f"{where}: {value!r} is not true or false")


def _verdicts_from(obj: Any, n: int) -> list[bool]:
    if isinstance(obj, list):
        if len(obj) != n:
            raise ClaimParseError(f"a list of {len(obj)} verdicts for {n} claims")
        return [_verdict(v, f"claim {i}") for i, v in enumerate(obj, 1)]
    if not isinstance(obj, Mapping):
        raise ClaimParseError("not a JSON object or list")
    numbered: dict[int, Any] = {}
    others: list[Any] = []
    for key, value in obj.items():
        m = _KEY.match(str(key).strip())
        if m is None:
            others.append(value)
            continue
        k = int(m.group(1))
        if k in numbered:
            raise ClaimParseError(f"claim {k} is given twice")
        numbered[k] = value
    if not numbered:  # one level of wrapping: {"verdicts": {...}} or {"verdicts": [...]}
        inner = [v for v in others if isinstance(v, (Mapping, list))]
        if len(inner) == 1:
            return _verdicts_from(inner[0], n)
        raise ClaimParseError("no claim numbers in the object")
    extra = sorted(k for k in numbered if not 1 <= k <= n)
    if extra:
        raise ClaimParseError(f"claim {extra[0]} does not exist (there are {n})")
    missing = [k for k in range(1, n + 1) if k not in numbered]
    if missing:
        raise ClaimParseError(f"missing claim {', '.join(map(str, missing))}")
    return [_verdict(numbered[k], f"claim {k}") for k in range(1, n + 1)]


_TRAILING_COMMA = re.compile(r",\s*([}\]])")


def _load(span: str) -> Any:
    obj = _load_object(span)
    if obj is None:  # JSON's true/false with a trailing comma: neither JSON nor a Python literal as it stands
        try:
            obj = json.loads(_TRAILING_COMMA.sub(r"\1", span))
        except ValueError:
            return None
    return obj


def parse_verdicts(text: str, n: int) -> list[bool]:
    """One verdict per claim (claims numbered 1..``n``) from a judge's answer; ``ClaimParseError`` if none.

    Every ``{...}`` (else every flat ``[...]``) in the answer is a candidate; the answer is valid when at least one
    candidate gives all ``n`` verdicts and all candidates that do agree.
    """
    body = _THINK.sub(" ", text or "").strip()
    if not body:
        raise ClaimParseError("empty answer")
    spans = _object_spans(body) or _LIST.findall(body)
    if not spans:
        raise ClaimParseError("no JSON object in the answer")
    return agreed_object(spans, _load, lambda obj: _verdicts_from(obj, n), ClaimParseError, "verdict")


# ---- the verifier -------------------------------------------------------------------------------------------


MediaSource = Any
"""A PIL image, ``VideoFrames``, a file path (an image, or a video for ``modality="video"``, sampled as the judge
samples), or an object whose ``load()`` returns one of the first two (the reward service's lazily decoded media)."""


def load_media(media: MediaSource, modality: str = "image") -> Media:
    """Decoded media for the judge (see ``MediaSource``)."""
    if isinstance(media, (Image.Image, VideoFrames)):
        return media
    if isinstance(media, (str, Path)):
        return sample_frames(media, JUDGE_SAMPLING) if modality == "video" else open_image(media)
    load = getattr(media, "load", None)
    if callable(load):
        return load()
    raise TypeError(f"media must be an image, VideoFrames, a path or have load(), got {type(media).__name__}")


@dataclass(frozen=True)
class ClaimItem:
    """A caption to verify and the media it describes (see ``MediaSource``)."""

    caption: str
    media: MediaSource
    id: str | None = None
    modality: str = "image"


@dataclass(frozen=True)
class ClaimCheck:
    """One judge job: a caption's claims and its (not yet decoded) media."""

    claims: tuple[str, ...]
    media: MediaSource
    modality: str = "image"
    id: str | None = None


@dataclass
class CheckResult:
    """The judge's verdicts on one ``ClaimCheck`` (None when no attempt gave a valid answer; ``error`` says why)."""

    verdicts: list[bool] | None = None
    attempts: int = 0
    raw: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class ClaimResult:
    """The correctness of one caption and its parts.

    ``correctness`` is confirmed / claims in [0, 1] (0.0 for an empty caption), or ``None`` when it could not be
    computed (``error`` says why). ``split_raw``/``judge_raw`` keep every answer of the reader and the judge, in
    order; ``errors`` the reason each rejected one was rejected. ``exception`` is what kept the item from the judge
    when that was its media (the service reports it as the item's 422)."""

    id: str | None
    correctness: float | None
    claims: list[str] = field(default_factory=list)
    verdicts: list[bool] | None = None
    split_attempts: int = 0
    judge_attempts: int = 0
    split_raw: list[str] = field(default_factory=list)
    judge_raw: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    error: str | None = None
    exception: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.correctness is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "correctness": self.correctness,
            "claims": list(self.claims),
            "verdicts": None if self.verdicts is None else list(self.verdicts),
            "split_attempts": self.split_attempts,
            "judge_attempts": self.judge_attempts,
            "split_raw": list(self.split_raw),
            "judge_raw": list(self.judge_raw),
            "errors": list(self.errors),
            "error": self.error,
        }


CheckVia = Callable[[Sequence[ClaimCheck]], Sequence["CheckResult | Exception"]]


class ClaimVerifier:
    """Verify captions claim by claim: ``reader`` splits them, ``judge`` (any ``Captioner``) checks the claims
    against the media. Implements the engine's ``Verifier`` (``verify``) for ``RewardEngine(verifier=...)``.

    Splitting is greedy (temperature 0, ``seed``) with ``split_base_tokens + split_tokens_per_word`` per caption word
    new tokens, at most ``max_split_tokens``; judging uses ``judge_settings`` (greedy by default) with room for every
    verdict. Retry ``k`` of either uses seed ``seed + k`` at ``retry_temperature`` at least (a greedy model would
    only repeat itself). ``check_via`` runs the judge step elsewhere (the reward service queues it on its judge's
    worker, which also decodes the media there); by default ``check`` runs here.
    """

    def __init__(
        self,
        reader: Reader,
        judge: Captioner,
        *,
        retries: int = 1,
        max_claims: int = 64,
        seed: int = 0,
        retry_temperature: float = 0.7,
        split_base_tokens: int = 64,
        split_tokens_per_word: float = 4.0,
        max_split_tokens: int = 2048,
        judge_settings: GenerationSettings | None = None,
        system: str | None = None,
        check_via: CheckVia | None = None,
    ):
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        if max_claims < 1:
            raise ValueError(f"max_claims must be >= 1, got {max_claims}")
        if retry_temperature < 0:
            raise ValueError(f"retry_temperature must be >= 0, got {retry_temperature}")
        self.reader, self.judge = reader, judge
        self.retries, self.max_claims, self.seed = retries, max_claims, seed
        self.retry_temperature = retry_temperature
        self.split_base_tokens, self.split_tokens_per_word = split_base_tokens, split_tokens_per_word
        self.max_split_tokens = max_split_tokens
        self.judge_settings = replace(judge_settings or DEFAULT_JUDGE_SETTINGS, n=1)
        self.system = system
        self.check_via = check_via

    # -- split --------------------------------------------------------------------------------------------------
    def split_tokens(self, caption: str) -> int:
        """New-token budget for ``caption``'s claim list: claims repeat their subjects, so a few tokens per word."""
        words = len(caption.split())
        return min(self.max_split_tokens, self.split_base_tokens + math.ceil(self.split_tokens_per_word * words))

    def _generate(self, messages: list[Messages], budget: int, attempt: int) -> list[str]:
        temperature = 0.0 if attempt == 0 else self.retry_temperature
        seed = self.seed + attempt
        kw: dict[str, Any] = {"max_new_tokens": budget, "temperature": temperature}
        if takes_seeds(self.reader):
            return self.reader.generate(messages, seeds=[seed] * len(messages), **kw)
        return self.reader.generate(messages, seed=seed, **kw)

    def _split(self, items: Sequence[ClaimItem], results: list[ClaimResult], todo: list[int]) -> list[int]:
        """Fill in the claims of ``todo``'s items; the indices whose claims were read. Reader failures raise."""
        pending = list(todo)
        for attempt in range(self.retries + 1):
            if not pending:
                break
            # One reader call per token budget, so a short caption is not generated at a long one's budget.
            by_budget: dict[int, list[int]] = {}
            for i in pending:
                by_budget.setdefault(self.split_tokens(items[i].caption), []).append(i)
            still = []
            for budget, group in by_budget.items():
                messages = [split_messages(items[i].caption, items[i].modality) for i in group]
                texts = self._generate(messages, budget, attempt)
                if len(texts) != len(group):
                    raise RuntimeError(f"the reader gave {len(texts)} answers for {len(group)} prompts")
                for i, text in zip(group, texts, strict=True):
                    res = results[i]
                    res.split_raw.append(text)
                    res.split_attempts += 1
                    try:
                        res.claims = parse_claims(text)
                    except ClaimParseError as exc:
                        res.errors.append(f"split: {exc}")
                        still.append(i)
            pending = still
        for i in pending:
            res = results[i]
            res.error = f"no claims read in {res.split_attempts} attempt(s); last: {res.errors[-1]}"
        failed = set(pending)
        split = []
        for i in todo:
            res = results[i]
            if i in failed:
                continue
            if len(res.claims) > self.max_claims:
                res.error = f"{len(res.claims)} claims, more than max_claims ({self.max_claims})"
                continue
            split.append(i)
        return split

    # -- check --------------------------------------------------------------------------------------------------
    def settings_for(self, attempt: int, n_claims: int) -> GenerationSettings:
        """The judge's decoding settings for attempt ``attempt`` (0 = first) of a list of ``n_claims`` claims."""
        base = self.judge_settings
        tokens = max(base.max_new_tokens, 16 + 8 * n_claims)  # '"12": false, ' is about 6 tokens
        if attempt == 0:
            return replace(base, max_new_tokens=tokens)
        seed = (base.seed if base.seed is not None else 0) + attempt
        return replace(
            base, max_new_tokens=tokens, seed=seed, temperature=max(base.temperature, self.retry_temperature)
        )

    def request(self, job: ClaimCheck, media: Media) -> CaptionRequest:
        return CaptionRequest(
            media=media, prompt=verify_prompt(job.claims, job.modality), id=job.id, system=self.system
        )

    def _ask(self, requests: list[CaptionRequest], settings: GenerationSettings) -> list[str | CaptionerError]:
        return ask_each(self.judge, requests, settings)

    def check(self, jobs: Sequence[ClaimCheck]) -> list[CheckResult | Exception]:
        """The judge's verdicts per job, in order; media that cannot be loaded is returned as its exception."""
        out: list[CheckResult | Exception] = []
        requests: dict[int, CaptionRequest] = {}
        for k, job in enumerate(jobs):
            try:
                requests[k] = self.request(job, load_media(job.media, job.modality))
            except Exception as exc:  # noqa: BLE001 - the media's fault: this job's outcome, not the batch's
                out.append(exc)
                continue
            out.append(CheckResult())
        pending = list(requests)
        for attempt in range(self.retries + 1):
            if not pending:
                break
            # Jobs of one attempt share settings only when their claim counts share a token budget.
            by_settings: dict[GenerationSettings, list[int]] = {}
            for k in pending:
                by_settings.setdefault(self.settings_for(attempt, len(jobs[k].claims)), []).append(k)
            still = []
            for settings, group in by_settings.items():
                answers = self._ask([requests[k] for k in group], settings)
                for k, answer in zip(group, answers, strict=True):
                    res = out[k]
                    assert isinstance(res, CheckResult)
                    if isinstance(answer, CaptionerError):
                        res.error = f"judge call failed: {answer}"  # the same media fails the same way: no retry
                        continue
                    res.raw.append(answer)
                    res.attempts += 1
                    try:
                        res.verdicts = parse_verdicts(answer, len(jobs[k].claims))
                    except ClaimParseError as exc:
                        res.errors.append(str(exc))
                        still.append(k)
            pending = still
        for k in pending:
            res = out[k]
            assert isinstance(res, CheckResult)
            res.error = f"no valid verdicts in {res.attempts} attempt(s); last: {res.errors[-1]}"
        return out

    # -- public -------------------------------------------------------------------------------------------------
    def score(self, items: Sequence[ClaimItem]) -> list[ClaimResult]:
        """One ``ClaimResult`` per item, in order. Reader failures raise (as the reward engine's do)."""
        items = list(items)
        results = [ClaimResult(id=it.id, correctness=None) for it in items]
        todo = []
        for i, it in enumerate(items):
            if it.caption.strip():
                todo.append(i)
            else:  # nothing said, nothing verified: 0.0, and no model is asked
                results[i].correctness = 0.0
        split = self._split(items, results, todo)
        if not split:
            return results
        jobs = [ClaimCheck(tuple(results[i].claims), items[i].media, items[i].modality, items[i].id) for i in split]
        try:
            checked = list((self.check_via or self.check)(jobs))
        except Exception as exc:  # noqa: BLE001 - e.g. the service's judge queue refused the work: these items fail
            checked = [exc] * len(jobs)
        if len(checked) != len(jobs):
            raise RuntimeError(f"the judge step gave {len(checked)} results for {len(jobs)} jobs")
        for i, check in zip(split, checked, strict=True):
            res = results[i]
            if isinstance(check, Exception):
                res.exception = check
                res.error = f"the claims could not be checked: {type(check).__name__}: {check}"
                continue
            res.judge_raw, res.judge_attempts = list(check.raw), check.attempts
            res.errors.extend(f"verify: {e}" for e in check.errors)
            if check.verdicts is None:
                res.error = check.error
                continue
            res.verdicts = list(check.verdicts)
            res.correctness = sum(check.verdicts) / len(check.verdicts)
        return results

    def verify(self, items: Sequence[RewardItem]) -> list[Verification | Exception]:
        """The engine's ``Verifier``: per reward item (which must carry ``media``), its ``Verification``, or the
        ``VerificationError`` (or media exception) that kept it from one."""
        out: list[Verification | Exception | None] = [None] * len(items)
        asked: list[int] = []
        for i, it in enumerate(items):
            if it.media is None:
                out[i] = VerificationError(f"item {it.id!r}: the claim verifier needs the item's media")
            else:
                asked.append(i)
        results = self.score(
            [ClaimItem(items[i].caption, items[i].media, items[i].id, items[i].modality) for i in asked]
        )
        for i, res in zip(asked, results, strict=True):
            if res.ok:
                verdicts = res.verdicts or []
                claims = [ClaimVerdict(claim=c, true=v) for c, v in zip(res.claims, verdicts, strict=True)]
                out[i] = Verification(res.correctness, claims)  # type: ignore[arg-type]
            elif res.exception is not None and not isinstance(res.exception, VerificationError):
                out[i] = res.exception
            else:
                out[i] = VerificationError(f"claims not verified: {res.error}", raw=[*res.split_raw, *res.judge_raw])
        return out  # type: ignore[return-value]
