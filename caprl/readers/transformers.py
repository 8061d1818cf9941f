"""The transformers reader: any causal LM from the Hub or a local directory, on CPU or GPU.

``score_letters`` reads the answer distribution over the option letters from one forward pass per prompt: the
log-softmax over the full vocabulary at the position right after the chat template's generation prompt, taken at
the letters' token ids. The vocabulary projection (``lm_head``) runs only at those answer positions.

Prefix sharing. The prompts about one caption share a long token prefix (chat template, instruction, few-shot
turns, caption), and often all prompts of a call share the part before the caption. The queries of a call are put
in a prefix tree (radix tree over token ids; every run of at least ``min_shared_prefix`` tokens that several
queries share is one node) and the tree is computed once, level by level:

- a node whose children are all leaves (a caption and its questions) is one *packed row*: the node's tokens, then
  each child's remaining tokens, with a custom attention mask (a child's tokens see the node's tokens and the
  earlier tokens of the same child, never another child) and position ids that restart where the node ends;
- a node with deeper children (the instruction shared by all captions) is computed once and its KV becomes the
  context of its children's rows in the next level (batched, right-padded context, masked);
- queries sharing nothing with others are rows of their own: plain right-padded batches, read at their last token.

Rows are batched longest first under a token budget; results equal the one-prompt-at-a-time path to float
precision. Custom masks need sdpa or eager attention and no sliding-window layers; for other models (and with
``share_prefix=False``) every query takes the plain path. ``benchmarks/reward_throughput.py`` measures the gain.

>>> reader = TransformersReader("Qwen/Qwen2.5-3B-Instruct")                          # doctest: +SKIP
>>> reader.score_letters([LetterQuery(build_messages(caption, mcq), mcq.letters)])  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import inspect
import logging
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
    letter_scores_from_logprobs,
    template_flags,
)

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen2.5-3B-Instruct"
ALPHABET = string.ascii_uppercase
# One wave (one prefix tree, whose shared KV is kept until its level below is done) holds at most this many
# batch_tokens' worth of distinct tokens.
_WAVE_FACTOR = 8
# A batch's rows x (context + row length) may reach this many batch_tokens (context KV copied in, attention).
_CONTEXT_FACTOR = 4


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


# ------------------------------------------------------------------------------------------------ prefix tree


class Node:
    """A run of tokens in the prefix tree: ``tokens`` sit at positions ``start``.. and follow the parent's."""

    __slots__ = ("tokens", "start", "parent", "children", "ends", "kv")

    def __init__(self, tokens: list[int], start: int, parent: Node | None) -> None:
        self.tokens = tokens
        self.start = start
        self.parent = parent
        self.children: list[Node] = []
        self.ends: list[tuple[int, int]] = []  # (query, offset in ``tokens`` of the query's last token)
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer: KV of positions 0..end

    @property
    def packs_children(self) -> bool:
        """All children are leaves, computed in this node's row (never for the root: they share nothing)."""
        return self.parent is not None and bool(self.children) and not any(c.children for c in self.children)


def build_prefix_tree(token_ids: Sequence[Sequence[int]], indices: Sequence[int], min_shared: int) -> Node:
    """The compressed prefix tree of the queries ``indices`` (an empty root). A run of tokens that two or more
    queries share is one node; runs shorter than ``min_shared`` are pushed down into their children instead."""
    root = Node([], 0, None)
    # Sorted sequences: the queries below any node are contiguous, and a run's common prefix is that of its first
    # and last member. Iterative, so that deep trees do not hit the recursion limit.
    stack: list[tuple[Node, list[int], int]] = [(root, sorted(indices, key=lambda i: token_ids[i]), 0)]
    while stack:
        node, members, depth = stack.pop()
        rest = []
        for i in members:
            if len(token_ids[i]) == depth:  # the query ends with this node (a duplicate, or a prefix of another)
                node.ends.append((i, len(node.tokens) - 1))
            else:
                rest.append(i)
        run: list[int] = []
        for k, i in enumerate(rest):
            run.append(i)
            if k + 1 < len(rest) and token_ids[rest[k + 1]][depth] == token_ids[i][depth]:
                continue
            first, last = token_ids[run[0]], token_ids[run[-1]]
            shared = _common_prefix(first[depth:], last[depth:]) if len(run) > 1 else len(first) - depth
            child = Node(list(first[depth : depth + shared]), depth, node)
            node.children.append(child)
            stack.append((child, run, depth + shared))
            run = []

    todo = [root]
    while todo:
        node = todo.pop()
        pending = list(reversed(node.children))
        kept: list[Node] = []
        while pending:
            child = pending.pop()
            if child.children and not child.ends and len(child.tokens) < min_shared:
                for grandchild in reversed(child.children):
                    grandchild.tokens = child.tokens + grandchild.tokens
                    grandchild.start = child.start
                    grandchild.ends = [(q, off + len(child.tokens)) for q, off in grandchild.ends]
                    grandchild.parent = node
                    pending.append(grandchild)
            else:
                kept.append(child)
        node.children = kept
        todo.extend(kept)
    return root


