"""The supervised warm-up (``caprl.train.sft``): labels cover only the assistant turn; a mixture's levels are dealt
to every batch in proportion; a few steps save weights that load and caption; the demo's terminal sparkline."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from caprl.synth import generate_image_dataset

    return generate_image_dataset(4, tmp_path_factory.mktemp("sft") / "images", seed=11, progress=False)


def test_labels_cover_the_caption_and_end_of_turn_only(tiny_models, images):
    from transformers import AutoProcessor

    from caprl.data.io import read_dataset
    from caprl.data.media import load_media
    from caprl.train.sft import collate, encode_example

    proc = AutoProcessor.from_pretrained(tiny_models.captioner)
    ds = read_dataset(images)
    s = ds.samples[0]
    ex = encode_example(proc, s, load_media(s, ds.root), s.references["terse"])
    target = [t for t, lab in zip(ex.input_ids, ex.labels, strict=True) if lab != -100]
    text = proc.tokenizer.decode(target)
    assert text.startswith(s.references["terse"]) and "<|im_end|>" in text and "<|image_pad|>" not in text
    assert "pixel_values" in ex.media and ex.token_types is not None and sum(ex.token_types) > 0
    other = encode_example(proc, ds.samples[1], load_media(ds.samples[1], ds.root), "A.")
    batch = collate([ex, other], proc.tokenizer.pad_token_id)
    assert batch["input_ids"].shape == batch["labels"].shape == batch["mm_token_type_ids"].shape
    assert (batch["labels"][1, len(other.input_ids) :] == -100).all()


def test_a_short_warmup_lowers_the_loss_and_saves_a_captioner(tiny_models, images, tmp_path):
    from caprl.captioners.base import CaptionRequest, GenerationSettings
    from caprl.captioners.transformers import TransformersCaptioner
    from caprl.data.io import read_dataset
    from caprl.data.media import load_media
    from caprl.train.sft import SFTSettings, sft_warmup

    torch.set_num_threads(1)
    seen = []
    out = sft_warmup(
        tiny_models.captioner,
        images,
        tmp_path / "sft",
        SFTSettings(steps=6, batch_size=4, lr=3e-3),
        progress=lambda step, total, loss: seen.append((step, total)),
    )
    assert seen[-1] == (6, 6) and out["last_loss"] < out["first_loss"]
    ds = read_dataset(images)
    cap = TransformersCaptioner(str(tmp_path / "sft"))
    [[text]] = cap.caption(
        [CaptionRequest(media=load_media(ds.samples[0], ds.root), prompt="Describe.")],
        GenerationSettings(max_new_tokens=4),
    )
    assert isinstance(text, str)


@pytest.mark.parametrize(
    ("weights", "batch"), [((0.8, 0.2), 32), ((0.8, 0.2), 8), ((1.0, 1.0, 1.0), 32), ((0.5, 0.3, 0.2), 7), ((1.0,), 4)]
)
def test_levels_are_dealt_to_every_batch_in_proportion(weights, batch):
    import random

    from caprl.train.sft import dealt_levels

    levels = [f"level{i}" for i in range(len(weights))]
    share = [w / sum(weights) for w in weights]
    deal = dealt_levels(levels, weights, batch, random.Random(3))
    totals = [0] * len(levels)
    for n in range(1, 201):
        got = next(deal)
        assert len(got) == batch
        for i, lv in enumerate(levels):
            # every batch within one of its share, and the running count within one of exact
            assert abs(got.count(lv) - share[i] * batch) < 1.0 + 1e-9
            totals[i] += got.count(lv)
            assert abs(totals[i] - share[i] * batch * n) <= 1.0 + 1e-9
    # the order inside a batch is shuffled, not level by level
    orders = {tuple(next(deal)) for _ in range(20)}
    assert len(orders) > 1 or len(levels) == 1


def test_sparkline():
    from caprl.demo.cli import sparkline

    assert sparkline([0, 1, 2, 3]) == "▁▃▆█"
    assert len(sparkline(list(range(1000)), width=50)) == 50
    assert sparkline([]) == "" and sparkline([1.0, 1.0]) == "▁▁"
