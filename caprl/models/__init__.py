"""Locally built models: a tiny Qwen2.5-VL captioner and a tiny Qwen2 reader sharing a locally trained tokenizer.

Names are imported lazily so that ``caprl --help`` does not pay for importing transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from caprl.models.chat_template import CHAT_TEMPLATE
    from caprl.models.tiny import TinyModels, build_tiny_models
    from caprl.models.tokenizer import LETTERS, SPECIAL_TOKENS, letter_token_ids, train_tokenizer

_EXPORTS = {
    "CHAT_TEMPLATE": "caprl.models.chat_template",
    "TinyModels": "caprl.models.tiny",
    "build_tiny_models": "caprl.models.tiny",
    "LETTERS": "caprl.models.tokenizer",
    "SPECIAL_TOKENS": "caprl.models.tokenizer",
    "letter_token_ids": "caprl.models.tokenizer",
    "train_tokenizer": "caprl.models.tokenizer",
}
__all__ = [
    "CHAT_TEMPLATE",
    "LETTERS",
    "SPECIAL_TOKENS",
    "TinyModels",
    "build_tiny_models",
    "letter_token_ids",
    "train_tokenizer",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'caprl.models' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_EXPORTS[name]), name)