def flat_tree(token_ids: Sequence[Sequence[int]], indices: Sequence[int]) -> Node:
    """No sharing: every query a leaf of the root, computed alone (plain right-padded batches)."""
    root = Node([], 0, None)
    for i in indices:
        leaf = Node(list(token_ids[i]), 0, root)
        leaf.ends.append((i, len(token_ids[i]) - 1))
        root.children.append(leaf)
    return root


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


def _resolve_dtype(dtype: Any, device: str) -> Any:
    if dtype is None:
        # fp32 on CPU (bf16 matmuls are slow on most CPUs); the checkpoint's own dtype on accelerators.
        return torch.float32 if device == "cpu" else "auto"
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


def _batches(items: Sequence[Any], width: Any, context: Any, budget: int) -> list[list[Any]]:
    """Split ``items`` (longest first) into batches with rows x longest row <= ``budget`` and
    rows x (longest context + longest row) <= ``_CONTEXT_FACTOR * budget``; a lone oversized item runs alone."""
    batches: list[list[Any]] = []
    current: list[Any] = []
    w = c = 0
    for item in items:
        w2, c2 = max(w, width(item)), max(c, context(item))
        rows = len(current) + 1
        if current and (w2 * rows > budget or (w2 + c2) * rows > _CONTEXT_FACTOR * budget):
            batches.append(current)
            current, w2, c2 = [], width(item), context(item)
        current.append(item)
        w, c = w2, c2
    if current:
        batches.append(current)
    return batches


class _Row:
    """One row of a forward: a node's tokens, then (when it packs them) its leaf children's tokens."""

    __slots__ = ("node", "ids", "pos", "seg", "keep")

    def __init__(self, node: Node) -> None:
        self.node = node
        self.ids = list(node.tokens)
        self.pos = list(range(node.start, node.start + len(node.tokens)))
        self.seg = [-1] * len(node.tokens)  # -1: the node's own tokens; k: leaf child k
        self.keep = [(offset, q) for q, offset in node.ends]  # (position in row, query)
        if node.packs_children:
            for k, leaf in enumerate(node.children):
                at = len(self.ids)
                self.ids += leaf.tokens
                self.pos += range(leaf.start, leaf.start + len(leaf.tokens))
                self.seg += [k] * len(leaf.tokens)
                self.keep += [(at + offset, q) for q, offset in leaf.ends]

    @property
    def packed(self) -> bool:
        return self.node.packs_children


# ------------------------------------------------------------------------------------------------- reader


