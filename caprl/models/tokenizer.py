"""A byte-level BPE tokenizer trained locally on shapes-world text, with Qwen's special tokens and pipeline.

The normalizer, pre-tokenizer and decoder are exactly the ones ``transformers.Qwen2Tokenizer`` rebuilds when it
loads a ``tokenizer.json``, so the saved tokenizer behaves the same whichever way a loader opens it. Being byte
level, it round-trips any unicode text; only its merges are small.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator

from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE
from tokenizers.trainers import BpeTrainer
from transformers import Qwen2Tokenizer

from caprl.models.chat_template import CHAT_TEMPLATE

# The same split regex Qwen2Tokenizer uses (transformers/models/qwen2/tokenization_qwen2.py).
PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2.5-VL's special tokens, in its id order; they sit after the learned vocabulary, as in the real checkpoints.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)

LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
BYTE_SPACE = "Ġ"  # how byte-level BPE spells a leading space
_FIXED_REPEATS = 8

# Instruction text the rest of the project sends through these models; in the corpus so it tokenizes compactly.
PROJECT_PROMPTS: tuple[str, ...] = (
    # Chat-template text around the special tokens (role names, newlines).
    "system\nYou are a helpful assistant.\nuser\nassistant\n",
    "You are a helpful assistant.",
    "Please describe this image in detail.",
    "Please describe this video in detail.",
    "Describe the video in chronological order. Start each event with a timestamp such as [00:05] or [00:05 - 00:12].",
    "Answer with the option's letter from the given choices directly.",
    "Read the caption below and answer the multiple-choice question. Answer with a single letter.",
    "The caption does not contain enough information to answer the question.",
    "Cannot be answered from the caption.",
    "Caption:",
    "Question:",
    "Options:",
    "Answer:",
    "The answer is",
    "Write five multiple-choice questions about this image, each with four options and the correct letter.",
    "Rate the caption for factuality, temporal alignment, coverage and hallucination. Reply in JSON.",
)

def _letter_text() -> Iterator[str]:
    # Letters as a reader meets them: alone, after a space, as labels, and as answers.
    yield " ".join(LETTERS)
    for letter in LETTERS:
        yield f"{letter}. option {letter}\n({letter}) {letter}) Answer: {letter}"


def _fixed_text() -> Iterator[str]:
    # Repeated so BPE (min frequency 2) learns these words whole, however little shapes-world text comes after.
    for _ in range(_FIXED_REPEATS):
        yield from PROJECT_PROMPTS
        yield from _letter_text()


def default_corpus(n: int = 1000, seed: int = 0) -> Iterator[str]:
    """The project's prompts and the letters, plus shapes-world text (captions, questions, options) from
    ``caprl.synth.text_corpus``."""
    from caprl.synth import text_corpus

    yield from _fixed_text()
    yield from text_corpus(n=n, seed=seed)


def _backend() -> Tokenizer:
    tok = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def _learn_bpe(corpus: Iterable[str], vocab_size: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    tok = _backend()
    trainer = BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    model = json.loads(tok.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    return dict(model["vocab"]), merges


def _ensure_spaced_letters(vocab: dict[str, int], merges: list[tuple[str, str]]) -> None:
    # Readers emit " A" after "Answer:"; the reward engine needs that to be one token, whatever the corpus held.
    for letter in LETTERS:
        if BYTE_SPACE + letter not in vocab:
            vocab[BYTE_SPACE + letter] = len(vocab)
            merges.append((BYTE_SPACE, letter))


def train_tokenizer(
    corpus: Iterable[str] | None = None, *, vocab_size: int = 2048, model_max_length: int = 8192
) -> Qwen2Tokenizer:
    """Train byte-level BPE on ``corpus`` (default: :func:`default_corpus`) and wrap it as a Qwen2Tokenizer.

    Set up as Qwen's instruct tokenizers are: eos ``<|im_end|>``, pad ``<|endoftext|>``, no bos, ChatML template.
    """
    texts = default_corpus() if corpus is None else itertools.chain(_fixed_text(), corpus)
    vocab, merges = _learn_bpe(texts, vocab_size)
    _ensure_spaced_letters(vocab, merges)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        model_max_length=model_max_length,
        errors="replace",
        split_special_tokens=False,
    )
    tokenizer.add_special_tokens({"additional_special_tokens": list(SPECIAL_TOKENS)})
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def letter_token_ids(tokenizer) -> dict[str, list[int]]:
    """Token ids of ``"A"`` and ``" A"`` (etc.); raises if any letter is not a single token either way."""
    out: dict[str, list[int]] = {}
    for letter in LETTERS:
        ids = []
        for text in (letter, " " + letter):
            enc = tokenizer.encode(text, add_special_tokens=False)
            if len(enc) != 1:
                raise ValueError(f"{text!r} encodes to {len(enc)} tokens, expected 1")
            ids.append(enc[0])
        out[letter] = ids
    return out
