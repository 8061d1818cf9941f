"""The CapRL reward: how well a text-only reader answers an item's MCQs from a caption.

For each caption: pick questions (all, or N with replacement), shuffle each one's options and relabel them, ask
the reader, score each answer (``hard``: the chosen letter is gold; ``soft``: probability of gold;
``blind_gain``: the score minus the same question's score with an empty caption), average, and add optional
length and timestamp-format terms. Every result carries its parts so a user can see why a caption scored what
it did.

Randomness (question draws, shuffles, sampled letters) is seeded per item from ``seed`` and the item's content,
so the same caption gets the same reward however it is batched — in process or through the reward service. On the
generate path each asked question's seed goes to the reader (``seeds``), which samples every prompt on its own.

>>> engine = RewardEngine(reader, RewardConfig(mode="soft"))                      # doctest: +SKIP
>>> engine.score([RewardItem(caption="A red circle ...", mcqs=sample.mcqs)])[0].reward   # doctest: +SKIP
0.83
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from caprl.flags import Flag
from caprl.readers.base import LetterQuery, LetterScores, Reader, takes_seeds
from caprl.reward.correctness import NO_SCENE, ClaimVerdict, Verification, Verifier, scene_verification
from caprl.reward.extract import extract_choice, first_capital_letter
from caprl.reward.options import DEFAULT_UNANSWERABLE, ShuffledMCQ, sample_questions, shuffle_options
from caprl.reward.prompt import Messages, PromptTemplate, build_messages
from caprl.reward.prompt_caprl import caprl_messages
from caprl.reward.terms import length_term, timestamp_stats
from caprl.schema import LETTERS, MCQ, Modality, validation_error_to_schema_error

log = logging.getLogger(__name__)

# The reward's named choices, written once: the CLIs, the training config and the service take them from here.
RewardMode = Literal["hard", "soft", "blind_gain"]
QuestionDraw = Literal["caption", "item"]
ReadPath = Literal["score", "generate"]
PromptName = Literal["default", "caprl"]
AnswerParse = Literal["robust", "first_letter"]
CorrectnessForm = Literal["share", "refuted"]


def hard_score(chosen: str | None, scores: LetterScores | None, shown: ShuffledMCQ, wrong_penalty: float) -> float:
    """+1 for gold, 0 for "cannot be answered" or an unreadable answer, -``wrong_penalty`` for a wrong option."""
    if chosen == shown.gold_letter:
        return 1.0
    if chosen is None or chosen == shown.unanswerable_letter:
        return 0.0
    return -wrong_penalty


def soft_score(chosen: str | None, scores: LetterScores | None, shown: ShuffledMCQ, wrong_penalty: float) -> float:
    """P(gold), less ``wrong_penalty`` x P(a wrong option)."""
    if scores is None:
        raise ValueError("soft scores need letter probabilities: use path='score'")
    gold = scores.prob(shown.gold_letter)
    if not wrong_penalty:
        return gold
    abstain = shown.unanswerable_letter
    wrong = 1.0 - gold - (scores.prob(abstain) if abstain else 0.0)
    return gold - wrong_penalty * max(0.0, wrong)


@dataclass(frozen=True)
class QuestionScore:
    """How one asked question scores, from the chosen letter and (on the score path) the letters' probabilities."""

    score: Callable[[str | None, LetterScores | None, ShuffledMCQ, float], float]
    """``(chosen letter or None, letter probabilities or None, the question as asked, wrong_penalty) -> score``."""
    needs_probabilities: bool
    """True: it reads the probabilities, so only the score path gives them (the generate path is refused)."""


QUESTION_SCORES: dict[str, QuestionScore] = {
    "hard": QuestionScore(hard_score, needs_probabilities=False),
    "soft": QuestionScore(soft_score, needs_probabilities=True),
}


