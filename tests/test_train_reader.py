"""Training the tiny reader: exact prompt path, prefix-shared forward, caching, output format, and (slow) the
acceptance numbers: exhaustive captions answered, empty captions at chance, exhaustive > terse > empty."""

from __future__ import annotations

import json
import random

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from typer.testing import CliRunner

from caprl.models.cli import app
from caprl.models.train_reader import (
    EMPTY,
    HELDOUT_STREAM,
    MANIFEST,
    TRAIN_STREAM,
    ReaderTrainSettings,
    answer_logits,
    caption_prompts,
    evaluate_reader,
    heldout_prompts,
    letter_ids,
    make_item,
    pack_prompts,
    render_ids,
    train_reader,
    train_reader_result,
)
from caprl.reward.options import shuffle_options
from caprl.reward.prompt import build_messages

# A few steps on a few captions: enough to see the loss fall (the letters are learnt first), in seconds.
QUICK = dict(steps=12, captions_per_step=3, questions_per_caption=4, warmup_steps=2, lr=3e-3, eval_items=4)


@pytest.fixture(scope="module")
def tokenizer(tiny_models):
    return AutoTokenizer.from_pretrained(tiny_models.reader)


@pytest.fixture(scope="module")
def quick_reader(tiny_models, tmp_path_factory):
    losses: list[float] = []
    root = tmp_path_factory.mktemp("readers")
    result = train_reader_result(
        root, base=tiny_models.reader, threads=2, progress=lambda i, n, loss: losses.append(loss), **QUICK
    )
    return root, result, losses


def test_prompts_are_the_reward_prompts(tokenizer):
    """prefix + suffix of every packed question is exactly the chat-templated build_messages prompt."""
    item = make_item(TRAIN_STREAM, 0, 2)  # a video
    assert item.modality == "video"
    rng = random.Random(0)
    shuffled = [shuffle_options(q, rng) for q in item.mcqs]
    for level in ("exhaustive", "terse", EMPTY):
        packed = caption_prompts(tokenizer, item, level, rng, shuffled=shuffled)
        assert len(packed.prefix) > 20
        for s, suffix in zip(shuffled, packed.suffixes, strict=False):
            text = tokenizer.apply_chat_template(
                build_messages(item.captions[level], s, modality="video"), add_generation_prompt=True, tokenize=False
            )
            assert text.endswith("<|im_start|>assistant\n")
            assert packed.prefix + suffix == tokenizer.encode(text, add_special_tokens=False)
        assert packed.gold == [s.gold for s in shuffled]


def test_pack_prompts_keeps_every_suffix_non_empty():
    assert pack_prompts([[1, 2, 3], [1, 2, 4]]) == ([1, 2], [[3], [4]])
    assert pack_prompts([[1, 2], [1, 2]]) == ([1], [[2], [2]])
    assert pack_prompts([[5, 6, 7]]) == ([5, 6], [[7]])


