"""GGUF files to Hugging Face model folders, once.

transformers reads GGUF itself (``from_pretrained(dir, gguf_file=...)``, through the ``gguf`` package) and
dequantizes every tensor, which takes minutes for a 1.5B model on two cores. So caprl converts a GGUF file once
into a plain folder (float32 safetensors, config, tokenizer, chat template) and loads that afterwards in
well under a second. Float32 because dequantized Q4_K/Q6_K weights need more mantissa bits than bfloat16 or
float16 keep: the folder holds exactly the values transformers computes from the file.

>>> folder = gguf_model_dir("qwen.gguf")        # doctest: +SKIP  (converted on first use, cached by content)
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from caprl.cache import cache_root
from caprl.errors import InputError, MissingInput
from caprl.store.staging import locked, read_manifest, staged

CONVERSION_VERSION = 1
"""Bump when the conversion changes in a way that should redo cached folders."""

TensorProgress = Callable[[int, int], None]


class ConversionError(InputError, RuntimeError):
    """A GGUF file that cannot become a usable reader folder (unknown architecture, no chat template, ...); a
    ``CaprlError``: the ``caprl`` command prints it as one line."""


def sha256_file(path: Path, *, chunk: int = 1 << 22, on_bytes: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
            if on_bytes:
                on_bytes(len(block))
    return digest.hexdigest()


@contextlib.contextmanager
def _tensor_progress(callback: TensorProgress | None) -> Iterator[None]:
    """Report transformers' per-tensor dequantization loop to ``callback(done, total)`` instead of its tqdm bar."""
    import transformers.modeling_gguf_pytorch_utils as gguf_utils

    original = gguf_utils.tqdm

    def report(iterable: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        items = list(iterable)
        for i, item in enumerate(items):
            yield item
            if callback:
                callback(i + 1, len(items))

    gguf_utils.tqdm = report  # the module imports tqdm by name; patched for this conversion only
    try:
        yield
    finally:
        gguf_utils.tqdm = original


def convert_gguf(
    gguf: Path, out: Path, *, chat_template: str | None = None, on_tensor: TensorProgress | None = None
) -> dict[str, Any]:
    """Write the HF folder of ``gguf`` into ``out`` (float32 safetensors, tokenizer, chat template).

    ``chat_template`` replaces the file's own (needed for files that carry none). Returns facts for a manifest.
    """
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    gguf = Path(gguf).resolve()
    folder, name = str(gguf.parent), gguf.name
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        except (ValueError, KeyError, OSError) as exc:
            raise ConversionError(f"{gguf}: transformers cannot read this GGUF file's tokenizer: {exc}") from exc
        if chat_template is not None:
            tokenizer.chat_template = chat_template
        if not getattr(tokenizer, "chat_template", None):
            raise ConversionError(
                f"{gguf} carries no chat template (a base model?), and caprl renders every prompt through one; "
                "pass a chat template for it"
            )
        with _tensor_progress(on_tensor):
            try:
                model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
            except (ValueError, KeyError, OSError, NotImplementedError) as exc:
                raise ConversionError(f"{gguf}: transformers cannot load this GGUF model: {exc}") from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    # The loaded weights are plain dequantized tensors; only the "gguf" quantization tag stops save_pretrained.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.mkdir(parents=True, exist_ok=True)
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out, max_shard_size="2GB")
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(out)
    return {
        "architecture": model.config.model_type,
        "parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": model.config.vocab_size,
        "dtype": "float32",
        "transformers": transformers.__version__,
        "conversion_version": CONVERSION_VERSION,
    }


def _is_current(folder: Path, digest: str) -> bool:
    """Whether ``folder`` holds a finished conversion of the file with sha256 ``digest`` by this conversion code."""
    manifest = read_manifest(folder) or {}
    return manifest.get("sha256") == digest and manifest.get("conversion_version") == CONVERSION_VERSION


def gguf_model_dir(gguf: str | Path, *, cache: Path | None = None, progress: bool = True) -> Path:
    """The converted folder of a local ``.gguf`` file: made on first use under ``CACHE/gguf/<sha256>``."""
    from caprl.store.progress import transfer_progress

    gguf = Path(gguf)
    if not gguf.is_file():
        raise MissingInput(f"no GGUF file at {gguf}")
    size = gguf.stat().st_size
    with transfer_progress(progress) as bar:
        task = bar.add_task(f"hashing {gguf.name}", total=size)
        digest = sha256_file(gguf, on_bytes=lambda n: bar.advance(task, n))
        target = (cache or cache_root()) / "gguf" / digest[:24]
        if _is_current(target, digest):
            return target
        with locked(target):
            if _is_current(target, digest):
                return target  # another process converted it while we waited
            conv = bar.add_task(f"converting {gguf.name} (dequantizing)", total=None, unit="tensors")
            with staged(target) as (stage, manifest):
                info = convert_gguf(gguf, stage, on_tensor=lambda d, t: bar.update(conv, completed=d, total=t))
                manifest.update(source=str(gguf.resolve()), sha256=digest, size=size, **info)
    return target