@dataclass(frozen=True)
class ModeRule:
    """What a reward mode does with each question: its per-question score (a ``QUESTION_SCORES`` name; None: the
    config's ``blind_score``), whether the same question's score with an empty caption is subtracted, and whether
    the chosen letter is sampled (``hard_choice``) or the likeliest."""

    question: str | None
    minus_blind: bool = False
    samples_letter: bool = True

    def question_score(self, config: RewardConfig) -> QuestionScore:
        return QUESTION_SCORES[self.question or config.blind_score]


MODES: dict[str, ModeRule] = {
    "hard": ModeRule("hard"),
    "soft": ModeRule("soft", samples_letter=False),
    "blind_gain": ModeRule(None, minus_blind=True),
}
"""Every ``RewardMode``, and what it does. A new mode is its name in ``RewardMode`` and a line here (and, for a
new per-question score, a line in ``QUESTION_SCORES``): the CLIs, the training config, the service and verl take
the choice from ``RewardConfig``, and the service refuses a mode on a path that cannot give it its scores."""


class RewardConfig(BaseModel):
    """How captions are scored. Defaults follow CapRL where it is sound (shuffled options, an added
    "cannot be answered" option, a letter sampled at temperature 0.6) and read every question once, from the
    letters' probabilities. ``caprl.reward.presets`` holds CapRL's own settings (``caprl``, ``caprl-v1``) and says
    why the defaults differ."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    mode: RewardMode = "hard"
    """How an answer scores: ``hard`` (the chosen letter is gold), ``soft`` (probability of gold) or
    ``blind_gain`` (the score minus the same question's score with an empty caption)."""
    n_questions: Annotated[int | None, Flag("--n")] = Field(default=None, ge=1)
    """Questions asked per caption, drawn with replacement (CapRL); None asks each question once."""
    question_draw: QuestionDraw = "caption"
    """What seeds the question draws and option shuffles: ``caption`` (each its own, as CapRL) or ``item``. With
    ``item`` every caption of an item gets the same questions, shuffled the same way: the captions of a GRPO group
    are compared on the same questions, so their rewards differ by what the captions say, not by
    which questions they drew (common random numbers); fewer questions then carry the same signal."""
    hard_choice: Literal["sample", "argmax"] = "sample"
    """How ``hard`` mode picks the answer: a letter sampled at ``temperature`` (CapRL) or the likeliest one."""
    temperature: float = Field(default=0.6, gt=0)
    """Temperature of the sampled letter in ``hard`` mode (CapRL's reader samples at 0.6)."""
    blind_score: Literal["soft", "hard"] = "soft"
    """Which per-question score ``blind_gain`` subtracts from (``soft`` has far less variance)."""
    shuffle: bool = True
    """Shuffle each question's options (CapRL's ``--shuffle_qa``); off: as given."""
    unanswerable_option: Annotated[bool, Flag("--unanswerable")] = True
    """Append the "cannot be answered" option (CapRL does)."""
    unanswerable_text: str = DEFAULT_UNANSWERABLE
    """Wording of the added "cannot be answered" option."""
    unanswerable_letter: str | None = None
    """Letter of the added "cannot be answered" option (CapRL: F; none: the letter after the options). Where an
    option already has it, the letter after the options (``caprl.reward.options.unanswerable_label``)."""
    path: ReadPath = "score"
    """``score``: letter probabilities from one forward pass; ``generate``: free text, parsed."""
    prompt: PromptName = "default"
    """``default``: caprl's prompt (``caprl.reward.prompt``); ``caprl``: CapRL's layout, two worked examples and an
    answer lead-in (``caprl.reward.prompt_caprl``; generate path only)."""
    answer_parse: AnswerParse = "robust"
    """Generate path: ``robust`` (default) or ``first_letter`` (CapRL). ``robust`` reads the answer as
    ``caprl.reward.extract.extract_choice`` does; ``first_letter`` takes the first capital A-I in the output, as
    CapRL does ("I think..." reads as I)."""
    max_new_tokens: int = Field(default=10, ge=1)
    """Longest generated answer in tokens (generate path)."""
    wrong_penalty: float = Field(default=0.0, ge=0)
    """What a wrong answer costs against "cannot be answered" (0, CapRL: a guess is free). ``hard`` scores +1
    right, 0 for "cannot be answered" (or an unreadable answer), -``wrong_penalty`` wrong; ``soft`` scores P(gold) -
    ``wrong_penalty`` x P(a wrong option). With 0 a caption that invents a colour loses nothing against one that
    leaves it out; docs/train.md ("Paying for truth") has the measurements."""
    qa_weight: float = 1.0
    """Weight of the mean per-question score in the reward (CapRL v1's server: 2, rewards in 0-2)."""
    length_weight: float = 0.0
    """Weight of the length term (needs the caption's token count: a length tokenizer, or items that send it)."""
    length_full_until: int = 2048
    """Caption tokens up to which the length term is full (1)."""
    length_zero_at: int = 3072
    """Caption tokens from which the length term is 0 (linear in between)."""
    timestamp_weight: float = 0.0
    """Weight of the video timestamp-format term."""
    correctness_weight: float = 0.0
    """Weight of the correctness term: the share of the caption's statements a verifier confirms. CCCaption-style
    (``caprl.reward.correctness``; shapes-world items carry their ``scene``, checked by ``caprl.synth.truth``; other
    items their ``media``, checked claim by claim by the engine's ``verifier``, e.g. ``caprl.reward.claims``)."""
    correctness_form: CorrectnessForm = "share"
    """``share``: + weight x share confirmed (CCCaption); ``refuted``: - weight x statements not confirmed. ``share``
    adds weight x the share of statements confirmed (CCCaption's correctness reward); ``refuted`` subtracts weight x
    the number not confirmed (false, or unreadable), so each hallucination costs the same however many true
    statements surround it (a share can be raised by adding true statements around a false one)."""
    seed: int = 0
    """Seed of the question draws, option shuffles and sampled letters."""

    @field_validator("unanswerable_letter")
    @classmethod
    def _one_capital(cls, v: str | None) -> str | None:
        if v is not None and (len(v) != 1 or v not in LETTERS):
            raise ValueError(f"must be one capital letter A-Z, got {v!r}")
        return v

    @model_validator(mode="after")
    def _mode_has_a_rule(self) -> RewardConfig:
        if self.mode not in MODES:  # a name added to RewardMode without its rule
            raise ValueError(f"mode {self.mode!r} has no rule in caprl.reward.engine.MODES")
        return self

    @model_validator(mode="after")
    def _lead_in_needs_generate(self) -> RewardConfig:
        if self.prompt == "caprl" and self.path != "generate":
            raise ValueError(
                "prompt 'caprl' ends with an answer lead-in, after which the letter is a spaced token the score path "
                "does not read; use path 'generate' with it (as CapRL does), or prompt 'default'"
            )
        return self


class RewardItem(BaseModel):
    """One caption to score and the MCQs of the item it describes."""

    model_config = ConfigDict(extra="forbid")

    caption: str
    mcqs: list[MCQ]
    modality: Modality = "image"
    id: str | None = None
    caption_tokens: int | None = Field(default=None, ge=0)
    """Length in policy tokens, for the length term (else counted with the engine's ``count_tokens``)."""
    scene: dict[str, Any] | None = None
    """The shapes-world scene graph (``Sample.metadata["scene"]``), for the correctness term's verifier."""
    media: Any = Field(default=None, exclude=True)
    """For the correctness term on real media (the engine's ``verifier``; not serialised): a PIL image,
    ``VideoFrames``, a file path, or an object whose ``load()`` returns one (``caprl.reward.claims.MediaSource``)."""

    @field_validator("media")
    @classmethod
    def _media_kind(cls, v: Any) -> Any:
        # A dict from a JSON file is no media the verifier can open: refuse it here rather than at scoring time.
        if v is None or isinstance(v, (str, Path)) or callable(getattr(v, "load", None)):
            return v
        from PIL import Image

        from caprl.data.media import VideoFrames

        if isinstance(v, (Image.Image, VideoFrames)):
            return v
        raise ValueError(f"media must be an image, VideoFrames, a path, or have load(); got {type(v).__name__}")

    @field_validator("mcqs")
    @classmethod
    def _has_mcqs(cls, v: list[MCQ]) -> list[MCQ]:
        if not v:
            raise ValueError("an item needs at least one MCQ")
        return v


class QuestionResult(BaseModel):
    """One asked question: how it was shown, what the reader chose, and the score it earned."""

    mcq_index: int
    order: list[int | None]
    """Original option index shown at each letter (None: the added "cannot be answered" option)."""
    gold: str
    chosen: str | None
    probs: dict[str, float] | None = None
    letter_mass: float | None = None
    score: float
    blind_score: float | None = None
    raw_output: str | None = None


class RewardResult(BaseModel):
    """The reward of one caption and its parts."""

    id: str | None = None
    reward: float
    qa: float
    """Mean per-question score (accuracy, gold probability, or gain over the blind reader)."""
    accuracy: float
    """Share of questions whose chosen letter was gold, whatever the mode."""
    length: float | None = None
    timestamp: float | None = None
    correctness: float | None = None
    claims: list[ClaimVerdict] | None = None
    """The claims the correctness term's claim verifier checked, with their verdicts (None: not claim-verified)."""
    parse_failures: int = 0
    questions: list[QuestionResult]


def reward_item_from_dict(record: dict, *, row: int | None = None) -> RewardItem:
    """Validate one request item; a malformed one raises ``SchemaError`` naming its id, field and reason."""
    try:
        return RewardItem.model_validate(record)
    except ValidationError as exc:
        rid = record.get("id") if isinstance(record, dict) else None
        raise validation_error_to_schema_error(exc, row=row, id=None if rid is None else str(rid)) from None


@dataclass(frozen=True)
class _Ask:
    item: int
    mcq_index: int
    shown: ShuffledMCQ
    rng_seed: int


def item_seed(seed: int, item: RewardItem, *, caption: bool = True) -> int:
    """A seed that depends only on the global seed and the item's content (caption, questions, options);
    ``caption=False`` leaves the caption out (the same seed for every caption of an item)."""
    parts = [seed, item.caption] if caption else [seed]
    payload = json.dumps([*parts, [[q.question, q.options, q.gold] for q in item.mcqs]], ensure_ascii=False).encode()
    return int.from_bytes(hashlib.sha256(payload).digest()[:8], "little")


def _sample_letter(scores: LetterScores, temperature: float, rng: random.Random) -> str:
    logits = np.log(np.clip(scores.probs, 1e-300, None)) / temperature
    p = np.exp(logits - logits.max())
    p /= p.sum()
    u, acc = rng.random(), 0.0
    for letter, pi in zip(scores.letters, p, strict=True):
        acc += pi
        if u < acc:
            return letter
    return scores.letters[-1]


class RewardEngine:
    """Scores captions with a ``Reader`` (see ``caprl.readers``) under a ``RewardConfig``. ``template`` shapes the
    default prompt (``config.prompt == "default"``); the ``caprl`` prompt has CapRL's fixed layout. ``verifier``
    gives the correctness term of items without a ``scene`` (``caprl.reward.claims.ClaimVerifier``)."""

    def __init__(
        self,
        reader: Reader,
        config: RewardConfig | None = None,
        *,
        template: PromptTemplate | None = None,
        count_tokens: Callable[[str], int] | None = None,
        verifier: Verifier | None = None,
    ):
        self.reader = reader
        self.verifier = verifier
        self.config = config or RewardConfig()
        self.template = template or PromptTemplate()
        self.count_tokens = count_tokens
        self._warned_seeds = False

    # -- planning ---------------------------------------------------------------------------------------------
    def _plan(self, items: Sequence[RewardItem]) -> list[_Ask]:
        cfg = self.config
        unanswerable = cfg.unanswerable_text if cfg.unanswerable_option else None
        asks = []
        for i, item in enumerate(items):
            rng = random.Random(item_seed(cfg.seed, item, caption=cfg.question_draw == "caption"))
            for q in sample_questions(len(item.mcqs), cfg.n_questions, rng):
                shown = shuffle_options(
                    item.mcqs[q], rng, shuffle=cfg.shuffle, unanswerable=unanswerable,
                    unanswerable_letter=cfg.unanswerable_letter,
                )  # fmt: skip
                asks.append(_Ask(i, q, shown, rng.getrandbits(63)))
        return asks

    def messages(self, caption: str, shown: ShuffledMCQ, modality: str = "image") -> Messages:
        """The chat messages the reader gets for one asked question (the config's prompt)."""
        cfg = self.config
        if cfg.prompt == "caprl":
            return caprl_messages(
                caption, shown, modality=modality, unanswerable=cfg.unanswerable_text,
                unanswerable_letter=cfg.unanswerable_letter,
            )  # fmt: skip
        return build_messages(caption, shown, template=self.template, modality=modality)

    # -- reading ----------------------------------------------------------------------------------------------
    def _read(self, captions: Sequence[str], asks: Sequence[_Ask], items: Sequence[RewardItem]):
        """Per ask: (chosen letter or None, LetterScores or None, raw text or None)."""
        cfg = self.config
        messages = [self.messages(captions[a.item], a.shown, items[a.item].modality) for a in asks]
        if cfg.path == "score":
            scores = self.reader.score_letters(
                [LetterQuery(m, a.shown.letters) for m, a in zip(messages, asks, strict=True)]
            )
            sample = MODES[cfg.mode].samples_letter and cfg.hard_choice == "sample"
            return [
                (_sample_letter(s, cfg.temperature, random.Random(a.rng_seed)) if sample else s.argmax, s, None)
                for a, s in zip(asks, scores, strict=True)
            ]
        texts = self._generate(messages, [a.rng_seed for a in asks])
        if cfg.answer_parse == "first_letter":
            return [(first_capital_letter(t), None, t) for t in texts]
        return [
            (extract_choice(t, list(a.shown.options), a.shown.letters), None, t)
            for a, t in zip(asks, texts, strict=True)
        ]

    def _generate(self, messages: list[Messages], seeds: list[int]) -> list[str]:
        """The reader's texts, each prompt sampled from its ask's seed, so that a question's sampled answer does not
        depend on the batch (as on the score path). A reader whose ``generate`` takes no ``seeds`` gets the config's
        one seed: its samples may then depend on the batch (every built-in reader takes ``seeds``)."""
        cfg = self.config
        kw = {"max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature}
        if takes_seeds(self.reader):
            return self.reader.generate(messages, seeds=seeds, **kw)
        if not self._warned_seeds:
            self._warned_seeds = True
            log.warning(
                "reader %s takes no per-prompt seeds: its sampled answers, and so the rewards, may depend on the batch",
                getattr(self.reader, "name", type(self.reader).__name__),
            )
        return self.reader.generate(messages, seed=cfg.seed, **kw)

    # -- public -----------------------------------------------------------------------------------------------
    def score(self, items: Sequence[RewardItem]) -> list[RewardResult]:
        """Rewards for ``items``, in order. Reader and verifier failures raise: a reward is never made up."""
        out = []
        for r in self.score_each(items):
            if isinstance(r, Exception):
                raise r
            out.append(r)
        return out

    def score_each(self, items: Sequence[RewardItem]) -> list[RewardResult | Exception]:
        """Like ``score``, but an item whose correctness could not be verified gets the exception that says why in
        its place (the others keep their rewards); reader failures still raise for the whole call."""
        cfg = self.config
        if not items:
            return []
        asks = self._plan(items)
        rule = MODES[cfg.mode]
        question_score = rule.question_score(cfg).score
        read = self._read([it.caption for it in items], asks, items)
        blind = self._read([""] * len(items), asks, items) if rule.minus_blind else None
        per_item: list[list[QuestionResult]] = [[] for _ in items]
        for k, a in enumerate(asks):
            chosen, scores, raw = read[k]
            score = question_score(chosen, scores, a.shown, cfg.wrong_penalty)
            blind_score = None
            if blind is not None:
                b_chosen, b_scores, _ = blind[k]
                blind_score = question_score(b_chosen, b_scores, a.shown, cfg.wrong_penalty)
            per_item[a.item].append(
                QuestionResult(
                    mcq_index=a.mcq_index,
                    order=list(a.shown.order),
                    gold=a.shown.gold_letter,
                    chosen=chosen,
                    probs=None if scores is None else dict(zip(scores.letters, map(float, scores.probs), strict=True)),
                    letter_mass=None if scores is None else scores.letter_mass,
                    score=score if blind_score is None else score - blind_score,
                    blind_score=blind_score,
                    raw_output=raw,
                )
            )
        verified = self._verify(items) if cfg.correctness_weight else [None] * len(items)
        return [
            v if isinstance(v, Exception) else self._finish(item, qs, v)
            for item, qs, v in zip(items, per_item, verified, strict=True)
        ]

    def _verify(self, items: Sequence[RewardItem]) -> list[Verification | Exception | None]:
        """The correctness term's verification per item: the scene graph where there is one, else the verifier."""
        out: list[Verification | Exception | None] = [None] * len(items)
        others = []
        for i, item in enumerate(items):
            if item.scene is not None:
                out[i] = scene_verification(item)
            else:
                others.append(i)
        if not others:
            return out
        if self.verifier is None:
            raise ValueError(f"item {items[others[0]].id!r}: {NO_SCENE}")
        got = self.verifier.verify([items[i] for i in others])
        if len(got) != len(others):
            raise RuntimeError(f"the verifier gave {len(got)} results for {len(others)} items")
        for i, v in zip(others, got, strict=True):
            out[i] = v
        return out

    def _finish(
        self, item: RewardItem, questions: list[QuestionResult], verified: Verification | None = None
    ) -> RewardResult:
        cfg = self.config
        qa = sum(q.score for q in questions) / len(questions)
        accuracy = sum(q.chosen == q.gold for q in questions) / len(questions)
        reward = cfg.qa_weight * qa
        length = timestamp = None
        if cfg.length_weight:
            n = item.caption_tokens
            if n is None:
                if self.count_tokens is None:
                    raise ValueError(
                        "the length term needs caption_tokens on each item or a count_tokens function on the engine"
                    )
                n = self.count_tokens(item.caption)
            length = length_term(n, full_until=cfg.length_full_until, zero_at=cfg.length_zero_at)
            reward += cfg.length_weight * length
        if cfg.timestamp_weight and item.modality == "video":
            timestamp = timestamp_stats(item.caption).score
            reward += cfg.timestamp_weight * timestamp
        correctness = claims = None
        if cfg.correctness_weight:
            if verified is None:  # a caller of _finish that did not verify (none in this module)
                raise ValueError(f"item {item.id!r}: the correctness term is on and the item was not verified")
            correctness, claims = verified.correctness, verified.claims
            if cfg.correctness_form == "share":
                reward += cfg.correctness_weight * correctness
            else:
                reward -= cfg.correctness_weight * verified.not_confirmed
        if not math.isfinite(reward):
            raise ValueError(f"item {item.id!r}: reward is not finite ({reward})")
        return RewardResult(
            id=item.id,
            reward=reward,
            qa=qa,
            accuracy=accuracy,
            length=length,
            timestamp=timestamp,
            correctness=correctness,
            claims=claims,
            parse_failures=sum(q.chosen is None for q in questions),
            questions=questions,
        )
