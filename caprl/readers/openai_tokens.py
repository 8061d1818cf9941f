"""Token ids for a reader behind an OpenAI-compatible server: prompts rendered with the served model's chat
template and the option letters' ids, from a local tokenizer (``tokenizer=``) or, without one, from the server's
``/tokenize`` endpoint (vLLM). ``caprl.readers.openai`` sends them to ``/v1/completions``."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

from caprl.http import APIError, gather_or_cancel
from caprl.readers.base import Messages, template_flags
from caprl.readers.letter_logprobs import letter_variant_ids

Post = Callable[..., Awaitable[Any]]
"""``post(path, payload, root=True)``: the reader's request (it counts requests and names the model)."""


class PromptTokens:
    """Renders prompts and letters to the served model's token ids, locally or with the server's ``/tokenize``.

    ``tokenizer``: a path/hub id or a loaded tokenizer of the served model, or None (ask the server).
    """

    def __init__(
        self,
        post: Post,
        tokenizer: Any = None,
        *,
        chat_template_kwargs: dict[str, Any] | None = None,
        spaced_letters: bool = False,
    ):
        if isinstance(tokenizer, str | os.PathLike):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        self.tokenizer: Any = tokenizer
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.spaced_letters = spaced_letters
        self._post = post
        self._server_tokenize: bool | None = None  # None: not probed yet
        self._variant_cache: dict[str, list[int]] = {}

    async def available(self) -> bool:
        """Whether token ids are to be had: a local tokenizer, or a server that answers ``/tokenize``."""
        return self.tokenizer is not None or await self._has_server_tokenize()

    async def _has_server_tokenize(self) -> bool:
        if self._server_tokenize is None:
            try:
                await self._post("/tokenize", {"prompt": "A", "add_special_tokens": False}, root=True)
                self._server_tokenize = True
            except APIError as exc:
                if exc.status is None or exc.status >= 500:
                    raise
                self._server_tokenize = False  # 404/405/422...: no such endpoint here
        return self._server_tokenize

    async def encode(self, text: str) -> list[int]:
        if self.tokenizer is not None:
            return list(self.tokenizer.encode(text, add_special_tokens=False))
        body = await self._post("/tokenize", {"prompt": text, "add_special_tokens": False}, root=True)
        return list(body["tokens"])

    async def render(self, messages: Messages) -> list[int]:
        """The chat-templated prompt (generation prompt opened, or the final lead-in left open) as token ids."""
        if self.tokenizer is not None:
            text = self.tokenizer.apply_chat_template(
                messages, tokenize=False, **template_flags(messages), **self.chat_template_kwargs
            )
            # The template already holds every special token it wants; add none on top.
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        payload: dict[str, Any] = {"messages": messages, **template_flags(messages), "add_special_tokens": False}
        if self.chat_template_kwargs:
            payload["chat_template_kwargs"] = self.chat_template_kwargs
        body = await self._post("/tokenize", payload, root=True)
        return list(body["tokens"])

    async def variants(self, letters: str) -> dict[str, list[int]]:
        """Each letter's token ids (``"A"``, and ``" A"`` with ``spaced_letters``), encoded once per letter."""
        todo = [letter for letter in dict.fromkeys(letters) if letter not in self._variant_cache]
        if todo:
            texts = [t for letter in todo for t in ((letter, " " + letter) if self.spaced_letters else (letter,))]
            encoded = dict(zip(texts, await gather_or_cancel([self.encode(t) for t in texts]), strict=True))
            self._variant_cache.update(
                letter_variant_ids(encoded.__getitem__, "".join(todo), spaced=self.spaced_letters)
            )
        return {letter: self._variant_cache[letter] for letter in letters}
