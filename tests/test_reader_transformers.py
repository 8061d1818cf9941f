"""TransformersReader on the tiny reader (random weights): prefix sharing, batching and padding change nothing."""

from __future__ import annotations

import contextlib
import math
import os
import random

import numpy as np
import pytest

from caprl.readers.base import LetterQuery, Reader, ReaderError
from caprl.reward.options import DEFAULT_UNANSWERABLE, shuffle_options
from caprl.reward.prompt import build_messages
from caprl.schema import MCQ

TOL = 1e-4
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's ops are too small to split: on a busy 2-core machine a second intra-op thread makes each
    forward wait for the scheduler (20x slower here). One thread for this module, restored afterwards."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)


@pytest.fixture(scope="module")
def queries() -> list[LetterQuery]:
    """Realistic prompts: 3 captions (long and short) x 6-7 questions, 2 to 6 options, questions of one caption
    next to each other, plus a caption-less prompt that shares nothing beyond the template."""
    from caprl.synth import item_seed, make_captions, make_image_scene, make_mcqs

    rng = random.Random(0)
    out: list[LetterQuery] = []
    for i, level in enumerate(["exhaustive", "detailed", "terse"]):
        scene = make_image_scene(item_seed(0, i, "image"))
        caption = make_captions(scene)[level]
        mcqs = make_mcqs(scene)[0][:3]
        mcqs += [MCQ(question=f"Which colour is object {k}?", options=COLOURS[:k], gold=k - 1) for k in (2, 4, 6)]
        if i % 2:
            mcqs.append(MCQ(question="Is there a star?", options=["yes", "no", "maybe"], gold=0))
        for j, mcq in enumerate(mcqs):
            unanswerable = DEFAULT_UNANSWERABLE if (j % 2 and len(mcq.options) < 6) else None
            shuffled = shuffle_options(mcq, rng, unanswerable=unanswerable)
            out.append(LetterQuery(build_messages(caption, shuffled), shuffled.letters))
    out.append(LetterQuery([{"role": "user", "content": "Pick one.\nA) x\nB) y"}], "AB"))
    assert {len(q.letters) for q in out} >= {2, 3, 4, 5, 6}
    return out


@pytest.fixture(scope="module")
def one_at_a_time(reader, queries):
    """The reference: each prompt alone (no padding, no sharing, batch of one)."""
    reader.share_prefix = False
    try:
        return [reader.score_letters([q])[0] for q in queries]
    finally:
        reader.share_prefix = True


def _assert_same(scores, reference, tol: float = TOL) -> None:
    assert len(scores) == len(reference)
    for got, want in zip(scores, reference, strict=True):
        assert got.letters == want.letters
        np.testing.assert_allclose(got.probs, want.probs, atol=tol, rtol=0)
        assert got.letter_mass == pytest.approx(want.letter_mass, rel=1e-3, abs=1e-7)


def test_is_a_reader(reader, tiny_models):
    from caprl.models import letter_token_ids

    assert isinstance(reader, Reader)
    assert reader.name.startswith("transformers:")
    assert reader.letter_ids == [ids[0] for ids in letter_token_ids(reader.tokenizer).values()]
    assert reader.score_letters([]) == []


def test_prefix_sharing_matches_one_prompt_at_a_time(reader, queries, one_at_a_time):
    token_ids = reader.encode([q.messages for q in queries])
    rows = reader.plan(token_ids)
    assert len(rows) == 1  # everything fits one row: one forward for the whole call
    computed = sum(len(row) for row in rows)
    # Each caption is computed once for its questions and the template once for all captions.
    assert computed < 0.5 * sum(map(len, token_ids))
    assert sorted(q for row in rows for _, q in row.keep) == list(range(len(queries)))
    _assert_same(reader.score_letters(queries), one_at_a_time)


@contextlib.contextmanager
def _row_tokens(reader, n: int):
    """The reader with rows of ``n`` tokens for the block (several rows for the test queries)."""
    saved = reader.row_tokens
    reader.row_tokens = n
    try:
        yield reader
    finally:
        reader.row_tokens = saved


def test_rows_split_a_tree_and_repeat_only_the_ancestors_they_need(reader, queries, one_at_a_time):
    token_ids = reader.encode([q.messages for q in queries])
    with _row_tokens(reader, 200):
        rows = reader.plan(token_ids)
        scores = reader.score_letters(queries)
    assert len(rows) > 3
    _assert_each_query_sees_its_prompt(rows, token_ids)
    _assert_same(scores, one_at_a_time)


def _assert_each_query_sees_its_prompt(rows, token_ids) -> None:
    """Every query's last token sees exactly its own prompt, and every query is answered once."""
    for row in rows:
        for position, q in row.keep:
            assert row.visible_ids(position) == token_ids[q]
    assert sorted(q for row in rows for _, q in row.keep) == list(range(len(token_ids)))


