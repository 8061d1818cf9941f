"""The transformers reader: any causal LM from the Hub or a local directory, on CPU or GPU.

``score_letters`` reads the answer distribution over the option letters from one forward pass per prompt: the
log-softmax over the full vocabulary at the position right after the chat template's generation prompt, taken at
the letters' token ids. The vocabulary projection (``lm_head``) runs only at those answer positions.

Prefix sharing. The queries of a call are put in a prefix tree and laid out in packed rows under a tree-shaped
attention mask, so each token run that several prompts share is computed once (``caprl.readers.prefix_tree``
says how). Rows are batched longest first under a token budget; results equal the one-prompt-at-a-time path to float
precision. Custom masks need sdpa or eager attention and no sliding-window layers; for other models (and with
``share_prefix=False``) every query takes the plain path (right-padded, one prompt per row).
``benchmarks/reward_throughput.py`` measures the gain.

>>> reader = TransformersReader("Qwen/Qwen2.5-3B-Instruct")                          # doctest: +SKIP
>>> reader.score_letters([LetterQuery(build_messages(caption, mcq), mcq.letters)])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import math
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from caprl.readers.base import (
    LetterQuery,
    LetterScores,
    Messages,
    ReaderError,
    check_seeds,
    letter_scores_from_logprobs,
    template_flags,
)
from caprl.readers.prefix_tree import (
    Node,
    PackedRow,
    build_prefix_tree,
    common_prefix,
    cut_prefix,
    merge_rows,
    pack_tree,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen2.5-3B-Instruct"
ALPHABET = string.ascii_uppercase


# ------------------------------------------------------------------------------------------------- helpers


def resolve_letter_ids(tokenizer: Any) -> list[int]:
    """Token ids of the bare letters ``A``..``Z`` (an answer's first token); refuses multi-token letters."""
    ids: list[int] = []
    bad: list[str] = []
    for letter in ALPHABET:
        enc = tokenizer.encode(letter, add_special_tokens=False)
        if len(enc) != 1:
            bad.append(f"{letter!r} -> {len(enc)} tokens")
        else:
            ids.append(enc[0])
    if bad:
        raise ReaderError(
            "the reader's tokenizer does not encode every option letter as a single token, so letter scores "
            f"cannot be read from one forward pass: {', '.join(bad)}. Use a reader whose letters A-Z are single "
            "tokens, or the generate path."
        )
    if len(set(ids)) != len(ids):
        raise ReaderError(f"the reader's tokenizer maps different letters to the same token id: {ids}")
    return ids


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def _resolve_precision(dtype: Any, device: str) -> tuple[Any, bool]:
    """The dtype to load the weights in, and whether to convert the linear layers to int8 afterwards."""
    if dtype is None:
        if device != "cpu":
            return "auto", False
        from caprl.readers.cpu import cpu_precision

        dtype = cpu_precision()
    if dtype == "int8":
        if device != "cpu":
            raise ValueError(f"dtype 'int8' is a CPU path; on {device} use the checkpoint's dtype ('auto')")
        return torch.float32, True
    return _resolve_dtype(dtype), False


def _resolve_dtype(dtype: Any) -> Any:
    if isinstance(dtype, str) and dtype != "auto":
        value = getattr(torch, dtype, None)
        if not isinstance(value, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}")
        return value
    return dtype


def _has_sliding_layers(config: Any) -> bool:
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    layer_types = getattr(cfg, "layer_types", None)
    if layer_types:
        return any("sliding" in str(t) or "chunk" in str(t) for t in layer_types)
    return getattr(cfg, "sliding_window", None) is not None or getattr(cfg, "attention_chunk_size", None) is not None


def _batches(items: Sequence[Any], width: Any, budget: int) -> list[list[Any]]:
    """Split ``items`` (longest first) into batches with rows x longest row <= ``budget``; a lone oversized item
    runs alone."""
    batches: list[list[Any]] = []
    current: list[Any] = []
    w = 0
    for item in items:
        w2 = max(w, width(item))
        if current and w2 * (len(current) + 1) > budget:
            batches.append(current)
            current, w2 = [], width(item)
        current.append(item)
        w = w2
    if current:
        batches.append(current)
    return batches


# ------------------------------------------------------------------------------------------------- reader


class TransformersReader:
    """A :class:`caprl.readers.base.Reader` backed by a transformers causal LM.

    ``row_tokens`` is the length a packed row aims at (longer rows cost more masked attention, shorter ones more
    repeated shared prefixes); ``batch_tokens`` bounds the padded tokens of one forward (rows x longest row), and
    a row longer than that still runs, alone. ``share_prefix=False`` sends every query through the plain path.
    A prefix of at least ``cache_prefix_tokens`` tokens that every query of a call shares (the template and
    instruction) is computed once and its keys and values kept for later calls (0: never).
    ``dtype=None`` picks bfloat16 on CPUs with bfloat16 matrix units and int8 linear layers on the others (see
    :mod:`caprl.readers.cpu`), the checkpoint's own dtype on accelerators; ``dtype="int8"`` asks for the int8
    path (CPU only: W8A8 decoder linears, float32 elsewhere, :mod:`caprl.readers.int8`).
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        device: str | torch.device | None = None,
        dtype: Any = None,
        trust_remote_code: bool = False,
        **options: Any,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dev = str(device) if device is not None else _default_device()
        load_dtype, int8 = _resolve_precision(dtype, torch.device(dev).type)
        tokenizer = AutoTokenizer.from_pretrained(str(model), trust_remote_code=trust_remote_code)
        lm = AutoModelForCausalLM.from_pretrained(str(model), dtype=load_dtype, trust_remote_code=trust_remote_code)
        lm = lm.to(dev)
        if int8:
            from caprl.readers.int8 import quantize_linear_int8

            quantize_linear_int8(lm)
        self.precision = "int8" if int8 else str(lm.dtype).removeprefix("torch.")
        self._setup(lm, tokenizer, name=f"transformers:{model}", **options)

    @classmethod
    def from_model(cls, model: Any, tokenizer: Any, *, name: str | None = None, **options: Any) -> TransformersReader:
        """Wrap an already loaded model and tokenizer (the model stays on its device and dtype)."""
        self = cls.__new__(cls)
        self.precision = str(getattr(model, "dtype", "")).removeprefix("torch.")
        name = name or f"transformers:{getattr(model.config, '_name_or_path', '') or type(model).__name__}"
        self._setup(model, tokenizer, name=name, **options)
        return self

    def _setup(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        batch_tokens: int = 8192,
        row_tokens: int = 1024,
        min_shared_prefix: int = 1,
        share_prefix: bool = True,
        cache_prefix_tokens: int = 16,
    ) -> None:
        for key, value in (("batch_tokens", batch_tokens), ("row_tokens", row_tokens)):
            if value < 1:
                raise ValueError(f"{key} must be positive, got {value}")
        if min_shared_prefix < 1:
            raise ValueError(f"min_shared_prefix must be at least 1, got {min_shared_prefix}")
        if getattr(tokenizer, "chat_template", None) is None:
            raise ReaderError(f"{name}: the tokenizer has no chat template; prompts are rendered only through one")
        self.name = name
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_tokens = batch_tokens
        self.row_tokens = row_tokens
        self.min_shared_prefix = min_shared_prefix
        self.share_prefix = share_prefix
        self.cache_prefix_tokens = cache_prefix_tokens
        self._prefix: tuple[tuple[int, ...], list[Any]] | None = None
        self.letter_ids = resolve_letter_ids(tokenizer)
        self.device = next(model.parameters()).device
        attn = getattr(model.config, "_attn_implementation", None) or "eager"
        self._mask_kind = attn if attn in ("sdpa", "eager") else None
        self.can_share_prefix = self._mask_kind is not None and not _has_sliding_layers(model.config)
        if share_prefix and not self.can_share_prefix:
            log.warning(
                "%s: prefix sharing needs sdpa or eager attention and no sliding-window layers (attention %r); "
                "every query takes the plain path",
                name,
                attn,
            )
        forward_params = inspect.signature(model.forward).parameters
        self._keeps_logits = "logits_to_keep" in forward_params
        # transformers renamed ``past_key_values`` to ``cache`` (5.2x); either works for the prefix cache.
        self._cache_kwarg = "cache" if "cache" in forward_params else "past_key_values"
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0

    def __repr__(self) -> str:
        return (
            f"TransformersReader({self.name!r}, device={self.device}, precision={self.precision}, "
            f"share_prefix={self.share_prefix})"
        )

    # ----------------------------------------------------------------------------------------------- encoding

    def encode(self, prompts: Sequence[Messages]) -> list[list[int]]:
        """Token ids of each prompt rendered by the chat template (``template_flags``: the generation prompt opened,
        or a final assistant lead-in left open)."""
        if not prompts:
            return []
        texts = [self.tokenizer.apply_chat_template(list(m), tokenize=False, **template_flags(m)) for m in prompts]
        return [list(ids) for ids in self.tokenizer(texts, add_special_tokens=False)["input_ids"]]

    # ------------------------------------------------------------------------------------------ letter scores

    @torch.inference_mode()
    def score_letters(self, queries: Sequence[LetterQuery]) -> list[LetterScores]:
        for q in queries:
            if not q.letters or len(set(q.letters)) != len(q.letters) or not set(q.letters) <= set(ALPHABET):
                raise ValueError(f"letters must be distinct capitals A-Z, got {q.letters!r}")
        token_ids = self.encode([q.messages for q in queries])
        logprobs = self.letter_logprobs(token_ids)
        return [
            letter_scores_from_logprobs(q.letters, logprobs[i, [ALPHABET.index(c) for c in q.letters]])
            for i, q in enumerate(queries)
        ]

    @torch.inference_mode()
    def letter_logprobs(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """``(n, 26)`` log-probabilities (full-vocabulary log-softmax) of ``A``..``Z`` as the next token."""
        for i, ids in enumerate(token_ids):
            if not ids:
                raise ReaderError(f"query {i} renders to no tokens")
        out = np.zeros((len(token_ids), len(ALPHABET)), dtype=np.float64)
        packed = self.share_prefix and self.can_share_prefix
        prefix = self._cached_prefix(token_ids) if packed else None
        rows = self.plan(token_ids, prefix_tokens=len(prefix[0]) if prefix else 0)
        if packed:  # plain rows have no mask of their own to keep merged prompts apart
            rows = merge_rows(rows, max([self.row_tokens, *map(len, rows)]))
        rows = sorted(rows, key=len, reverse=True)
        for batch in _batches(rows, len, self.batch_tokens):
            self._forward(batch, out, packed, prefix[1] if prefix else None)
        return out

    def _cached_prefix(self, token_ids: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], list[Any]] | None:
        """The tokens every query of this call starts with, and their keys and values, computed once and kept
        across calls: the chat template and instruction are the same in every reward call, and each packed row
        would otherwise compute them again. The kept prefix shrinks to the part successive calls share (the
        first call's common prefix may run into its captions' shared first words)."""
        if self.cache_prefix_tokens < 1 or len(token_ids) < 1:
            return None
        first, last = min(token_ids), max(token_ids)  # the common prefix of all is that of these two
        common = min(common_prefix(first, last), min(map(len, token_ids)) - 1)  # every query keeps a token
        kept = self._prefix
        if kept is not None and len(kept[0]) <= common and tuple(first[: len(kept[0])]) == kept[0]:
            return kept
        n = common_prefix(kept[0], first[:common]) if kept is not None else 0
        if n < self.cache_prefix_tokens:
            n = common
        if n < self.cache_prefix_tokens:
            return None
        tokens = tuple(first[:n])
        out = self.model(input_ids=torch.tensor([tokens], device=self.device), use_cache=True, logits_to_keep=1)
        cache = out.cache if self._cache_kwarg == "cache" else out.past_key_values
        self._prefix = (tokens, [(layer.keys, layer.values) for layer in cache.layers])
        return self._prefix

    def plan(self, token_ids: Sequence[Sequence[int]], prefix_tokens: int = 0) -> list[PackedRow]:
        """The rows ``letter_logprobs`` computes: the prompts' prefix tree packed into rows of about
        ``row_tokens`` tokens, or (without sharing) one row per prompt. For inspection and FLOP counts.
        ``prefix_tokens``: that many leading tokens, shared by every query, are left out (their keys and values
        come from the prefix cache)."""
        if not (self.share_prefix and self.can_share_prefix):
            rows = []
            for i, ids in enumerate(token_ids):
                row = PackedRow()
                leaf = Node(list(ids), 0, None)
                leaf.ends.append((i, len(ids) - 1))
                row.add(leaf)
                rows.append(row)
            return rows
        root = build_prefix_tree(token_ids, range(len(token_ids)), self.min_shared_prefix)
        if prefix_tokens:
            root = cut_prefix(root, prefix_tokens)
        return pack_tree(root, self.row_tokens)

    def _forward(
        self, batch: list[PackedRow], out: np.ndarray, packed: bool, prefix_kv: list[Any] | None = None
    ) -> None:
        n_rows, width = len(batch), max(len(row) for row in batch)
        ids = torch.full((n_rows, width), self.pad_id, dtype=torch.long)
        keep = torch.zeros((n_rows, width), dtype=torch.bool)
        answers: list[list[int]] = []  # the queries of each kept position, in the logits' (row, position) order
        for r, row in enumerate(batch):
            ids[r, : len(row)] = torch.tensor(row.ids)
            by_position: dict[int, list[int]] = {}
            for position, q in row.keep:
                by_position.setdefault(position, []).append(q)
            for position in sorted(by_position):
                keep[r, position] = True
                answers.append(by_position[position])
        kwargs: dict[str, Any] = {"use_cache": False}
        if packed:
            kwargs.update(self._packed_inputs(batch, width, prefix_kv[0][0].shape[-2] if prefix_kv else 0))
        if prefix_kv:
            from transformers import DynamicCache

            expand = lambda t: t.expand(n_rows, *t.shape[1:])  # noqa: E731 (a view: the cache concatenates anew)
            kwargs[self._cache_kwarg] = DynamicCache(ddp_cache_data=[(expand(k), expand(v)) for k, v in prefix_kv])
            kwargs["use_cache"] = True
        if not packed and any(len(row) != width for row in batch):
            # Plain rows: right padding, positions 0.., the model's own causal + padding mask.
            mask = torch.zeros((n_rows, width), dtype=torch.long)
            for r, row in enumerate(batch):
                mask[r, : len(row)] = 1
            kwargs["attention_mask"] = mask.to(self.device)
        ids, keep = ids.to(self.device), keep.to(self.device)
        if self._keeps_logits:
            logits = self.model(input_ids=ids, logits_to_keep=keep, **kwargs).logits
        else:
            logits = self.model(input_ids=ids, **kwargs).logits[keep]
        if answers:
            lp = logits.float().log_softmax(dim=-1)[:, self.letter_ids].double().cpu().numpy()
            for values, queries in zip(lp, answers, strict=True):
                out[queries] = values

    def _packed_inputs(self, batch: list[PackedRow], width: int, prefix: int = 0) -> dict[str, Any]:
        """Position ids and the 4D tree mask of packed rows (right-padded), after ``prefix`` cached tokens that
        every token sees."""
        n_rows = len(batch)
        pos = torch.zeros((n_rows, width), dtype=torch.long)
        full = torch.ones((n_rows, width, prefix + width), dtype=torch.bool)
        mask = full[:, :, prefix:]
        mask.zero_()
        causal = torch.ones((width, width), dtype=torch.bool).tril()
        for r, row in enumerate(batch):
            n = len(row)
            pos[r, :n] = torch.tensor(row.pos)
            seg = torch.tensor(row.seg)
            vis = torch.from_numpy(row.visibility())
            mask[r, :n, :n] = vis[seg[:, None], seg[None, :]] & causal[:n, :n]
            # Padding sees only itself (an all-masked row would give NaNs); nothing real sees padding.
            mask[r, n:, n:] = torch.eye(width - n, dtype=torch.bool)
        mask = full[:, None]
        if self._mask_kind == "eager":
            dtype = self.model.dtype
            mask = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)
        return {"attention_mask": mask.to(self.device), "position_ids": pos.to(self.device)}

    # --------------------------------------------------------------------------------------------- generate

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[Messages],
        *,
        max_new_tokens: int = 10,
        temperature: float = 0.0,
        seed: int | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[str]:
        """Free-text answers (new text only, special tokens skipped): greedy at temperature 0, else sampled with
        plain temperature (no top-k/top-p). Batched with left padding.

        ``seeds`` (one per prompt): each prompt samples from its own generator (:class:`_RowSampler`), so its text
        depends only on the prompt and its seed, not on the batch. ``seed`` alone: one generator for the whole
        call, reproducible for the same call but not per prompt."""
        from transformers import GenerationConfig, LogitsProcessorList

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        row_seeds = check_seeds(seeds, len(prompts))
        token_ids = self.encode(prompts)
        gen = self.model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tokenizer.eos_token_id
        sampling = temperature > 0
        per_row = sampling and row_seeds is not None
        # Per-row sampling runs as greedy decoding over scores the row sampler has reduced to its drawn token.
        do_sample = sampling and not per_row
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=do_sample,
            temperature=temperature if do_sample else None,
            # Unset fields would be filled from the checkpoint's generation_config (Qwen: top-k 20, top-p 0.8,
            # repetition penalty 1.05); a reader samples from its plain distribution.
            top_k=0 if do_sample else None,
            top_p=1.0 if do_sample else None,
            repetition_penalty=1.0,
            eos_token_id=eos,
            pad_token_id=self.pad_id,
            bos_token_id=gen.bos_token_id,
        )
        results: list[str] = [""] * len(token_ids)
        order = sorted(range(len(token_ids)), key=lambda i: -len(token_ids[i]))
        seeded = seed is not None and do_sample
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices) if seeded else contextlib.nullcontext():
            if seeded:
                torch.manual_seed(seed)
            length = lambda i: len(token_ids[i]) + max_new_tokens  # noqa: E731
            for batch in _batches(order, length, self.batch_tokens):
                width = len(token_ids[batch[0]])
                ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for r, i in enumerate(batch):
                    n = len(token_ids[i])
                    ids[r, width - n :] = torch.tensor(token_ids[i])
                    mask[r, width - n :] = 1
                extra: dict[str, Any] = {}
                if per_row:
                    assert row_seeds is not None
                    sampler = _RowSampler([row_seeds[i] for i in batch], temperature)
                    extra["logits_processor"] = LogitsProcessorList([sampler])
                new = self.model.generate(
                    input_ids=ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    generation_config=config,
                    **extra,
                )[:, width:]
                for i, text in zip(batch, self.tokenizer.batch_decode(new, skip_special_tokens=True), strict=True):
                    results[i] = text
        return results


class _RowSampler:
    """A logits processor that samples each row's next token from the row's own ``torch.Generator`` (seeded per
    prompt) and leaves only that token possible, for greedy decoding to take.

    One uniform draw per row and step, on the CPU (the same numbers on every device), mapped through the row's
    cumulative distribution at ``temperature``: a row's tokens depend only on its own logits and seed,
    never on which rows share its batch (``transformers``' sampler draws every row from one generator). The logits of
    a prompt alone and in a padded batch agree to float precision, so only a draw within that distance of a
    boundary between two tokens could differ."""

    def __init__(self, seeds: Sequence[int], temperature: float) -> None:
        # manual_seed takes 64 bits; any Python int maps onto them.
        self.generators = [torch.Generator().manual_seed(s % 2**64) for s in seeds]
        self.temperature = temperature

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        probs = (scores.float() / self.temperature).softmax(dim=-1)
        cdf = probs.cumsum(dim=-1, dtype=torch.float64)  # float64: no drift over a 150k-token vocabulary
        u = torch.cat([torch.rand(1, generator=g, dtype=torch.float64) for g in self.generators]).to(scores.device)
        # The first token whose cumulative probability exceeds u (scaled by the total, which rounding may move).
        tokens = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True).clamp_(max=scores.shape[-1] - 1)
        # Only a token of positive probability can exceed u's point, unless rounding put that point at the total
        # (none exceeds it, and the clamp gave the last token): then the likeliest token, never a zero one.
        zero = probs.gather(-1, tokens) == 0
        if zero.any():
            tokens = torch.where(zero, probs.argmax(dim=-1, keepdim=True), tokens)
        out = torch.full_like(scores, -math.inf)
        return out.scatter_(-1, tokens, 0.0)
