"""The tiny models open like real Qwen checkpoints and behave as the rest of the project expects."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from safetensors.torch import load_file
from transformers import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    AutoProcessor,
    AutoTokenizer,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2ForCausalLM,
)
from typer.testing import CliRunner

from caprl.models import LETTERS, build_tiny_models, letter_token_ids, train_tokenizer
from caprl.models.cli import app

IMAGE_PROMPT = "Please describe this image in detail."
# One patch row: 3 channels x 2 frames (temporal patch) x 14 x 14.
PATCH_DIM = 3 * 2 * 14 * 14


@pytest.fixture(scope="module")
def captioner(tiny_models):
    processor = AutoProcessor.from_pretrained(tiny_models.captioner)
    model = AutoModelForImageTextToText.from_pretrained(tiny_models.captioner)
    return processor, model


@pytest.fixture(scope="module")
def reader_hf(tiny_models):
    return AutoTokenizer.from_pretrained(tiny_models.reader), AutoModelForCausalLM.from_pretrained(tiny_models.reader)


def _shapes_image() -> Image.Image:
    img = Image.new("RGB", (224, 224), "white")
    draw = ImageDraw.Draw(img)
    draw.ellipse((20, 20, 90, 90), fill=(220, 30, 30))
    draw.rectangle((130, 120, 200, 190), fill=(30, 80, 220))
    return img


def _video(frames: int = 8, size: int = 112) -> np.ndarray:
    video = np.full((frames, size, size, 3), 255, dtype=np.uint8)
    for t in range(frames):  # a square moving right
        video[t, 40:70, 5 + 10 * t : 35 + 10 * t] = (30, 160, 60)
    return video


def _weights(model_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(model_dir / "model.safetensors")


def test_layout_and_manifest(tiny_models):
    info = json.loads(tiny_models.manifest.read_text())
    assert tiny_models.captioner == tiny_models.root / "captioner"
    assert tiny_models.reader == tiny_models.root / "reader"
    assert info["seed"] == 0
    assert info["captioner"]["architecture"] == "Qwen2_5_VLForConditionalGeneration"
    assert info["reader"]["architecture"] == "Qwen2ForCausalLM"
    assert 1_000_000 < info["captioner"]["params"] < 10_000_000
    assert 100_000 < info["captioner"]["vision_params"] < info["captioner"]["params"]
    assert 1_000_000 < info["reader"]["params"] < 10_000_000
    assert 300 < info["vocab_size"] <= info["embedding_rows"] <= 4096 + 64


def test_captioner_opens_like_a_qwen_checkpoint(captioner, tiny_models):
    processor, model = captioner
    assert isinstance(model, Qwen2_5_VLForConditionalGeneration)
    assert model.config.architectures == ["Qwen2_5_VLForConditionalGeneration"]
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert type(processor.video_processor).__name__ == "Qwen2VLVideoProcessor"
    tok = processor.tokenizer
    cfg = model.config
    assert cfg.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert cfg.video_token_id == tok.convert_tokens_to_ids("<|video_pad|>")
    assert cfg.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")
    assert cfg.vision_config.out_hidden_size == cfg.text_config.hidden_size
    assert max(cfg.vision_config.fullatt_block_indexes) == cfg.vision_config.depth - 1
    assert tok.convert_tokens_to_ids("<|im_end|>") in model.generation_config.eos_token_id
    assert model.generation_config.pad_token_id == tok.pad_token_id
    assert tok.eos_token == "<|im_end|>"


def test_captioner_generates_from_image(captioner):
    processor, model = captioner
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": IMAGE_PROMPT}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n") and IMAGE_PROMPT in text
    inputs = processor(text=[text], images=[_shapes_image()], return_tensors="pt")

    # 224x224 -> 16x16 patches of 14 px -> 64 tokens after the 2x2 merge.
    assert inputs["image_grid_thw"].tolist() == [[1, 16, 16]]
    assert tuple(inputs["pixel_values"].shape) == (256, PATCH_DIM)
    assert (inputs["input_ids"] == model.config.image_token_id).sum().item() == 64

    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    new = out[:, inputs["input_ids"].shape[1] :]
    assert new.shape[1] >= 1
    assert isinstance(processor.batch_decode(new, skip_special_tokens=True)[0], str)


def test_captioner_chat_template_loads_image_from_message(captioner):
    processor, _ = captioner
    messages = [
        {"role": "user", "content": [{"type": "image", "image": _shapes_image()}, {"type": "text", "text": "Hi"}]}
    ]
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert inputs["image_grid_thw"].tolist() == [[1, 16, 16]]


def test_captioner_generates_from_video(captioner):
    processor, model = captioner
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe the video."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert "<|vision_start|><|video_pad|><|vision_end|>" in text
    # Frames come pre-sampled; the metadata's fps gives the model real time between frames.
    inputs = processor(
        text=[text], videos=[_video()], video_metadata=[{"total_num_frames": 8, "fps": 2.0}], return_tensors="pt"
    )

    # 8 frames of 112 px -> 4 tubelets of 8x8 patches -> 4 * 16 tokens after the merge.
    assert inputs["video_grid_thw"].tolist() == [[4, 8, 8]]
    assert tuple(inputs["pixel_values_videos"].shape) == (256, PATCH_DIM)
    assert inputs["second_per_grid_ts"].tolist() == [1.0]  # 2 frames per tubelet at 2 fps
    assert (inputs["input_ids"] == model.config.video_token_id).sum().item() == 64

    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    new = out[:, inputs["input_ids"].shape[1] :]
    assert new.shape[1] >= 1
    assert isinstance(processor.batch_decode(new, skip_special_tokens=True)[0], str)


def test_reader_chat_template_and_forward(reader_hf):
    tok, model = reader_hf
    assert isinstance(model, Qwen2ForCausalLM)
    question = "Caption: a red circle.\nWhat colour is the circle?\nA. red\nB. blue\nAnswer with the letter."
    text = tok.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False)
    assert question in text
    assert text.startswith("<|im_start|>system\n")  # default system turn
    assert text.endswith("<|im_start|>assistant\n")

    enc = tok(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape == (1, enc["input_ids"].shape[1], model.config.vocab_size)
    assert model.config.vocab_size >= len(tok)


def test_chat_template_options(reader_hf):
    tok, _ = reader_hf
    msgs = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Q1"}]},
        {"role": "assistant", "content": "A"},
    ]
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert "You are a helpful assistant." not in text
    assert text == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
    )


@pytest.mark.parametrize("which", ["reader", "captioner"])
def test_letters_are_single_tokens(tiny_models, which):
    tok = AutoTokenizer.from_pretrained(getattr(tiny_models, which))
    ids = letter_token_ids(tok)
    assert list(ids) == list(LETTERS)
    for letter, (bare, spaced) in ids.items():
        assert tok.decode([bare]) == letter and tok.decode([spaced]) == " " + letter
    assert len({i for pair in ids.values() for i in pair}) == 2 * len(LETTERS)
    # After an answer lead-in, the letter is still one token of its own.
    assert tok.encode("Answer: C", add_special_tokens=False)[-1] == ids["C"][1]


def test_letters_are_single_tokens_even_with_almost_no_merges():
    # 256 bytes + 4 learned merges: " A" .. " Z" exist only because the trainer adds them.
    tok = train_tokenizer(["no capital letters here"] * 3, vocab_size=260)
    assert set(letter_token_ids(tok)) == set(LETTERS)


def test_tokenizer_special_tokens_are_atomic(reader_hf):
    tok, _ = reader_hf
    for special in ("<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|video_pad|>", "<|vision_start|>"):
        assert len(tok.encode(special, add_special_tokens=False)) == 1
    assert tok.bos_token is None and tok.pad_token == "<|endoftext|>"


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_tokenizer_round_trips_unicode(reader_hf, text):
    tok, _ = reader_hf
    ids = tok.encode(text, add_special_tokens=False)
    # The tokenizer (like Qwen's) NFC-normalises first; byte-level BPE then loses nothing.
    assert tok.decode(ids) == unicodedata.normalize("NFC", text)


def test_tokenizer_round_trips_examples(reader_hf):
    tok, _ = reader_hf
    for text in ("Héllo wörld", "日本語のテキスト", "emoji 🎉🧪 and tabs\tand\nnewlines", "[00:05 - 00:12] a star"):
        assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_same_seed_same_weights_other_seed_differs(tiny_models, tmp_path):
    again = build_tiny_models(tmp_path / "again", seed=0)
    other = build_tiny_models(tmp_path / "other", seed=1)
    for part in ("captioner", "reader"):
        ref, same, diff = (_weights(getattr(m, part)) for m in (tiny_models, again, other))
        assert ref.keys() == same.keys() == diff.keys()
        assert all(torch.equal(ref[k], same[k]) for k in ref)
        assert not all(torch.equal(ref[k], diff[k]) for k in ref if ref[k].dim() > 1)
    # The tokenizer depends on the corpus, not the seed: models of any seed share token ids.
    ref_tok = (tiny_models.reader / "tokenizer.json").read_text()
    assert (other.reader / "tokenizer.json").read_text() == ref_tok
    assert (tiny_models.captioner / "tokenizer.json").read_text() == ref_tok


def test_cli_help_and_tiny(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "tiny" in result.output
    result = runner.invoke(app, ["tiny", "--help"])
    assert result.exit_code == 0 and "--seed" in result.output

    result = runner.invoke(app, ["tiny", "--out", str(tmp_path / "m"), "--seed", "3"])
    assert result.exit_code == 0, result.output
    info = json.loads((tmp_path / "m" / "tiny_models.json").read_text())
    assert info["seed"] == 3
    assert (tmp_path / "m" / "captioner" / "model.safetensors").is_file()
    assert (tmp_path / "m" / "reader" / "model.safetensors").is_file()


def test_reader_opens_with_auto_processor(tiny_models):
    """The reader is text-only: AutoProcessor must give its tokenizer, not a VL processor (servers rely on it)."""
    import json

    from transformers import AutoProcessor

    config = json.loads((tiny_models.reader / "tokenizer_config.json").read_text())
    assert "processor_class" not in config
    proc = AutoProcessor.from_pretrained(tiny_models.reader)
    assert "Tokenizer" in type(proc).__name__