def test_merged_rows_fill_a_forward_and_keep_each_prompt_apart(reader, queries, one_at_a_time):
    from caprl.readers.prefix_tree import merge_rows

    token_ids = reader.encode([q.messages for q in queries])
    with _row_tokens(reader, 200):
        rows = reader.plan(token_ids)
        merged = merge_rows(rows, 400)
        scores = reader.score_letters(queries)
    # Fewer, fuller rows: the same tokens, less padding when they are batched.
    assert len(merged) < len(rows) and all(len(m) <= 400 for m in merged)
    assert sum(map(len, merged)) == sum(map(len, rows))
    padded = lambda rs: len(rs) * max(map(len, rs))  # noqa: E731
    assert padded(merged) < padded(rows)
    _assert_each_query_sees_its_prompt(merged, token_ids)
    _assert_same(scores, one_at_a_time)


def test_the_shared_template_is_computed_once_and_kept_across_calls(reader, queries, one_at_a_time):
    templated = queries[:-1]  # every one of these starts with the chat template and the reward instruction
    token_ids = reader.encode([q.messages for q in templated])
    saved = reader.row_tokens
    reader._prefix = None
    reader.row_tokens = 200  # several rows, each of which would otherwise start with the template
    try:
        first = reader.score_letters(templated[:7])  # one caption's questions: the prefix runs into the caption
        kept_first = reader._prefix[0]
        everything = reader.score_letters(templated)  # other captions: the kept prefix shrinks to the template
        kept = reader._prefix[0]
        again = reader.score_letters(templated[7:])  # reused as it is
        assert reader._prefix[0] == kept
        # A call that shares less than the cache holds (a prompt without the instruction) computes in full.
        mixed = reader.score_letters(queries)
    finally:
        reader.row_tokens = saved
    shared = len(os.path.commonprefix([tuple(t) for t in token_ids]))
    assert len(kept) == shared >= 16 and len(kept_first) > shared
    assert sum(map(len, reader.plan(token_ids, prefix_tokens=len(kept)))) == sum(
        map(len, reader.plan(token_ids))
    ) - len(kept) * len(reader.plan(token_ids))  # each row's copy of the template is gone
    _assert_same(first, one_at_a_time[:7])
    _assert_same(everything, one_at_a_time[:-1])
    _assert_same(again, one_at_a_time[7:-1])
    _assert_same(mixed, one_at_a_time)


@pytest.mark.parametrize(
    ("share", "rows", "row_tokens"),
    [(True, 1, 64), (True, 7, 300), (True, None, 1024), (False, 1, 0), (False, None, 0)],
)
def test_batch_size_and_order_do_not_change_scores(reader, queries, one_at_a_time, rows, share, row_tokens):
    longest = max(len(ids) for ids in reader.encode([q.messages for q in queries]))
    order = list(range(len(queries)))
    random.Random(rows or 0).shuffle(order)
    saved = reader.batch_tokens, reader.share_prefix, reader.row_tokens
    reader.batch_tokens = longest * rows if rows else 1 << 20
    reader.share_prefix = share
    reader.row_tokens = row_tokens or saved[2]
    try:
        scores = reader.score_letters([queries[i] for i in order])
    finally:
        reader.batch_tokens, reader.share_prefix, reader.row_tokens = saved
    _assert_same(scores, [one_at_a_time[i] for i in order])


def test_tree_edge_cases_on_raw_token_ids(reader):
    # Duplicates, a query that is a prefix of another, queries diverging after a short shared run, a lone token.
    rng = np.random.default_rng(0)
    vocab = len(reader.tokenizer)
    base = rng.integers(0, vocab, 40).tolist()
    seqs = [
        base,
        base,
        base[:25],
        base + rng.integers(0, vocab, 7).tolist(),
        base[:30] + rng.integers(0, vocab, 12).tolist(),
        base[:3] + rng.integers(0, vocab, 20).tolist(),
        base[:25] + rng.integers(0, vocab, 5).tolist(),
        rng.integers(0, vocab, 1).tolist(),
    ]
    shared = reader.letter_logprobs(seqs)
    alone = np.concatenate([reader.letter_logprobs([s]) for s in seqs])
    np.testing.assert_allclose(shared, alone, atol=1e-4)
    np.testing.assert_array_equal(shared[0], shared[1])


def test_nested_prefixes_make_a_deep_tree(reader):
    # Every query a prefix of the next: a chain of nodes, one level each (and no recursion limit to hit).
    from caprl.readers.prefix_tree import build_prefix_tree

    rng = np.random.default_rng(1)
    base = rng.integers(0, len(reader.tokenizer), 80).tolist()
    seqs = [base[: 20 + k] for k in range(0, 36, 3)]
    assert _depth(build_prefix_tree(seqs, range(len(seqs)), 1)) == len(seqs)
    alone = np.concatenate([reader.letter_logprobs([s]) for s in seqs])
    np.testing.assert_allclose(reader.letter_logprobs(seqs), alone, atol=1e-4)
    saved = reader.row_tokens
    reader.row_tokens = 30  # shorter than the chain: rows repeat its head
    try:
        np.testing.assert_allclose(reader.letter_logprobs(seqs), alone, atol=1e-4)
    finally:
        reader.row_tokens = saved