def test_shared_prefix_forward_matches_one_prompt_at_a_time(tiny_models, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(tiny_models.reader).eval()
    rows = heldout_prompts(tokenizer, n_items=3, levels=("exhaustive", EMPTY))
    with torch.no_grad():
        packed = answer_logits(model, rows, pad_id=tokenizer.pad_token_id, max_suffix_tokens=64)
        j = 0
        for r in rows:
            for suffix in r.suffixes:
                alone = model(input_ids=torch.tensor([r.prefix + suffix])).logits[0, -1]
                torch.testing.assert_close(packed[j], alone, atol=1e-4, rtol=1e-4)
                j += 1
    assert j == packed.shape[0]


def test_heldout_and_train_items_do_not_overlap():
    train = {make_item(TRAIN_STREAM, 0, i).scene_seed for i in range(300)}
    held = {make_item(HELDOUT_STREAM, 0, i).scene_seed for i in range(300)}
    assert not train & held


def test_the_target_is_the_first_assistant_token(tokenizer):
    """A reply "B" to the reader prompt starts with exactly the token the reader is trained to put first."""
    ids = letter_ids(tokenizer)
    assert len(set(ids)) == 26
    user = [{"role": "user", "content": "Question: ?\nOptions:\nA) x\nB) y"}]
    prompt = render_ids(tokenizer, user)
    for letter, i in zip("AB", ids, strict=False):
        text = tokenizer.apply_chat_template([*user, {"role": "assistant", "content": letter}], tokenize=False)
        full = tokenizer.encode(text, add_special_tokens=False)
        assert full[: len(prompt)] == prompt and full[len(prompt)] == i


def test_training_lowers_the_loss_and_writes_a_loadable_reader(quick_reader):
    _, result, losses = quick_reader
    assert not result.cached
    assert len(losses) == QUICK["steps"]
    assert sum(losses[-3:]) / 3 < losses[0] - 1.0  # from ~ln(vocab) towards the letters
    path = result.path
    assert path.name.startswith("tiny-reader-")
    manifest = json.loads((path / MANIFEST).read_text())
    assert manifest["settings"]["steps"] == QUICK["steps"]
    assert manifest["data"]["train_stream"] == TRAIN_STREAM
    assert set(manifest["heldout"]["levels"]) == {"exhaustive", "terse", EMPTY}
    tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert tok.chat_template and tok.eos_token == "<|im_end|>"


def test_second_call_is_a_cache_hit(quick_reader, tiny_models):
    root, first, _ = quick_reader
    stamp = (first.path / "model.safetensors").stat().st_mtime_ns
    again = train_reader_result(root, base=tiny_models.reader, **QUICK)
    assert again.cached and again.path == first.path
    assert (first.path / "model.safetensors").stat().st_mtime_ns == stamp
    assert train_reader(root, base=tiny_models.reader, settings=ReaderTrainSettings(**QUICK)) == first.path


def test_changed_settings_train_a_new_reader(quick_reader, tiny_models):
    root, first, _ = quick_reader
    other = train_reader_result(root, base=tiny_models.reader, **{**QUICK, "steps": 2, "eval_items": 0})
    assert not other.cached and other.path != first.path
    assert first.path.exists() and other.path.exists()


def test_evaluate_reader_reports_every_level(quick_reader):
    _, result, _ = quick_reader
    report = evaluate_reader(result.path, n_items=6, levels=("exhaustive", "brief", EMPTY), unanswerable=True)
    assert set(report["levels"]) == {"exhaustive", "brief", EMPTY}
    for d in report["levels"].values():
        assert d["questions"] >= 6 * 6
        assert 0 <= d["accuracy"] <= 1 and 0 < d["chance"] < 0.5  # "cannot be answered" adds an option
        assert 0 < d["soft"] < 1 and 0 < d["letter_mass"] <= 1
    with pytest.raises(ValueError, match="unknown caption levels"):
        evaluate_reader(result.path, n_items=1, levels=("verbose",))


def test_cli_train_reader(quick_reader, tiny_models):
    root, first, _ = quick_reader
    args = ["train-reader", "--out", str(root), "--base", str(tiny_models.reader)]
    args += ["--steps", str(QUICK["steps"]), "--captions-per-step", "3", "--questions-per-caption", "4"]
    args += ["--eval-items", "4"]
    # Different warmup/lr defaults from QUICK, so this trains (a few steps) and prints the table.
    result = CliRunner().invoke(app, [*args[:5], "--steps", "3", "--eval-items", "2", "--captions-per-step", "2"])
    assert result.exit_code == 0, result.output
    assert "held-out accuracy" in result.output and "exhaustive" in result.output and "chance" in result.output
    assert "trained in" in result.output
    help_text = CliRunner().invoke(app, ["train-reader", "--help"]).output
    assert "--steps" in help_text and "--base" in help_text and "--device" in help_text
