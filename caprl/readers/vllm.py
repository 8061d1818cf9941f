"""A reader running in-process on a vLLM engine (``vllm.LLM``): the fastest way to score on one GPU node.

Targets vLLM's offline API as of 0.32/0.33 (``vllm.LLM``, ``vllm.SamplingParams``):

* ``score_letters`` renders each prompt with the tokenizer's chat template into token ids and calls
  ``LLM.generate([{"prompt_token_ids": ids}, ...], SamplingParams(max_tokens=1, temperature=0,
  logprob_token_ids=[...]))``. ``logprob_token_ids`` (vLLM >= 0.32) returns the full-vocabulary
  log-probabilities of exactly the letters' token ids; ``logprobs`` must then be left unset (or equal to the
  number of ids). On older vLLM without that field, ``SamplingParams(logprobs=top_logprobs)`` gives the top-k
  and absent letters get a floor, as in ``caprl.readers.openai``. Either way one prefill per prompt, no decoding.
  A letter's probability is that of the bare letter token, as in the other readers.
* ``generate`` calls ``LLM.chat(conversations, SamplingParams(...))``, which applies the chat template itself.
* Prefix caching is on (``enable_prefix_caching=True``): the questions about one caption share the instruction
  and caption prefix, so keep them next to each other.

Importing this module never needs vLLM; constructing a ``VLLMReader`` without it raises ``ReaderError`` telling
how to install it (``pip install 'caprl[vllm]'``).

>>> reader = VLLMReader("Qwen/Qwen2.5-3B-Instruct", max_model_len=8192)    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
    letter_variant_ids,
    letters_from_id_logprobs,
    letters_from_topk,
)

INSTALL_HINT = "vLLM is not installed: pip install 'caprl[vllm]' (needs a CUDA GPU, or vLLM's CPU build)"


def import_vllm() -> Any:
    """The ``vllm`` module, or a ``ReaderError``-friendly ImportError naming the extra to install."""
    try:
        import vllm
    except ImportError as exc:
        raise ImportError(f"{INSTALL_HINT} ({exc})") from exc
    return vllm


class VLLMReader:
    """Reader protocol on an in-process ``vllm.LLM``.

    ``model``: path or hub id. ``llm``: an existing ``vllm.LLM`` to share (then ``model`` and the engine options are
    ignored). ``engine_kwargs`` go to ``vllm.LLM`` (``max_model_len``, ``gpu_memory_utilization``, ``dtype``, ...).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        llm: Any = None,
        tokenizer: str | None = None,
        top_logprobs: int = 20,
        chat_template_kwargs: dict[str, Any] | None = None,
        spaced_letters: bool = False,
        enable_prefix_caching: bool = True,
        **engine_kwargs: Any,
    ):
        try:
            vllm = import_vllm()
        except ImportError as exc:
            raise ReaderError(str(exc)) from None
        if llm is None:
            if model is None:
                raise ReaderError("VLLMReader needs a model (path or hub id) or an existing vllm.LLM")
            llm = vllm.LLM(
                model=model, tokenizer=tokenizer, enable_prefix_caching=enable_prefix_caching, **engine_kwargs
            )
        self._vllm = vllm
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.name = f"vllm:{model or 'shared-llm'}"
        self.top_logprobs = top_logprobs
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.spaced_letters = spaced_letters
        self.floored_letters = 0
        self._variants: dict[str, list[int]] = {}
        self._has_token_ids = _supports_logprob_token_ids(vllm.SamplingParams)

    # ----- protocol -----

    def score_letters(self, queries: Sequence[LetterQuery]) -> list[LetterScores]:
        queries = list(queries)
        if not queries:
            return []
        check_queries(queries)
        letters = "".join(dict.fromkeys("".join(q.letters for q in queries)))
        variants = self._letter_variants(letters)
        prompts = [{"prompt_token_ids": self._render(q.messages)} for q in queries]
        wanted = sorted({i for ids in variants.values() for i in ids})
        if self._has_token_ids and len(wanted) <= MAX_LOGPROB_TOKEN_IDS:
            params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, logprob_token_ids=wanted)
        else:
            params = self._vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=self.top_logprobs)
        outputs = self.llm.generate(prompts, params, use_tqdm=False)
        results = []
        for q, out in zip(queries, outputs, strict=True):
            step = out.outputs[0].logprobs[0]  # dict[token id, Logprob] for the one generated position
            by_id = {int(tid): float(lp.logprob) for tid, lp in step.items()}
            if all(i in by_id for letter in q.letters for i in variants[letter]):
                lps = letters_from_id_logprobs(q.letters, variants, by_id)
            else:
                lps, floored = letters_from_topk(q.letters, list(by_id.items()), variants, spaced=self.spaced_letters)
                self.floored_letters += floored
            results.append(letter_scores_from_logprobs(q.letters, lps))
        return results

    def generate(
        self,
        prompts: Sequence[Messages],
        *,
        max_new_tokens: int = 10,
        temperature: float = 0.0,
        seed: int | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[str]:
        prompts = list(prompts)
        per_prompt = check_seeds(seeds, len(prompts))
        if not prompts:
            return []
        sampling = self._vllm.SamplingParams
        # vLLM seeds each request on its own: one seed per prompt makes its sample independent of the batch.
        params: Any = (
            sampling(max_tokens=max_new_tokens, temperature=temperature, seed=seed)
            if per_prompt is None
            else [sampling(max_tokens=max_new_tokens, temperature=temperature, seed=s) for s in per_prompt]
        )
        # Rendered here rather than by llm.chat, whose lead-in flag is one for the whole call.
        outputs = self.llm.generate([{"prompt_token_ids": self._render(p)} for p in prompts], params, use_tqdm=False)
        return [out.outputs[0].text for out in outputs]

    # ----- helpers -----

    def _render(self, messages: Messages) -> list[int]:
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, **template_flags(messages), **self.chat_template_kwargs
        )
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _letter_variants(self, letters: str) -> dict[str, list[int]]:
        todo = "".join(letter for letter in letters if letter not in self._variants)
        if todo:
            encode = lambda text: list(self.tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
            self._variants.update(letter_variant_ids(encode, todo, spaced=self.spaced_letters))
        return {letter: self._variants[letter] for letter in letters}


def _supports_logprob_token_ids(sampling_params_cls: Any) -> bool:
    """Whether this vLLM's ``SamplingParams`` has ``logprob_token_ids`` (added in the 0.3x series)."""
    try:
        sampling_params_cls(max_tokens=1, logprob_token_ids=[0])
    except TypeError:
        return False
    return True
