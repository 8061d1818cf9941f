"""The two legs of the visual-dependency filter: a VLM answers a shuffled MCQ with the media, and without it.

With media: the captioner protocol (``caption`` of the media and the answer prompt). Without: anything with the
reader protocol's ``generate`` (chat messages in, text out), the same answer prompt, no media. By default that is
the same VLM used text-only (``text_only``), as in the reference, where one small VLM answers both ways.

Both legs see the same ``r`` shuffles of a question (attempt ``j`` shows the options in the same order with and
without media), each drawn from a seed and the question itself, so a re-run asks exactly the same prompts. The
answer letter is read with ``caprl.reward.extract.extract_choice``; a reply it cannot read counts as wrong and is
counted in ``unparsed``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from PIL import Image
from pydantic import BaseModel, computed_field

from caprl.captioners.base import Captioner, CaptionerError, CaptionRequest, GenerationSettings
from caprl.data.media import VideoFrames
from caprl.qa.prompts import answer_prompt
from caprl.readers.base import Messages, ReaderError
from caprl.reward.extract import extract_choice
from caprl.reward.options import ShuffledMCQ, shuffle_options
from caprl.schema import MCQ


@runtime_checkable
class TextGenerator(Protocol):
    """The text-only leg: the ``generate`` half of the reader protocol."""

    name: str

    def generate(
        self,
        prompts: Sequence[Messages],
        *,
        max_new_tokens: int = 10,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]: ...


class _VLLMText:
    """Text-only prompts on a ``VLLMCaptioner``'s engine (no second copy of the model)."""

    def __init__(self, captioner: Any) -> None:
        self.captioner = captioner
        self.name = f"{captioner.name} (text only)"

    def generate(
        self,
        prompts: Sequence[Messages],
        *,
        max_new_tokens: int = 10,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:
        cap = self.captioner
        params = cap._vllm.SamplingParams(max_tokens=max_new_tokens, temperature=temperature, seed=seed)
        texts = [
            cap.tokenizer.apply_chat_template(
                list(p), tokenize=False, add_generation_prompt=True, **cap.chat_template_kwargs
            )
            for p in prompts
        ]
        outputs = cap.llm.generate(texts, params, use_tqdm=False, tokenization_kwargs={"add_special_tokens": False})
        return [out.outputs[0].text for out in outputs]


def text_only(captioner: Captioner) -> TextGenerator:
    """The same VLM answering without media: shares the loaded weights (transformers, vLLM) or the server."""
    if isinstance(captioner, TextGenerator):  # already speaks text (test doubles, readers)
        return captioner
    from caprl.captioners.openai import OpenAICaptioner
    from caprl.captioners.transformers import TransformersCaptioner
    from caprl.captioners.vllm import VLLMCaptioner

    if isinstance(captioner, TransformersCaptioner):
        from caprl.readers.transformers import TransformersReader

        # A VLM generates from text alone when it gets no pixel values; share_prefix off because the custom
        # packed masks of the fast path are for text-only architectures (generate does not use them anyway).
        try:
            return TransformersReader.from_model(
                captioner.model,
                captioner.processor.tokenizer,
                name=f"{captioner.name} (text only)",
                share_prefix=False,
            )
        except ReaderError as exc:
            raise TypeError(f"cannot use {captioner.name} without media ({exc}); give a reader for that leg") from None
    if isinstance(captioner, OpenAICaptioner):
        from caprl.readers.openai import OpenAIReader

        return OpenAIReader(captioner.api.base_url, captioner.model, max_concurrency=captioner.api.max_concurrency)
    if isinstance(captioner, VLLMCaptioner):
        return _VLLMText(captioner)
    raise TypeError(
        f"cannot use {type(captioner).__name__} without media: pass a text-only answerer (a reader) explicitly"
    )


class Attempt(BaseModel):
    """One answer: the gold letter in this shuffle, the letter read from the reply (None: unreadable), the reply."""

    gold: str
    choice: str | None
    raw: str


class LegStats(BaseModel):
    """The ``r`` answers of one leg (with or without media) to one question."""

    attempts: list[Attempt]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def n(self) -> int:
        return len(self.attempts)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def correct(self) -> int:
        return sum(a.choice == a.gold for a in self.attempts)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def unparsed(self) -> int:
        return sum(a.choice is None for a in self.attempts)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else 0.0


def shuffles(mcq: MCQ, key: str, r: int, seed: int) -> list[ShuffledMCQ]:
    """The ``r`` option orders of a question, from the seed and the question's key and text."""
    return [shuffle_options(mcq, random.Random(f"{seed}\x1f{key}\x1f{mcq.question}\x1f{j}")) for j in range(r)]


def _isolating(call: Callable[[list[Any]], list[str]], groups: list[list[Any]]) -> list[list[str] | Exception]:
    """Run ``call`` on all groups at once; if that fails, group by group, so one bad question fails alone."""
    errors = (CaptionerError, ReaderError)
    try:
        flat = call([x for g in groups for x in g])
    except errors as exc:
        if len(groups) == 1:
            return [exc]
        out: list[list[str] | Exception] = []
        for g in groups:
            try:
                out.append(call(g))
            except errors as exc:
                out.append(exc)
        return out
    result: list[list[str] | Exception] = []
    pos = 0
    for g in groups:
        result.append(flat[pos : pos + len(g)])
        pos += len(g)
    return result


@dataclass(frozen=True)
class AnswerTask:
    """One question to answer ``r`` times each way. ``media`` is loaded by the caller."""

    key: str
    mcq: MCQ
    modality: str
    media: Image.Image | VideoFrames


def answer_both_ways(
    tasks: Sequence[AnswerTask],
    vlm: Captioner,
    blind: TextGenerator,
    *,
    r: int,
    seed: int = 0,
    max_new_tokens: int = 16,
    temperature: float = 0.0,
) -> list[tuple[LegStats, LegStats] | Exception]:
    """Each task's answers with media and without, or the error that stopped its leg."""
    if r < 1:
        raise ValueError(f"r must be >= 1, got {r}")
    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    orders = [shuffles(t.mcq, t.key, r, seed) for t in tasks]
    prompts = [
        [answer_prompt(s.question, list(s.options), t.modality) for s in o] for t, o in zip(tasks, orders, strict=True)
    ]

    with_groups = [
        [CaptionRequest(media=t.media, prompt=p, id=f"{t.key}/with/{j}") for j, p in enumerate(ps)]
        for t, ps in zip(tasks, prompts, strict=True)
    ]
    with_texts = _isolating(lambda reqs: [texts[0] for texts in vlm.caption(reqs, settings)], with_groups)
    blind_groups = [[[{"role": "user", "content": p}] for p in ps] for ps in prompts]
    blind_texts = _isolating(
        lambda msgs: blind.generate(msgs, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed),
        blind_groups,
    )

    results: list[tuple[LegStats, LegStats] | Exception] = []
    for order, with_t, blind_t in zip(orders, with_texts, blind_texts, strict=True):
        if isinstance(with_t, Exception):
            results.append(with_t)
            continue
        if isinstance(blind_t, Exception):
            results.append(blind_t)
            continue
        legs = []
        for texts in (with_t, blind_t):
            attempts = [
                Attempt(gold=s.gold_letter, choice=extract_choice(text, list(s.options)), raw=text)
                for s, text in zip(order, texts, strict=True)
            ]
            legs.append(LegStats(attempts=attempts))
        results.append((legs[0], legs[1]))
    return results
