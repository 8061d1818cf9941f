"""``caprl train`` on TRL's GRPOTrainer with the tiny captioner: media, log-probs, advantages, outputs, resume.

The tiny reader has random weights, so rewards are noise: these tests check mechanics (media reach generation
and the log-prob pass, rewards flow, outputs are written, a killed run resumes where it stopped), not learning.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from caprl.data.io import read_dataset, write_dataset
from caprl.reward.engine import RewardItem, RewardResult
from caprl.schema import VideoMedia
from caprl.train.config import TrainConfig, apply_overrides, load_config
from caprl.train.records import read_jsonl

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Small shapes-world datasets: images, videos, and both mixed (media paths made absolute)."""
    from caprl.synth import generate_image_dataset, generate_video_dataset

    root = tmp_path_factory.mktemp("train_world")
    images = generate_image_dataset(6, root / "images", seed=3, progress=False)
    videos = generate_video_dataset(3, root / "videos", seed=3, progress=False)
    mixed = []
    for d in (images, videos):
        ds = read_dataset(d)
        for s in ds.samples:
            path = str((ds.root / s.media.path).resolve())
            media = VideoMedia(path=path, sampling=s.media.sampling) if s.media.type == "video" else None
            mixed.append(s.model_copy(update={"media": media or s.media.model_copy(update={"path": path})}))
    write_dataset(mixed, root / "mixed")
    return {"images": images, "videos": videos, "mixed": root / "mixed"}


def _config(run_dir: Path, data: Path, tiny, *extra: str) -> TrainConfig:
    return load_config(None, _overrides(run_dir, data, tiny, *extra))


def _overrides(run_dir: Path, data: Path, tiny, *extra: str) -> list[str]:
    return [
        f"run_dir={run_dir}",
        f"data.train={data}",
        f"model.policy={tiny.captioner}",
        f"reward.reader={tiny.reader}",
        "rollout.num_generations=2",
        "rollout.max_completion_length=12",
        "optim.per_device_train_batch_size=4",
        "optim.max_steps=2",
        "optim.learning_rate=1e-4",
        "checkpoint.save_steps=2",
        "logging.report_to=none",
        "threads=1",
        *extra,
    ]


class FixedScorer:
    """Rewards from a function of the item, recorded; no reader."""

    def __init__(self, fn=lambda item: 0.5):
        self.fn, self.seen = fn, []

    def score(self, items):
        self.seen.append(list(items))
        return [RewardResult(id=it.id, reward=self.fn(it), qa=0.0, accuracy=0.0, questions=[]) for it in items]

    def close(self):
        pass


# -- config ---------------------------------------------------------------------------------------------------------


def test_config_overrides_are_typed_and_checked(tmp_path):
    must = ["run_dir=r", "data.train=d", "model.policy=m", "reward.reader=x"]
    cfg = load_config(None, [*must, "optim.learning_rate=1e-5", "reward.service=null"])
    assert cfg.optim.learning_rate == 1e-5 and cfg.algorithm.beta == 0.0 and cfg.algorithm.advantage == "rloo"
    assert cfg.rollout.num_generations == 8 and cfg.rollout.temperature == 1.0
    assert apply_overrides({}, ["a.b.c=[1, 2]", "x=true"]) == {"a": {"b": {"c": [1, 2]}}, "x": True}
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides({}, ["novalue"])
    with pytest.raises(ValueError, match="lerning_rate"):
        load_config(None, [*must, "optim.lerning_rate=1"])
    with pytest.raises(ValueError, match="exactly one"):
        load_config(None, [*must, "reward.service=http://h:1"])
    with pytest.raises(ValueError, match="whole groups"):
        load_config(None, [*must, "optim.per_device_train_batch_size=6"])
    with pytest.raises(ValueError, match="model.policy: required"):  # no hub model is fetched by default
        load_config(None, ["run_dir=r", "data.train=d", "reward.reader=x"])


def test_shipped_configs_load():
    root = Path(__file__).resolve().parents[1] / "configs"
    names = sorted(p.name for p in root.glob("*.yaml"))
    assert {"qwen2.5-vl-3b-image.yaml", "qwen3-vl-4b-image.yaml", "qwen2.5-vl-3b-video.yaml", "demo-cpu.yaml"} <= set(
        names
    )
    for p in root.glob("*.yaml"):
        # The demo config gets its paths from the demo; the others are complete.
        extra = ["run_dir=r", "data.train=d", "model.policy=m", "reward.reader=x"] if p.name == "demo-cpu.yaml" else []
        cfg = load_config(p, extra)
        # CapRL's recipes train without a KL term; the CPU demo keeps a small one (measured: docs/train.md).
        assert cfg.algorithm.beta == (0.02 if p.name == "demo-cpu.yaml" else 0.0), p.name