class TransformersReader:
    """A :class:`caprl.readers.base.Reader` backed by a transformers causal LM.

    ``batch_tokens`` bounds the padded tokens of one forward (rows x longest row); one prompt or packed row
    longer than that still runs, alone. ``share_prefix=False`` sends every query through the plain path.
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_MODEL,
        *,
        device: str | torch.device | None = None,
        dtype: Any = None,
        batch_tokens: int = 8192,
        min_shared_prefix: int = 16,
        share_prefix: bool = True,
        trust_remote_code: bool = False,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        dev = str(device) if device is not None else _default_device()
        tokenizer = AutoTokenizer.from_pretrained(str(model), trust_remote_code=trust_remote_code)
        lm = AutoModelForCausalLM.from_pretrained(
            str(model), dtype=_resolve_dtype(dtype, dev), trust_remote_code=trust_remote_code
        )
        self._setup(
            lm.to(dev),
            tokenizer,
            name=f"transformers:{model}",
            batch_tokens=batch_tokens,
            min_shared_prefix=min_shared_prefix,
            share_prefix=share_prefix,
        )

    @classmethod
    def from_model(
        cls,
        model: Any,
        tokenizer: Any,
        *,
        name: str | None = None,
        batch_tokens: int = 8192,
        min_shared_prefix: int = 16,
        share_prefix: bool = True,
    ) -> TransformersReader:
        """Wrap an already loaded model and tokenizer (the model stays on its device and dtype)."""
        self = cls.__new__(cls)
        self._setup(
            model,
            tokenizer,
            name=name or f"transformers:{getattr(model.config, '_name_or_path', '') or type(model).__name__}",
            batch_tokens=batch_tokens,
            min_shared_prefix=min_shared_prefix,
            share_prefix=share_prefix,
        )
        return self

    def _setup(
        self, model: Any, tokenizer: Any, *, name: str, batch_tokens: int, min_shared_prefix: int, share_prefix: bool
    ) -> None:
        if batch_tokens < 1:
            raise ValueError(f"batch_tokens must be positive, got {batch_tokens}")
        if min_shared_prefix < 1:
            raise ValueError(f"min_shared_prefix must be at least 1, got {min_shared_prefix}")
        if getattr(tokenizer, "chat_template", None) is None:
            raise ReaderError(f"{name}: the tokenizer has no chat template; prompts are rendered only through one")
        self.name = name
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_tokens = batch_tokens
        self.min_shared_prefix = min_shared_prefix
        self.share_prefix = share_prefix
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
        self._keeps_logits = "logits_to_keep" in inspect.signature(model.forward).parameters
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = int(pad) if pad is not None else 0

    def __repr__(self) -> str:
        return f"TransformersReader({self.name!r}, device={self.device}, share_prefix={self.share_prefix})"

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
        for root in self.plan(token_ids):
            self._evaluate(root, out)
        return out

    def plan(self, token_ids: Sequence[Sequence[int]]) -> list[Node]:
        """The prefix trees (one per wave) that ``letter_logprobs`` computes, for inspection and FLOP counts."""
        share = self.share_prefix and self.can_share_prefix
        return [
            build_prefix_tree(token_ids, wave, self.min_shared_prefix) if share else flat_tree(token_ids, wave)
            for wave in self._waves(token_ids, share)
        ]

    def _waves(self, token_ids: Sequence[Sequence[int]], share: bool) -> list[list[int]]:
        """Queries in tree order, cut where the distinct tokens (what one tree computes and keeps) pass a budget."""
        n = len(token_ids)
        order = sorted(range(n), key=lambda i: token_ids[i]) if share else list(range(n))
        budget = _WAVE_FACTOR * self.batch_tokens
        waves: list[list[int]] = []
        current: list[int] = []
        used = 0
        for k, i in enumerate(order):
            new = len(token_ids[i]) - (_common_prefix(token_ids[order[k - 1]], token_ids[i]) if k and share else 0)
            if current and used + new > budget:
                waves.append(current)
                current, used, new = [], 0, len(token_ids[i])
            current.append(i)
            used += new
        if current:
            waves.append(current)
        return waves

    def _evaluate(self, root: Node, out: np.ndarray) -> None:
        """Compute the tree level by level; a level's KV is dropped once the level below has used it."""
        level = list(root.children)
        while level:
            rows = [_Row(node) for node in level if not node.parent.packs_children]
            rows.sort(key=lambda row: -len(row.ids))
            for batch in _batches(rows, lambda row: len(row.ids), lambda row: row.node.start, self.batch_tokens):
                self._forward(batch, out)
            for node in level:
                if node.parent is not None:
                    node.parent.kv = None
            level = [child for row in rows if not row.packed for child in row.node.children]

    def _forward(self, batch: list[_Row], out: np.ndarray) -> None:
        n_rows, width = len(batch), max(len(row.ids) for row in batch)
        context = max(row.node.start for row in batch)
        ids = torch.full((n_rows, width), self.pad_id, dtype=torch.long)
        keep = torch.zeros((n_rows, width), dtype=torch.bool)
        answers: list[list[int]] = []  # the queries of each kept position, in the logits' (row, position) order
        for r, row in enumerate(batch):
            ids[r, : len(row.ids)] = torch.tensor(row.ids)
            by_position: dict[int, list[int]] = {}
            for position, q in row.keep:
                by_position.setdefault(position, []).append(q)
            for position in sorted(by_position):
                keep[r, position] = True
                answers.append(by_position[position])
        keeps_kv = any(row.node.children and not row.packed for row in batch)
        kwargs: dict[str, Any] = {"use_cache": keeps_kv}
        if context == 0 and not any(row.packed for row in batch):
            # Plain rows: right padding, positions 0.., the model's own causal + padding mask.
            if any(len(row.ids) != width for row in batch):
                mask = torch.zeros((n_rows, width), dtype=torch.long)
                for r, row in enumerate(batch):
                    mask[r, : len(row.ids)] = 1
                kwargs["attention_mask"] = mask.to(self.device)
        else:
            kwargs.update(self._tree_inputs(batch, width, context))
        ids, keep = ids.to(self.device), keep.to(self.device)
        if self._keeps_logits:
            result = self.model(input_ids=ids, logits_to_keep=keep, **kwargs)
            logits = result.logits
        else:
            result = self.model(input_ids=ids, **kwargs)
            logits = result.logits[keep]
        if answers:
            lp = logits.float().log_softmax(dim=-1)[:, self.letter_ids].double().cpu().numpy()
            for values, queries in zip(lp, answers, strict=True):
                out[queries] = values
        if keeps_kv:
            layers = result.past_key_values.layers
            for r, row in enumerate(batch):
                node = row.node
                if not node.children or row.packed:
                    continue
                n = len(node.tokens)
                node.kv = [
                    (
                        torch.cat([layer.keys[r, :, : node.start], layer.keys[r, :, context : context + n]], dim=1),
                        torch.cat([layer.values[r, :, : node.start], layer.values[r, :, context : context + n]], dim=1),
                    )
                    for layer in layers
                ]

    def _tree_inputs(self, batch: list[_Row], width: int, context: int) -> dict[str, Any]:
        """Position ids, the custom 4D mask and the parents' KV (right-padded) for rows of the prefix tree."""
        n_rows = len(batch)
        pos = torch.zeros((n_rows, width), dtype=torch.long)
        seg = torch.full((n_rows, width), -2, dtype=torch.long)  # -2: padding
        ctx = torch.zeros((n_rows, 1), dtype=torch.long)
        for r, row in enumerate(batch):
            pos[r, : len(row.ids)] = torch.tensor(row.pos)
            seg[r, : len(row.ids)] = torch.tensor(row.seg)
            ctx[r, 0] = row.node.start
        # In the row, a token sees the earlier tokens of its own segment and all of the node's tokens (-1);
        # padding sees only padding (never an empty row, which would give NaNs) and nothing real sees padding.
        causal = torch.ones((width, width), dtype=torch.bool).tril()
        inner = causal & ((seg[:, :, None] == seg[:, None, :]) | (seg[:, None, :] == -1))
        outer = (torch.arange(context)[None, :] < ctx).unsqueeze(1).expand(n_rows, width, context)
        mask = torch.cat([outer, inner], dim=2)[:, None]
        if self._mask_kind == "eager":
            dtype = self.model.dtype
            mask = torch.zeros(mask.shape, dtype=dtype).masked_fill(~mask, torch.finfo(dtype).min)
        inputs: dict[str, Any] = {"attention_mask": mask.to(self.device), "position_ids": pos.to(self.device)}
        if context:
            from transformers import DynamicCache

            past = []
            for layer, (k0, v0) in enumerate(batch[0].node.parent.kv):
                keys = k0.new_zeros((n_rows, k0.shape[0], context, k0.shape[-1]))
                values = v0.new_zeros((n_rows, v0.shape[0], context, v0.shape[-1]))
                for r, row in enumerate(batch):
                    k, v = row.node.parent.kv[layer]
                    keys[r, :, : row.node.start] = k
                    values[r, :, : row.node.start] = v
                past.append((keys, values))
            inputs["past_key_values"] = DynamicCache(ddp_cache_data=past, config=self.model.config)
        return inputs

    # --------------------------------------------------------------------------------------------- generate

    @torch.inference_mode()
    def generate(
        self,
        prompts: Sequence[Messages],
        *,
        max_new_tokens: int = 10,
        temperature: float = 0.0,
        seed: int | None = None,
    ) -> list[str]:
        """Free-text answers (new text only, special tokens skipped): greedy at temperature 0, else sampled with
        plain temperature (no top-k/top-p), reproducibly when ``seed`` is given. Batched with left padding."""
        from transformers import GenerationConfig

        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        token_ids = self.encode(prompts)
        gen = self.model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tokenizer.eos_token_id
        sampling = temperature > 0
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sampling,
            temperature=temperature if sampling else None,
            # Unset fields would be filled from the checkpoint's generation_config (Qwen: top-k 20, top-p 0.8,
            # repetition penalty 1.05); a reader samples from its plain distribution.
            top_k=0 if sampling else None,
            top_p=1.0 if sampling else None,
            repetition_penalty=1.0,
            eos_token_id=eos,
            pad_token_id=self.pad_id,
            bos_token_id=gen.bos_token_id,
        )
        results: list[str] = [""] * len(token_ids)
        order = sorted(range(len(token_ids)), key=lambda i: -len(token_ids[i]))
        seeded = seed is not None and sampling
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices) if seeded else contextlib.nullcontext():
            if seeded:
                torch.manual_seed(seed)
            length = lambda i: len(token_ids[i]) + max_new_tokens  # noqa: E731
            for batch in _batches(order, length, lambda i: 0, self.batch_tokens):
                width = len(token_ids[batch[0]])
                ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
                mask = torch.zeros((len(batch), width), dtype=torch.long)
                for r, i in enumerate(batch):
                    n = len(token_ids[i])
                    ids[r, width - n :] = torch.tensor(token_ids[i])
                    mask[r, width - n :] = 1
                new = self.model.generate(
                    input_ids=ids.to(self.device), attention_mask=mask.to(self.device), generation_config=config
                )[:, width:]
                for i, text in zip(batch, self.tokenizer.batch_decode(new, skip_special_tokens=True), strict=True):
                    results[i] = text
        return results
