"""The int8 reader path (CPUs without bfloat16 units): W8A8 linear layers, per-token scales, and the choice of
precision by CPU features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from caprl.readers import cpu
from caprl.readers.int8 import Int8Linear, quantize_linear_int8


def test_int8_linear_is_close_to_float32_and_keeps_small_tokens_exact_beside_an_outlier():
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 96, bias=True)
    x = torch.randn(3, 10, 256)
    x[0, 0, :4] = 400.0  # one token with activations hundreds of times larger (as LLMs' first tokens have)
    q = Int8Linear(linear)
    want, got = linear(x), q(x)
    assert got.shape == want.shape and got.dtype == torch.float32
    # Error of a symmetric 8-bit code: about |x| |w| sqrt(k) / 127 per output; per token, so the outlier token's
    # scale does not spread to the others.
    ordinary = (got - want)[1:].abs().max().item()
    assert ordinary < 0.03 * want[1:].abs().max().item()
    per_tensor_scale = x.abs().max() / 127
    assert per_tensor_scale > 50 * x[1:].abs().max() / 127  # a per-tensor code would round these to a few levels
    np.testing.assert_allclose(got[0, 0].detach(), want[0, 0].detach(), rtol=0.05, atol=2.0)
    # Integer weights of 7 bits and one float scale per output channel.
    assert q.weight_int8.dtype == torch.int8 and q.weight_scale.shape == (96,)
    assert q.weight_int8.abs().max().item() == 63


def test_int8_products_are_exact_on_this_cpu():
    """The integer product equals exact arithmetic on the operands Int8Linear makes: 8-bit activations, 7-bit
    weights. (Full-range weights saturate in oneDNN's AVX2 kernel; this test fails on a CPU where the codes used
    would.)"""
    from caprl.readers.int8 import WEIGHT_LEVELS

    torch.manual_seed(1)
    a = torch.randint(-127, 128, (64, 1536), dtype=torch.int8)
    a[:, ::2] = 127  # the worst case for 16-bit pair sums
    w = torch.randint(-WEIGHT_LEVELS, WEIGHT_LEVELS + 1, (1536, 96), dtype=torch.int8)
    w[::2, :] = WEIGHT_LEVELS
    got = torch._int_mm(a, w)
    want = a.double() @ w.double()
    assert torch.equal(got.double(), want)


def test_quantize_replaces_decoder_linears_and_keeps_the_letter_head_float(tiny_models):
    from caprl.readers.base import LetterQuery
    from caprl.readers.transformers import TransformersReader

    reference = TransformersReader(tiny_models.reader, device="cpu", dtype="float32")
    reader = TransformersReader(tiny_models.reader, device="cpu", dtype="int8")
    assert reader.precision == "int8" and reference.precision == "float32"
    n_layers = reader.model.config.num_hidden_layers
    kinds = [type(m).__name__ for m in reader.model.modules()]
    assert kinds.count("Int8Linear") == 7 * n_layers  # q, k, v, o, gate, up, down in every layer
    assert isinstance(reader.model.lm_head, torch.nn.Linear)
    assert "precision=int8" in repr(reader)
    queries = [
        LetterQuery([{"role": "user", "content": f"Caption {i}: a red circle.\nWhich colour?\nA) red\nB) blue"}], "AB")
        for i in range(4)
    ]
    got, want = reader.score_letters(queries), reference.score_letters(queries)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g.probs, w.probs, atol=0.02)


def test_quantize_counts_and_refuses_a_model_off_the_cpu():
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    assert quantize_linear_int8(model, skip=()) == 2
    assert all(isinstance(m, Int8Linear) for m in (model[0], model[2]))
    head = torch.nn.ModuleDict({"body": torch.nn.Linear(4, 4), "lm_head": torch.nn.Linear(4, 4)})
    assert quantize_linear_int8(head) == 1 and isinstance(head["lm_head"], torch.nn.Linear)
    meta = torch.nn.Sequential(torch.nn.Linear(4, 4, device="meta"))
    with pytest.raises(ValueError, match="run on the CPU"):
        quantize_linear_int8(meta)


def test_int8_is_refused_off_the_cpu():
    from caprl.readers.transformers import _resolve_precision

    assert _resolve_precision("int8", "cpu") == (torch.float32, True)
    assert _resolve_precision(None, "cuda") == ("auto", False)
    with pytest.raises(ValueError, match="CPU path"):
        _resolve_precision("int8", "cuda")


@pytest.mark.parametrize(
    ("flags", "int8_mm", "want"),
    [
        ({"avx2", "amx_bf16"}, True, "bfloat16"),
        ({"avx2", "avx512_bf16"}, True, "bfloat16"),
        ({"avx2", "fma"}, True, "int8"),
        ({"avx2", "fma"}, False, "float32"),
    ],
)
def test_precision_follows_the_cpu(monkeypatch, flags, int8_mm, want):
    monkeypatch.delenv(cpu.ENV, raising=False)
    monkeypatch.delenv(cpu.EMULATE_ENV, raising=False)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(cpu, "has_int8_matmul", lambda: int8_mm)
    assert cpu.cpu_precision() == want
    assert cpu.default_cpu_dtype() == (torch.bfloat16 if want == "bfloat16" else torch.float32)


def test_an_avx2_cpu_can_be_emulated(monkeypatch):
    monkeypatch.delenv(cpu.ENV, raising=False)
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    monkeypatch.setattr(cpu, "has_int8_matmul", lambda: True)
    monkeypatch.setenv(cpu.EMULATE_ENV, "avx2")
    assert cpu.native_precision() == "int8"
    monkeypatch.setenv(cpu.EMULATE_ENV, "sse4")
    with pytest.raises(ValueError, match="the one CPU class caprl emulates is 'avx2'"):
        cpu.native_precision()


def test_precision_override_and_its_error(monkeypatch):
    monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    for value in cpu.PRECISIONS:
        monkeypatch.setenv(cpu.ENV, value)
        assert cpu.cpu_precision() == value
    monkeypatch.setenv(cpu.ENV, "fp16")
    with pytest.raises(ValueError, match="CAPRL_CPU_DTYPE='fp16' is not one of bfloat16, float32, int8"):
        cpu.cpu_precision()


def test_this_torch_runs_int8_matmuls():
    # The int8 path is what CPUs without bfloat16 units get; on the torch caprl installs it must be there.
    assert cpu.has_int8_matmul()