def test_probabilities_are_distributions(reader, queries):
    for s in reader.score_letters(queries):
        assert s.probs.shape == (len(s.letters),)
        assert s.probs.sum() == pytest.approx(1.0, abs=1e-9)
        assert (s.probs >= 0).all()
        assert 0.0 < s.letter_mass <= 1.0
        assert s.argmax in s.letters


def test_bad_letters_are_rejected(reader, queries):
    with pytest.raises(ValueError, match="letters"):
        reader.score_letters([LetterQuery(queries[0].messages, "AA")])
    with pytest.raises(ValueError, match="letters"):
        reader.score_letters([LetterQuery(queries[0].messages, "ab")])


def test_reader_with_multi_token_letters_is_refused():
    from tokenizers import Tokenizer, pre_tokenizers
    from tokenizers.models import BPE
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from caprl.models import CHAT_TEMPLATE
    from caprl.readers.transformers import TransformersReader

    # SentencePiece-style: a word-boundary marker before every word and no merged "▁A" pieces, so a bare "A"
    # is two tokens ("▁", "A").
    pieces = ["▁", *"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"]
    backend = Tokenizer(BPE(vocab={p: i for i, p in enumerate(pieces)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, chat_template=CHAT_TEMPLATE)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    assert len(tokenizer.encode("A", add_special_tokens=False)) == 2
    config = Qwen2Config(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
    )
    with pytest.raises(ReaderError, match=r"single token.*'A' -> 2 tokens.*'Z' -> 2 tokens"):
        TransformersReader.from_model(Qwen2ForCausalLM(config), tokenizer)


def test_generate_is_deterministic(reader, queries):
    prompts = [queries[0].messages, queries[-1].messages, queries[-2].messages]  # different lengths: padding
    greedy = reader.generate(prompts, max_new_tokens=5)
    assert len(greedy) == 3 and all(isinstance(t, str) for t in greedy)
    assert reader.generate(prompts, max_new_tokens=5) == greedy
    # Left padding changes nothing: each prompt alone gives the same greedy text.
    assert [reader.generate([p], max_new_tokens=5)[0] for p in prompts] == greedy
    sampled = reader.generate(prompts, max_new_tokens=5, temperature=1.0, seed=7)
    assert reader.generate(prompts, max_new_tokens=5, temperature=1.0, seed=7) == sampled
    assert all(isinstance(t, str) for t in sampled)
    assert "<|im_end|>" not in "".join(greedy + sampled)


def test_sampling_with_per_prompt_seeds_does_not_depend_on_the_batch(reader, queries):
    """``seeds``: each prompt samples from its own seed, so its text is the same alone, in a batch of other lengths,
    reordered, or split into other batches (issue 22: the reward of a caption changed with its batch)."""
    prompts = [q.messages for q in queries[::3]]
    kw = {"max_new_tokens": 10, "temperature": 0.6}  # the caprl preset's generate settings
    for base in (0, 1, 2**62 + 5):
        seeds = [base + 17 * i for i in range(len(prompts))]
        together = reader.generate(prompts, seeds=seeds, **kw)
        assert [reader.generate([p], seeds=[s], **kw)[0] for p, s in zip(prompts, seeds, strict=True)] == together
        assert reader.generate(prompts[::-1], seeds=seeds[::-1], **kw)[::-1] == together
        saved = reader.batch_tokens
        reader.batch_tokens = 600  # a few prompts per batch, packed differently
        try:
            assert reader.generate(prompts, seeds=seeds, **kw) == together
        finally:
            reader.batch_tokens = saved
    # The seed matters: one prompt under eight seeds samples several texts, and one seed twice gives one text.
    assert len(set(reader.generate([prompts[0]] * 8, seeds=range(8), **kw))) > 1
    assert len(set(reader.generate([prompts[0]] * 2, seeds=[3, 3], **kw))) == 1
    with pytest.raises(ValueError, match="2 seeds for 3 prompts"):
        reader.generate(prompts[:3], seeds=[1, 2], **kw)


def test_row_sampler_draws_from_the_tempered_distribution():
    import torch

    from caprl.readers.transformers import _RowSampler

    logits = torch.tensor([[0.0, 1.0, 2.0, -math.inf], [3.0, 0.0, 0.0, 0.0]])
    n = 4000
    sampler = _RowSampler(range(2 * n), temperature=0.5)
    drawn = torch.stack([sampler(None, logits.repeat(n, 1)).argmax(dim=-1) for _ in range(2)]).view(-1, n, 2)
    want = (logits / 0.5).softmax(dim=-1).numpy()
    for row in range(2):
        freq = np.bincount(drawn[..., row].flatten().numpy(), minlength=4) / drawn[..., row].numel()
        np.testing.assert_allclose(freq, want[row], atol=0.02)
    assert (drawn[..., 0] != 3).all()  # a token of probability 0 is never drawn
    out = _RowSampler([1, 2], temperature=0.5)(None, logits)
    assert (out.isinf().sum(dim=-1) == 3).all()  # one token left per row, for greedy decoding to take


def _depth(node) -> int:
    """Levels below ``node``."""
    return max((1 + _depth(c) for c in node.children), default=0)