# -- media: generation and log-probs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed_trainer(world, tiny_models, tmp_path_factory):
    from caprl.train.run import build_trainer

    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("mixed_run")
    cfg = _config(
        run,
        world["mixed"],
        tiny_models,
        "rollout.temperature=0.7",
        "rollout.max_completion_length=8",
        "trl={generation_kwargs: {do_sample: false}}",
    )
    return build_trainer(cfg, FixedScorer())


def _pick(trainer, modality: str, n: int) -> list[str]:
    return [i for i, it in trainer.train_data.items.items() if it.modality == modality][:n]


def _check_generation(tr, captioner_dir):
    """Greedy rollouts of a mixed batch equal TransformersCaptioner's greedy captions of the same media."""
    from caprl.captioners.base import CaptionRequest, GenerationSettings
    from caprl.captioners.transformers import TransformersCaptioner

    ids = [*_pick(tr, "video", 2), *_pick(tr, "image", 1)]
    prompts = [tr.train_data.messages(tr.train_data.items[i]) for i in ids]
    tr.model.eval()
    tr._batch_ids = ids
    try:
        _, completion_ids, *_ = tr._generate(prompts)
    finally:
        tr._batch_ids = tr._rows = None
    got = tr.processing_class.batch_decode(completion_ids, skip_special_tokens=True)
    cap = TransformersCaptioner(str(captioner_dir), batch_size=4)
    reqs = [CaptionRequest(media=tr.train_data.media(i), prompt=tr.train_data.items[i].instruction) for i in ids]
    want = cap.caption(reqs, GenerationSettings(max_new_tokens=8, temperature=0.0))
    assert [g.strip() for g in got] == [w[0] for w in want]


def _check_logps(tr):
    """The trainer's per-token log-probs for [left-padded prompt | completion] rows of videos and an image equal a
    direct, unpadded forward pass of each row with the processor's own inputs; the video content and its 3-D
    positions matter (changing the frames, or dropping the token types, changes the log-probs)."""
    model = tr.model
    model.eval()
    ids = [*_pick(tr, "video", 2), *_pick(tr, "image", 1)]
    rows = [tr.encoder.encode(tr.train_data.messages(tr.train_data.items[i]), tr.train_data.media(i)) for i in ids]
    g = torch.Generator().manual_seed(0)
    comps = [torch.randint(10, 400, (n,), generator=g).tolist() for n in (5, 3, 6)]
    pad = tr.processing_class.tokenizer.pad_token_id
    P, C = max(len(r.input_ids) for r in rows), max(len(c) for c in comps)
    input_ids = torch.full((3, P + C), pad)
    mask = torch.zeros((3, P + C), dtype=torch.long)
    for k, (r, c) in enumerate(zip(rows, comps, strict=True)):
        input_ids[k, P - len(r.input_ids) : P] = torch.tensor(r.input_ids)
        input_ids[k, P : P + len(c)] = torch.tensor(c)
        mask[k, P - len(r.input_ids) : P + len(c)] = 1
    assert len({len(r.input_ids) for r in rows}) > 1, "rows of equal length would not test the padding"
    tr._rows = rows
    try:
        with torch.no_grad():
            logps, entropies, _ = tr._get_per_token_logps_and_entropies(
                model, input_ids, mask, C, batch_size=2, compute_entropy=True
            )
    finally:
        tr._rows = None
    assert logps.shape == (3, C) and entropies.shape == (3, C)

    def direct(row, comp, media=None, with_types=True):
        seq = torch.tensor([row.input_ids + comp])
        inputs = dict(media or row.media)
        if with_types:
            inputs["mm_token_type_ids"] = torch.tensor([row.token_types + [0] * len(comp)])
        with torch.no_grad():
            logits = model(input_ids=seq, **inputs).logits[0].float() / tr.temperature
        start = len(row.input_ids) - 1
        lp = torch.log_softmax(logits[start : start + len(comp)], dim=-1)
        return lp.gather(-1, torch.tensor(comp)[:, None])[:, 0]

    for k, (r, c) in enumerate(zip(rows, comps, strict=True)):
        torch.testing.assert_close(logps[k, : len(c)], direct(r, c), atol=2e-5, rtol=1e-4)
    video = rows[0]
    flipped = dict(video.media, pixel_values_videos=video.media["pixel_values_videos"].flip(0))
    assert (direct(video, comps[0], flipped) - logps[0, :5]).abs().max() > 1e-4
    try:
        untyped = direct(video, comps[0], with_types=False)
    except ValueError:
        pass  # Qwen3-VL refuses to guess the positions
    else:
        assert (untyped - logps[0, :5]).abs().max() > 1e-4


