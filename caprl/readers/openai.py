"""A reader behind an OpenAI-compatible HTTP server (vLLM, SGLang, transformers serve, hosted APIs).

``score_letters`` reads the answer distribution from one prefill per prompt (``max_tokens=1``), in one of two ways:

``completions`` (preferred)
    Prompts are rendered with the reader's chat template into token ids — by a local tokenizer
    (``tokenizer=``) or by the server's ``/tokenize`` endpoint (vLLM) — and sent in bulk to ``/v1/completions``
    (a list of prompts per request). The letters' log-probabilities come from vLLM's ``logprob_token_ids``
    (exact, full-vocabulary log-probabilities of the listed ids, nothing to match by text), or, on servers that
    do not know that field, from the top ``top_logprobs`` alternatives.
``chat``
    When no token ids are to be had: one ``/v1/chat/completions`` request per prompt with ``logprobs: true,
    top_logprobs: 20``; letters are matched by token text.

A letter's probability is that of the bare letter token (``"A"``), as in ``caprl.readers.transformers``, so both
backends give the same numbers for the same model; ``spaced_letters=True`` adds the ``" A"`` spelling's
probability (for templates after which a reader opens with a space). With top-k log-probabilities a letter may be
missing from the list; it then gets a floor (no more than the smallest listed log-probability and no
more than its share of the mass left over), and ``stats.floored_letters`` counts how often that happened.

``generate`` sends one ``/v1/chat/completions`` request per prompt, with that prompt's ``seeds`` entry (or the call's
``seed``) as the request's ``seed``: vLLM then samples each prompt from its own generator, so a prompt's text does
not depend on the other prompts of the call nor on what the server batches it with (up to the float noise of
batched kernels); hosted APIs treat ``seed`` as best effort. Everything is async inside (httpx), bounded
by ``max_concurrency``, with timeouts and retries (see ``caprl.http``); the sync methods work from plain code,
worker threads and running event loops alike, and ``ascore_letters`` / ``agenerate`` serve async callers.

>>> reader = OpenAIReader("http://127.0.0.1:8000/v1", tokenizer="Qwen/Qwen2.5-3B-Instruct")   # doctest: +SKIP
>>> reader.score_letters([LetterQuery(messages, "ABCD")])[0].argmax                          # doctest: +SKIP
'C'
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from caprl.http import APIError, AsyncAPI, RetryPolicy, gather_or_cancel
from caprl.readers.base import (
    LetterQuery,
    LetterScores,
    Messages,
    ReaderError,
    check_seeds,
    letter_scores_from_logprobs,
    template_flags,
)
from caprl.readers.letter_logprobs import (
    MAX_LOGPROB_TOKEN_IDS,
    check_queries,
    completion_top_logprobs,
    letters_from_id_logprobs,
    letters_from_topk,
    parse_token_key,
)
from caprl.readers.openai_tokens import PromptTokens

API_KEY_ENV = "CAPRL_OPENAI_API_KEY"
FALLBACK_API_KEY_ENV = "OPENAI_API_KEY"

Mode = Literal["auto", "completions", "chat"]
LogprobsMode = Literal["auto", "token_ids", "topk"]


@dataclass
class ReaderStats:
    """Counters for logs and tests."""

    requests: int = 0
    prompts: int = 0
    floored_letters: int = 0  # letters absent from a top-k list, given a floor log-probability
    retries: int = 0


def resolve_api_key(api_key: str | None) -> str | None:
    return api_key or os.environ.get(API_KEY_ENV) or os.environ.get(FALLBACK_API_KEY_ENV) or None


class _Unsupported(Exception):
    """The server ignored or refused ``logprob_token_ids``."""


# ----- the reader -----


class OpenAIReader:
    """Reader protocol over an OpenAI-compatible server. See the module docstring for how letters are scored.

    ``model``: the served model's name (None: the first one ``/v1/models`` lists, or none sent when that fails).
    ``tokenizer``: a path/hub id or a loaded tokenizer of the served model; renders prompts locally and gives the
    letters' token ids. ``mode``: ``auto`` (completions when token ids are to be had, else chat), ``completions``
    or ``chat``. ``logprobs``: ``auto`` (``logprob_token_ids`` when the server honours it, else top-k),
    ``token_ids`` or ``topk``. ``batch_size``: prompts per ``/v1/completions`` request.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        tokenizer: Any = None,
        max_concurrency: int = 16,
        timeout: float = 60.0,
        max_retries: int = 4,
        mode: Mode = "auto",
        logprobs: LogprobsMode = "auto",
        top_logprobs: int = 20,
        batch_size: int = 32,
        chat_template_kwargs: dict[str, Any] | None = None,
        spaced_letters: bool = False,
        backoff_base: float = 0.5,
    ):
        if mode not in ("auto", "completions", "chat"):
            raise ValueError(f"mode must be auto, completions or chat, got {mode!r}")
        if logprobs not in ("auto", "token_ids", "topk"):
            raise ValueError(f"logprobs must be auto, token_ids or topk, got {logprobs!r}")
        self.api = AsyncAPI(
            base_url,
            RetryPolicy(max_retries=max_retries, timeout=timeout, backoff_base=backoff_base),
            api_key=resolve_api_key(api_key),
            max_concurrency=max_concurrency,
        )
        self.model = model
        self.name = f"openai:{model or base_url}"
        self.mode: Mode = mode
        self.logprobs_mode: LogprobsMode = logprobs
        self.top_logprobs = top_logprobs
        self.batch_size = max(1, batch_size)
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.spaced_letters = spaced_letters
        self.stats = ReaderStats()
        self.tokens = PromptTokens(
            self._post, tokenizer, chat_template_kwargs=self.chat_template_kwargs, spaced_letters=spaced_letters
        )
        self._model_resolved = model is not None
        self._vllm_extras = True  # send vLLM's extra fields until a server refuses them
        self._probe_lock: asyncio.Lock | None = None  # made on the client's event loop

    # ----- lifecycle -----

    def close(self) -> None:
        self.api.close()
        self._probe_lock = None

    def __enter__(self) -> OpenAIReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----- protocol (sync) -----

    def score_letters(self, queries: Sequence[LetterQuery]) -> list[LetterScores]:
        return self.api.run(self._score_letters(list(queries)))

    def generate(
        self,
        prompts: Sequence[Messages],
        *,
        max_new_tokens: int = 10,
        temperature: float = 0.0,
        seed: int | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[str]:
        return self.api.run(self._generate(list(prompts), max_new_tokens, temperature, seed, seeds))

    # ----- async variants -----

    async def ascore_letters(self, queries: Sequence[LetterQuery]) -> list[LetterScores]:
        return await self.api.submit(self._score_letters(list(queries)))

    async def agenerate(
        self,
        prompts: Sequence[Messages],
        *,
        max_new_tokens: int = 10,
        temperature: float = 0.0,
        seed: int | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[str]:
        return await self.api.submit(self._generate(list(prompts), max_new_tokens, temperature, seed, seeds))

    # ----- helpers -----

    def _error(self, exc: APIError) -> ReaderError:
        return ReaderError(f"reader {self.name}: {exc}")

    async def _post(self, path: str, payload: dict[str, Any], *, root: bool = False) -> Any:
        if self.model is not None:
            payload = {"model": self.model, **payload}
        self.stats.requests += 1
        try:
            return await self.api.post_json(path, payload, root=root)
        finally:
            self.stats.retries = self.api.retries

    async def _resolve_model(self) -> None:
        if not self._model_resolved:
            self._model_resolved = True
            if served := await self.api.served_model():
                self.model, self.name = served, f"openai:{served}"

    async def _resolve_mode(self) -> Mode:
        if self.mode != "auto":
            if self.mode == "completions" and not await self.tokens.available():
                raise ReaderError(
                    f"reader {self.name}: mode='completions' needs token ids: pass tokenizer= (the served model's) "
                    "or use a server with a /tokenize endpoint (vLLM)"
                )
            return self.mode
        if await self.tokens.available():
            self.mode = "completions"
        else:
            self.mode = "chat"
        return self.mode

    # ----- scoring -----

    async def _score_letters(self, queries: list[LetterQuery]) -> list[LetterScores]:
        if not queries:
            return []
        check_queries(queries)
        try:
            await self._resolve_model()
            mode = await self._resolve_mode()
            if mode == "chat":
                results = await gather_or_cancel([self._score_chat(q) for q in queries])
            else:
                results = await self._score_completions(queries)
        except APIError as exc:
            raise self._error(exc) from None
        self.stats.prompts += len(queries)
        return results

    async def _score_completions(self, queries: list[LetterQuery]) -> list[LetterScores]:
        variants = await self.tokens.variants("".join(dict.fromkeys("".join(q.letters for q in queries))))
        prompts = await gather_or_cancel([self.tokens.render(q.messages) for q in queries])
        chunks = [
            list(range(i, min(i + self.batch_size, len(queries)))) for i in range(0, len(queries), self.batch_size)
        ]
        out: list[LetterScores | None] = [None] * len(queries)

        async def run(chunk: list[int], use_ids: bool, probe: bool = False) -> None:
            scored = await self._completions_chunk(
                [queries[i] for i in chunk], [prompts[i] for i in chunk], variants, use_ids=use_ids, probe=probe
            )
            for i, s in zip(chunk, scored, strict=True):
                out[i] = s

        if self.logprobs_mode == "auto":
            if self._probe_lock is None:
                self._probe_lock = asyncio.Lock()
            async with self._probe_lock:  # one probe, even when several calls arrive at once
                if self.logprobs_mode == "auto":
                    # The first chunk finds out whether the server honours logprob_token_ids; the rest follow.
                    try:
                        await run(chunks[0], use_ids=True, probe=True)
                        self.logprobs_mode = "token_ids"
                    except _Unsupported:
                        self.logprobs_mode = "topk"
                        await run(chunks[0], use_ids=False)
                    chunks = chunks[1:]
        use_ids = self.logprobs_mode == "token_ids"
        await gather_or_cancel([run(c, use_ids) for c in chunks])
        assert all(s is not None for s in out)
        return out  # type: ignore[return-value]

    async def _completions_chunk(
        self,
        queries: list[LetterQuery],
        prompts: list[list[int]],
        variants: dict[str, list[int]],
        *,
        use_ids: bool,
        probe: bool = False,
    ) -> list[LetterScores]:
        """Score one bulk request, by ``logprob_token_ids`` (``use_ids``) or top-k. ``probe``: raise
        ``_Unsupported`` if the server refuses or ignores ``logprob_token_ids`` (auto mode then falls back to
        top-k) instead of failing."""
        payload: dict[str, Any] = {
            "prompt": prompts,
            "max_tokens": 1,
            "temperature": 0.0,
        }
        if self._vllm_extras:
            payload["return_tokens_as_token_ids"] = True  # vLLM: top-logprob keys as "token_id:N", no text clashes
        wanted = sorted({i for q in queries for letter in q.letters for i in variants[letter]})
        if use_ids:
            if len(wanted) > MAX_LOGPROB_TOKEN_IDS:
                raise ReaderError(f"{len(wanted)} letter token ids exceed vLLM's limit of {MAX_LOGPROB_TOKEN_IDS}")
            payload["logprob_token_ids"] = wanted
            payload["logprobs"] = 1  # vLLM requires logprobs to be set alongside logprob_token_ids
        else:
            payload["logprobs"] = self.top_logprobs
        try:
            body = await self._post("/completions", payload)
        except APIError as exc:
            if probe and exc.status in (400, 422):
                self._vllm_extras = False  # a server that refuses fields it does not know: plain OpenAI from now
                raise _Unsupported from None
            raise
        choices = sorted(body.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != len(queries):
            raise ReaderError(
                f"reader {self.name}: /v1/completions answered {len(choices)} choices for {len(queries)} prompts"
            )
        results = []
        for q, choice in zip(queries, choices, strict=True):
            top = completion_top_logprobs(choice)
            if top is None:
                if probe:
                    raise _Unsupported
                raise ReaderError(
                    f"reader {self.name}: /v1/completions returned no log-probabilities "
                    "(this server does not support `logprobs`); use generate() with answer extraction instead"
                )
            if use_ids:
                by_id = {k: v for k, v in top if isinstance(k, int)}
                needed = [i for letter in q.letters for i in variants[letter]]
                if any(i not in by_id for i in needed):
                    if probe:
                        raise _Unsupported  # logprob_token_ids was ignored: only the top-k came back
                    raise ReaderError(
                        f"reader {self.name}: the server ignored `logprob_token_ids` (letters missing from its "
                        "answer); use logprobs='topk' or 'auto'"
                    )
                results.append(
                    letter_scores_from_logprobs(q.letters, letters_from_id_logprobs(q.letters, variants, by_id))
                )
            else:
                lps, floored = letters_from_topk(q.letters, top, variants, spaced=self.spaced_letters)
                self.stats.floored_letters += floored
                results.append(letter_scores_from_logprobs(q.letters, lps))
        return results

    async def _score_chat(self, query: LetterQuery) -> LetterScores:
        payload: dict[str, Any] = {
            "messages": query.messages,
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": True,
            "top_logprobs": self.top_logprobs,
            **_lead_in_flags(query.messages),
        }
        if self.chat_template_kwargs:
            payload["chat_template_kwargs"] = self.chat_template_kwargs
        body = await self._post("/chat/completions", payload)
        choices = body.get("choices") or []
        content = ((choices[0].get("logprobs") or {}).get("content") if choices else None) or []
        if not content or content[0].get("top_logprobs") is None:
            raise ReaderError(
                f"reader {self.name}: /v1/chat/completions returned no log-probabilities (this server ignores "
                "`logprobs`/`top_logprobs`); pass tokenizer= for /v1/completions, or use generate() with answer "
                "extraction"
            )
        first = content[0]
        top = [(parse_token_key(str(e["token"])), float(e["logprob"])) for e in first["top_logprobs"]]
        if not top and "token" in first:
            top = [(parse_token_key(str(first["token"])), float(first["logprob"]))]
        lps, floored = letters_from_topk(query.letters, top, spaced=self.spaced_letters)
        self.stats.floored_letters += floored
        return letter_scores_from_logprobs(query.letters, lps)

    # ----- generation -----

    async def _generate(
        self,
        prompts: list[Messages],
        max_new_tokens: int,
        temperature: float,
        seed: int | None,
        seeds: Sequence[int] | None = None,
    ) -> list[str]:
        # One request per prompt, so ``seeds`` become per-request seeds (vLLM samples a seeded request from its own
        # generator, whatever else the server batches with it).
        per_prompt = check_seeds(seeds, len(prompts)) or [seed] * len(prompts)
        if not prompts:
            return []
        try:
            await self._resolve_model()
            texts = await gather_or_cancel(
                [self._chat_text(p, max_new_tokens, temperature, s) for p, s in zip(prompts, per_prompt, strict=True)]
            )
        except APIError as exc:
            raise self._error(exc) from None
        self.stats.prompts += len(prompts)
        return texts

    async def _chat_text(self, messages: Messages, max_new_tokens: int, temperature: float, seed: int | None) -> str:
        payload: dict[str, Any] = {
            "messages": messages, "max_tokens": max_new_tokens, "temperature": temperature,
            **_lead_in_flags(messages),
        }  # fmt: skip
        if seed is not None:
            payload["seed"] = seed
        if self.chat_template_kwargs:
            payload["chat_template_kwargs"] = self.chat_template_kwargs
        body = await self._post("/chat/completions", payload)
        choices = body.get("choices") or []
        if not choices:
            raise ReaderError(f"reader {self.name}: /v1/chat/completions answered no choices")
        return (choices[0].get("message") or {}).get("content") or ""


def _lead_in_flags(messages: Messages) -> dict[str, bool]:
    """A final assistant lead-in, continued: vLLM's chat-completion parameters for it (sent only then, so plain
    OpenAI-compatible servers never see them)."""
    flags = template_flags(messages)
    return flags if flags.get("continue_final_message") else {}


__all__ = ["OpenAIReader", "ReaderStats"]