def test_generation_sees_images_and_videos_like_the_captioner(mixed_trainer, tiny_models):
    _check_generation(mixed_trainer, tiny_models.captioner)


def test_video_logps_match_a_direct_forward_pass(mixed_trainer):
    _check_logps(mixed_trainer)


def test_qwen3_vl_videos_and_images(world, tiny_models, tmp_path):
    """The same checks on a tiny Qwen3-VL (built from a config), whose processor writes frame times into the
    prompt and whose rope is interleaved: the Qwen3-VL-4B config trains the same way."""
    from transformers import (
        AutoTokenizer,
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
    )
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    from caprl.models.chat_template import CHAT_TEMPLATE
    from caprl.train.run import build_trainer

    tok = AutoTokenizer.from_pretrained(tiny_models.reader)
    ids = {k: tok.convert_tokens_to_ids(f"<|{k}|>") for k in ("image_pad", "video_pad", "vision_start", "vision_end")}
    special = dict(bos_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    rope = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [4, 6, 6], "mrope_interleaved": True}
    text = dict(
        hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=32, vocab_size=-(-len(tok) // 64) * 64, rope_parameters=rope, **special,
    )  # fmt: skip
    vision = dict(
        depth=2, hidden_size=64, intermediate_size=128, num_heads=4, patch_size=16, spatial_merge_size=2,
        temporal_patch_size=2, out_hidden_size=128, deepstack_visual_indexes=[1], num_position_embeddings=144,
    )  # fmt: skip
    config = Qwen3VLConfig(
        text_config=text, vision_config=vision, image_token_id=ids["image_pad"], video_token_id=ids["video_pad"],
        vision_start_token_id=ids["vision_start"], vision_end_token_id=ids["vision_end"], tie_word_embeddings=True,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = Qwen3VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = tok.eos_token_id, tok.pad_token_id
    model.save_pretrained(tmp_path / "q3")
    grid = dict(patch_size=16, temporal_patch_size=2, merge_size=2)
    Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(size={"shortest_edge": 64 * 64, "longest_edge": 256 * 256}, **grid),
        video_processor=Qwen3VLVideoProcessor(
            size={"shortest_edge": 64 * 64, "longest_edge": 4 * 192 * 192},
            do_sample_frames=False,
            cap_pixels_per_frame=True,
            **grid,
        ),
        tokenizer=tok,
        chat_template=CHAT_TEMPLATE,
    ).save_pretrained(tmp_path / "q3")
    cfg = _config(
        tmp_path / "run", world["mixed"], tiny_models, f"model.policy={tmp_path / 'q3'}", "rollout.temperature=0.7",
        "trl={generation_kwargs: {do_sample: false}}",
    )  # fmt: skip
    tr = build_trainer(cfg, FixedScorer())
    video = tr.train_data.media(_pick(tr, "video", 1)[0])
    rendered = tr.processing_class.tokenizer.decode(
        tr.encoder.encode([{"role": "user", "content": "x"}], video).input_ids
    )
    assert "seconds>" in rendered  # Qwen3-VL's per-patch time markers, from the frames' real times
    _check_generation(tr, tmp_path / "q3")
    _check_logps(tr)


def test_rloo_advantages_are_leave_one_out(mixed_trainer):
    tr = mixed_trainer
    scorer = FixedScorer(lambda item: float(len(item.caption) % 7))
    tr.reward_funcs[0].scorer = scorer
    tr.model.train()
    ids = _pick(tr, "image", 2)
    rows = [
        {"prompt": tr.train_data.messages(tr.train_data.items[i]), "sample_id": i, "modality": "image"}
        for i in ids
        for _ in range(2)
    ]
    tr.num_generations = 2
    out = tr._generate_and_score_completions(rows)
    rewards = torch.tensor([float(len(it.caption) % 7) for it in scorer.seen[-1]])
    others = rewards.view(-1, 2).flip(1).reshape(-1)  # with G=2, "the others" is the one other caption
    torch.testing.assert_close(out["advantages"], rewards - others)
    assert len(out["caprl_rows"]) == 4 and "pixel_values" in out["caprl_rows"][0].media


# -- runs -----------------------------------------------------------------------------------------------------------


def test_image_run_writes_metrics_samples_checkpoints_and_weights(world, tiny_models, tmp_path, request):
    from caprl.captioners.base import CaptionRequest, GenerationSettings
    from caprl.captioners.transformers import TransformersCaptioner
    from caprl.plot import plot_run
    from caprl.train.run import train

    cfg = _config(tmp_path / "run", world["images"], tiny_models, "logging.report_to=[tensorboard]")
    result = train(cfg)
    assert result.steps == 2 and result.resumed_from is None
    records = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    for r in records:
        for key in ("reward_mean", "reward_std", "caption_tokens_mean", "reward_wait_s", "step_s", "reward_qa"):
            assert isinstance(r[key], float), key
        assert r["parse_failures"] == 0 and r["n_captions"] == 4 and len(r["sample_ids"]) == 2
        assert 0 <= r["reward_wait_s"] <= r["step_s"] and "loss" in r["trl"]
    samples = read_jsonl(tmp_path / "run" / "samples.jsonl")
    assert samples and {"id", "caption", "reward"} <= set(samples[0]["captions"][0])
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists()
    assert list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    assert "run_dir" in (tmp_path / "run" / "config.yaml").read_text()
    # The final weights load and caption through the project's own captioner (as eval and annotate load them).
    cap = TransformersCaptioner(str(result.final_dir))
    media = read_dataset(world["images"])
    from caprl.data.media import load_media

    texts = cap.caption(
        [CaptionRequest(media=load_media(media.samples[0], media.root), prompt="Describe.")],
        GenerationSettings(max_new_tokens=4),
    )
    assert len(texts) == 1
    pngs = plot_run(tmp_path / "run")
    assert [p.name for p in pngs] == ["reward.png", "length.png"] and all(p.stat().st_size > 1000 for p in pngs)

    # The finished run, run again: it says it is complete and changes nothing (no model loaded, no file touched).
    from typer.testing import CliRunner

    from caprl.cli import app

    request.getfixturevalue("no_model_loads")
    files = {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in (tmp_path / "run").rglob("*") if p.is_file()}
    again = train(cfg)
    assert again.complete_before and again.steps == 2
    args = ["train", *_overrides(tmp_path / "run", world["images"], tiny_models, "logging.report_to=[tensorboard]")]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "run complete" in out.output and "already has 2 steps" in out.output
    assert {p: (p.stat().st_mtime_ns, p.stat().st_size) for p in (tmp_path / "run").rglob("*") if p.is_file()} == files


def test_unreadable_media_is_recorded_and_skipped_not_a_crash(tmp_path, tiny_models):
    """A sample whose image cannot be decoded when its turn comes is recorded, counted and replaced in its batch
    by the next readable sample; the run goes on."""
    from caprl.synth import generate_image_dataset
    from caprl.train.run import train

    data = generate_image_dataset(4, tmp_path / "data", seed=5, progress=False)
    broken = read_dataset(data).samples[1]
    (data / broken.media.path).write_bytes(b"not a png at all")
    scorer = FixedScorer()
    cfg = _config(tmp_path / "run", data, tiny_models, "optim.max_steps=1", "optim.per_device_train_batch_size=8")
    result = train(cfg, scorer=scorer)
    assert result.steps == 1 and result.media_skipped == 1
    [failure] = read_jsonl(tmp_path / "run" / "media_errors.jsonl")
    assert failure["id"] == broken.id and failure["step"] == 1 and "not a png" not in failure["error"]
    assert broken.media.path in failure["error"]
    [record] = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert record["media_skipped"] == 1 and broken.id not in record["sample_ids"]
    # The broken sample's rows went to the next readable one (then in the batch twice): a whole batch trained.
    assert record["n_captions"] == 8 and len(record["sample_ids"]) == 3
    assert {it.id for batch in scorer.seen for it in batch} == set(record["sample_ids"])


def test_video_run_through_the_reward_service(world, tiny_models, tmp_path):
    """Videos, rewards from the HTTP service (with the timestamp term), LoRA on the language model, frozen
    vision tower."""
    from caprl.readers import load_reader
    from caprl.reward.engine import RewardEngine
    from caprl.server.serve import BackgroundServer
    from caprl.train.run import train

    with BackgroundServer(RewardEngine(load_reader(str(tiny_models.reader)))) as srv:
        cfg = _config(
            tmp_path / "run",
            world["videos"],
            tiny_models,
            "reward.reader=null",
            f"reward.service={srv.url}",
            "reward.timestamp_weight=0.2",
            "model.freeze_vision=true",
            "model.lora={r: 4, alpha: 8}",
            "optim.max_steps=1",
        )
        result = train(cfg)
    [rec] = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert rec["n_captions"] == 4 and rec["reward_timestamp"] is not None and rec["reward_mean"] is not None
    assert all(s.startswith("shapes-vid") for s in rec["sample_ids"])
    assert (result.final_dir / "config.json").exists()
    assert not list(result.final_dir.glob("adapter_*")), "LoRA must be merged into HF weights"


def test_a_reward_failure_stops_the_run(world, tiny_models, tmp_path):
    from caprl.train.run import train

    class Broken(FixedScorer):
        def score(self, items):
            raise RuntimeError("reader exploded")

    with pytest.raises(RuntimeError, match="reader exploded"):
        train(_config(tmp_path / "run", world["images"], tiny_models, "optim.max_steps=1"), scorer=Broken())
    assert not read_jsonl(tmp_path / "run" / "metrics.jsonl")


_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from transformers import TrainerCallback
    from caprl.train.config import load_config
    from caprl.train.run import train

    class KillAt(TrainerCallback):
        # SIGKILL at the start of step K+1: no cleanup, no atexit, as a pre-empted job.
        def __init__(self, step):
            self.step = step
        def on_step_begin(self, args, state, control, **kw):
            if state.global_step + 1 == self.step:
                os.kill(os.getpid(), signal.SIGKILL)

    train(load_config(sys.argv[1]), callbacks=[KillAt(int(sys.argv[2]))])
    """
)


def test_killed_run_resumes_at_its_checkpoint_with_the_same_next_batch(world, tiny_models, tmp_path):
    """Checkpoint at step 2, killed during step 4 (step 3 done but not checkpointed): the resumed run starts at step
    3 and its step 3 has the same prompts, and the same sampled captions, as the killed run's step 3."""
    from caprl.train.config import dump_config
    from caprl.train.run import train

    cfg = _config(tmp_path / "run", world["images"], tiny_models, "optim.max_steps=5", "data.max_samples=6")
    path = tmp_path / "cfg.yaml"
    path.write_text(dump_config(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", _KILLER, str(path), "4"], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    killed = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    killed_samples = read_jsonl(tmp_path / "run" / "samples.jsonl")
    assert [r["step"] for r in killed] == [1, 2, 3]
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-2").exists()
    assert not (tmp_path / "run" / "checkpoints" / "checkpoint-4").exists()

    result = train(load_config(path))
    assert result.resumed_from == 2 and result.steps == 5
    resumed = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5]
    assert resumed[:2] == killed[:2]
    assert resumed[2]["sample_ids"] == killed[2]["sample_ids"]
    samples = read_jsonl(tmp_path / "run" / "samples.jsonl")
    assert [s["step"] for s in samples] == [1, 2, 3, 4, 5]
    assert samples[2]["captions"] == killed_samples[2]["captions"]
    # Data order goes on as an uninterrupted run's would: every prompt once per pass over the 6 samples.
    seen = [sid for r in resumed[:3] for sid in r["sample_ids"]]
    assert len(seen) == len(set(seen)) == 6


def test_reward_items_carry_policy_token_counts(world, tiny_models, tmp_path):
    """The length term counts caption tokens in the policy's tokens (completion ids), not the reader's."""
    from caprl.train.data import TrainData
    from caprl.train.reward import CaptionReward

    cfg = _config(tmp_path / "run", world["images"], tiny_models)
    data = TrainData(cfg.data)
    scorer = FixedScorer()
    reward = CaptionReward(data, scorer)
    sid = next(iter(data.items))
    out = reward(
        prompts=[None, None],
        completions=[[{"role": "assistant", "content": " a red circle "}], "two squares"],
        completion_ids=[[1, 2, 3], [4, 5]],
        sample_id=[sid, sid],
    )
    assert out == [0.5, 0.5]
    items: list[RewardItem] = scorer.seen[0]
    assert [(i.caption, i.caption_tokens, i.id) for i in items] == [("a red circle", 3, sid), ("two squares", 2, sid)]
    stats = reward.take_stats()
    assert stats.sample_ids == [sid] and stats.caption_tokens == [3, 2]
    assert json.dumps(stats.captions)
