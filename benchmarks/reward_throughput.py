"""Reward throughput: the CapRL-style generate path against our letter-scoring path with prefix sharing.

One reader, the same captions and questions, measured side by side in one run:

(a) CapRL-style: every (caption, question) prompt written out in full and sent through ONE batched
    ``model.generate`` call (the reference makes one vLLM engine call), temperature 0.6, 10 new tokens, the first
    capital A-I of the output taken as the answer. ``min_new_tokens=10`` forces exactly 10 decoded tokens: a
    random-weight model may emit an end token early, which would make (a) look cheaper than the reference's
    trained reader, whose answers run to the 10-token cap or close to it. Plain temperature sampling (top-k and
    top-p off), as the reference's ``SamplingParams(temperature=0.6, max_tokens=10)``.
(b) ours: ``TransformersReader.score_letters``: one forward per question and no decode loop; the prompts' prefix
    tree computed once (the part every prompt shares once, each caption once, packed with its questions in one
    row under a custom attention mask); the vocabulary projection only at the answer positions.
Also timed (first prompt set only): (b) with ``share_prefix=False`` (plain right-padded batches).

Two prompt sets, the same for (a) and (b): "zero-shot", the project's default reader prompt (instruction,
caption, question, options), and "two-shot", CapRL-like, with two worked examples before the real question (the
reference's prompt has two; its pre-filled assistant lead-in is left out: prompts end with the chat template's
generation prompt). ``speedup`` / ``flops_fraction`` in the JSON are the zero-shot figures; ``*_two_shot`` the other.

Reader: a Qwen2-architecture model built from a config (random weights, seeded): hidden 512, 8 layers, 8 query /
2 key-value heads of dim 64, MLP 2048, tied embeddings of 32768 rows (47M parameters). Tokenizer: the project's
locally trained byte-level BPE (caprl.models.train_tokenizer, about 900 tokens trained on shapes-world text), with
the embedding padded far past it to a realistic vocabulary size: both paths pay for the full 32768-row softmax.
Captions: exhaustive shapes-world captions of scenes with 6-9 objects (about 180-280 tokens); all their MCQs
(6-8 each), options shuffled with the reference's "cannot be answered" option appended; prompts from
``caprl.reward.prompt``.

FLOPs, counted as useful work only (no padding, no masked-out attention), for either path:
    2 * P_layer * L * T                  the decoder's linear layers (q, k, v, o, gate, up, down weights: P_layer
                                         parameters per layer, L layers) over the T tokens computed
  + 4 * n_heads * head_dim * L * K       attention, QK^T and PV, over the K (query, key) pairs the causal mask
                                         allows: a token at position p sees p + 1 keys
  + 2 * hidden * vocab * Q               the lm_head, at the Q positions whose next token is wanted
For (b), T counts each node of the prefix tree once (what it computes); for (a), every prompt in full plus 9 decode
steps (Q = 10 per prompt). Norms, rotary embeddings and activations are not counted. The achieved FLOP/s is
compared with ``torch.matmul`` FLOP/s measured in the same run, fp32, same threads, on the model's own linear
shapes weighted as one decoder layer uses them (best of the measurements taken before and after each prompt set:
other work on a shared machine only lowers it).

Usage: .venv/bin/python benchmarks/reward_throughput.py [--captions 32] [--repeats 2] [--threads 1] [--quick]
       [--reader qwen2.5-coder-1.5b-instruct --dtype bfloat16]   (a real pretrained reader instead)
On a shared machine ``--threads 1`` gives stable figures: with two threads, every op waits for whichever thread
the scheduler parked (benchmarks/RESULTS.md). The last line printed is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks._common import machine, matmul_flops, packed_flops, timed  # noqa: E402

FIRST_LETTER = re.compile(r"[A-I]")


def build_reader_model(tokenizer, *, hidden: int, layers: int, intermediate: int, vocab: int, seed: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from caprl.models.tiny import generation_config

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ("<|endoftext|>", "<|im_end|>")}
    config = Qwen2Config(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=hidden // 64,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
        tie_word_embeddings=True,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2ForCausalLM(config).eval()
    model.generation_config = generation_config(tokenizer)
    return model


def build_questions(n_captions: int, seed: int):
    """(caption, ShuffledMCQ) pairs, questions of one caption next to each other."""
    from caprl.reward.options import DEFAULT_UNANSWERABLE, shuffle_options
    from caprl.synth import item_seed, make_captions, make_image_scene, make_mcqs

    rng = random.Random(seed)
    pairs = []
    for i in range(n_captions):
        scene = make_image_scene(item_seed(seed, i, "image"), min_objects=6, max_objects=9)
        mcqs, _ = make_mcqs(scene)
        caption = make_captions(scene)["exhaustive"]
        for mcq in mcqs:
            pairs.append((caption, shuffle_options(mcq, rng, unanswerable=DEFAULT_UNANSWERABLE)))
    return pairs


def caprl_style(model, tokenizer, prompts, *, temperature: float = 0.6, max_new_tokens: int = 10) -> list:
    """Path (a): every prompt in full, one batched generate, first capital A-I of each output."""
    texts = [tokenizer.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in prompts]
    enc = tokenizer(texts, add_special_tokens=False, padding=True, padding_side="left", return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(
            **enc,
            do_sample=True,
            temperature=temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
        )
    new = out[:, enc["input_ids"].shape[1] :]
    assert new.shape[1] == max_new_tokens, new.shape
    answers = []
    for text in tokenizer.batch_decode(new, skip_special_tokens=True):
        m = FIRST_LETTER.search(text)
        answers.append(m.group(0) if m else None)
    return answers


def useful_flops(reader, token_ids) -> dict[str, float]:
    """FLOPs of path (b) by the formula in the module docstring, from the reader's own packed rows."""
    return packed_flops(reader.model, token_ids, reader.plan(token_ids))


def caprl_flops(model, token_ids, new_tokens: int) -> dict[str, float]:
    """Useful FLOPs of path (a), same formula: every prompt in full (padding not counted), then ``new_tokens - 1``
    decode steps (the last sampled token needs no forward), the lm_head once per sampled token."""
    cfg = model.config
    head_dim = cfg.hidden_size // cfg.num_attention_heads
    layer_params = sum(p.numel() for p in model.model.layers[0].parameters() if p.ndim == 2)
    tokens = pairs = 0
    for ids in token_ids:
        n = len(ids) + new_tokens - 1
        tokens += n
        pairs += n * (n + 1) // 2
    return _flops(cfg, layer_params, head_dim, tokens, pairs, answers=len(token_ids) * new_tokens)


def _flops(cfg, layer_params: int, head_dim: int, tokens: int, pairs: int, answers: int) -> dict[str, float]:
    n_layers = cfg.num_hidden_layers
    linear = 2.0 * layer_params * n_layers * tokens
    attention = 4.0 * cfg.num_attention_heads * head_dim * n_layers * pairs
    head = 2.0 * cfg.hidden_size * cfg.vocab_size * answers
    total = linear + attention + head
    return {"tokens": tokens, "linear": linear, "attention": attention, "lm_head": head, "total": total}


def two_shot_template(seed: int):
    """A CapRL-like prompt: the instruction and two worked examples (shapes-world scenes outside the benchmark's),
    each with the "cannot be answered" option, before the real question."""
    from caprl.reward.options import DEFAULT_UNANSWERABLE
    from caprl.reward.prompt import FewShotExample, PromptTemplate
    from caprl.schema import LETTERS
    from caprl.synth import item_seed, make_captions, make_image_scene, make_mcqs

    examples = []
    for i in range(2):
        scene = make_image_scene(item_seed(seed + 1000, i, "image"), min_objects=2, max_objects=4)
        mcq = make_mcqs(scene)[0][0]
        options = (*mcq.options, DEFAULT_UNANSWERABLE)
        examples.append(FewShotExample(make_captions(scene)["detailed"], mcq.question, options, LETTERS[mcq.gold]))
    return PromptTemplate(few_shot=tuple(examples))


def run_config(label, template, model, tokenizer, pairs, args, extras: bool) -> dict:
    """Time (a) and (b) side by side on one prompt template; (a) and (b) alternate when repeated."""
    import os

    from caprl.readers.base import LetterQuery
    from caprl.readers.transformers import TransformersReader
    from caprl.reward.prompt import build_messages

    prompts = [build_messages(c, m, template=template) for c, m in pairs]
    queries = [LetterQuery(p, m.letters) for p, (_, m) in zip(prompts, pairs, strict=True)]
    n = len(queries)
    reader = TransformersReader.from_model(model, tokenizer, name="bench", batch_tokens=args.batch_tokens)
    token_ids = reader.encode(prompts)
    lengths = [len(t) for t in token_ids]
    print(f"[{label}] {n} prompts of {min(lengths)}-{max(lengths)} tokens (mean {sum(lengths) / n:.0f})", flush=True)

    # Warm-up: first calls pay one-off costs (allocator, kernels) on both paths.
    caprl_style(model, tokenizer, prompts[:4], max_new_tokens=2)
    reader.score_letters(queries[:8])

    times: dict[str, list[float]] = {"caprl_generate": [], "ours": [], "ours_no_sharing": []}
    answers = None
    load = []
    scores = None
    for _ in range(args.repeats):
        load.append(os.getloadavg()[0])
        if not args.skip_caprl:
            t, answers = timed(lambda: caprl_style(model, tokenizer, prompts))
            times["caprl_generate"].append(t)
        reader.share_prefix = True
        t, scores = timed(lambda: reader.score_letters(queries))
        times["ours"].append(t)
        if extras:
            reader.share_prefix = False
            times["ours_no_sharing"].append(timed(lambda: reader.score_letters(queries))[0])
            reader.share_prefix = True
        load.append(os.getloadavg()[0])
    assert scores is not None and len(scores) == n
    best = {k: min(v) for k, v in times.items() if v}
    reader.share_prefix = True
    flops_b = useful_flops(reader, token_ids)
    flops_a = caprl_flops(model, token_ids, new_tokens=10)
    return {
        "label": label,
        "n": n,
        "lengths": lengths,
        "best": best,
        "flops_b": flops_b,
        "flops_a": flops_a,
        "padded_a": n * max(lengths),
        "unparsed_a": None if answers is None else sum(a is None for a in answers),
        "load": load,
    }


def report(res: dict, matmul: float) -> dict:
    n, best = res["n"], res["best"]
    t_a, t_b = best.get("caprl_generate"), best["ours"]
    fa, fb = res["flops_a"], res["flops_b"]
    labels = {
        "caprl_generate": "(a) CapRL-style generate",
        "ours": "(b) ours: letters, prefix tree",
        "ours_no_sharing": "    ours without prefix sharing",
    }
    print()
    print(f"[{res['label']}] {n} questions; load average during the runs {', '.join(f'{x:.1f}' for x in res['load'])}")
    print(f"{'path':<34}{'seconds':>9}{'questions/s':>13}{'vs (a)':>9}{'GFLOP/s':>9}")
    for key, seconds in best.items():
        flops = fa["total"] if key == "caprl_generate" else fb["total"] if key == "ours" else None
        rate = f"{flops / seconds / 1e9:>9.1f}" if flops else f"{'':>9}"
        ratio = f"{t_a / seconds:>8.1f}x" if t_a else f"{'':>9}"
        print(f"{labels[key]:<34}{seconds:>9.2f}{n / seconds:>13.2f}{ratio}{rate}")
    print(
        f"(a) useful work: {fa['tokens']} tokens ({res['padded_a']} prompt tokens once padded), "
        f"{fa['total'] / 1e9:.0f} GFLOP; (b): {fb['tokens']} tokens, {fb['total'] / 1e9:.0f} GFLOP "
        f"(linear {fb['linear'] / 1e9:.0f}, attention {fb['attention'] / 1e9:.0f}, lm_head {fb['lm_head'] / 1e9:.1f})"
    )
    if res["unparsed_a"] is not None:
        print(f"(a) outputs with no letter A-I to parse (random weights): {res['unparsed_a']} of {n}")
    achieved = fb["total"] / t_b
    print(f"(b) achieved {achieved / 1e9:.1f} GFLOP/s = {achieved / matmul:.0%} of the measured matmul FLOP/s")
    out = {
        "speedup": round(t_a / t_b, 2) if t_a else None,
        "flops_fraction": round(achieved / matmul, 3),
        "qps_caprl_generate": round(n / t_a, 2) if t_a else None,
        "qps_ours": round(n / t_b, 2),
        "work_ratio": round(fa["total"] / fb["total"], 2),
        "achieved_gflops": round(achieved / 1e9, 2),
        "achieved_gflops_caprl": round(fa["total"] / t_a / 1e9, 2) if t_a else None,
        "mean_prompt_tokens": round(sum(res["lengths"]) / n, 1),
    }
    if "ours_no_sharing" in best:
        out["qps_ours_no_sharing"] = round(n / best["ours_no_sharing"], 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--captions", type=int, default=32)
    ap.add_argument("--reader", help="a real reader (catalog name, folder, .gguf) instead of the random-weight one")
    ap.add_argument("--dtype", default="float32", help="with --reader: float32 | bfloat16")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--layers", type=int, default=8)
    ap.add_argument("--intermediate", type=int, default=2048)
    ap.add_argument("--vocab", type=int, default=32768)
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=1, help="timed runs of each path, alternating; best reported")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's, = cores)")
    ap.add_argument("--prompts", choices=["zero-shot", "two-shot", "both"], default="both")
    ap.add_argument("--skip-caprl", action="store_true", help="time only (b): a quick FLOP-fraction check")
    ap.add_argument("--no-extras", action="store_true", help="skip the no-sharing variant of (b)")
    ap.add_argument("--quick", action="store_true", help="8 captions, for a smoke run")
    args = ap.parse_args()
    if args.quick:
        args.captions = 8
    if args.threads:
        torch.set_num_threads(args.threads)

    from caprl.models import train_tokenizer
    from caprl.reward.prompt import PromptTemplate

    if args.reader:
        # A real pretrained reader (catalog name, folder or .gguf), in the dtype the matmul reference uses.
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from caprl.store.resolve import resolve_model

        folder = resolve_model(args.reader)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=getattr(torch, args.dtype)).eval()
    else:
        tokenizer = train_tokenizer()
        model = build_reader_model(
            tokenizer,
            hidden=args.hidden,
            layers=args.layers,
            intermediate=args.intermediate,
            vocab=args.vocab,
            seed=args.seed,
        )
    n_params = sum(p.numel() for p in model.parameters())
    pairs = build_questions(args.captions, args.seed)
    caption_tokens = [len(tokenizer.encode(c)) for c in dict.fromkeys(c for c, _ in pairs)]
    print(f"machine: {machine()}")
    c = model.config
    print(
        f"reader: {args.reader or 'random Qwen2'}: hidden {c.hidden_size}, {c.num_hidden_layers} layers, MLP "
        f"{c.intermediate_size}, {c.vocab_size} vocabulary rows, {n_params / 1e6:.1f}M parameters, {model.dtype} "
        f"(tokenizer: {len(tokenizer)} tokens)"
    )
    print(
        f"data: {args.captions} captions of {min(caption_tokens)}-{max(caption_tokens)} tokens "
        f"(mean {sum(caption_tokens) / len(caption_tokens):.0f}), {len(pairs)} questions"
    )

    cfg = model.config
    h, kv = cfg.hidden_size, cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    m, f = 4096, cfg.intermediate_size
    shapes = [(m, h, h), (m, h, kv), (m, h, kv), (m, h, h), (m, h, f), (m, h, f), (m, f, h)]
    measured = []

    def measure_matmul() -> dict:
        mm = matmul_flops(shapes, dtype=model.dtype)
        measured.append(mm)
        print(
            f"torch.matmul, {model.dtype}, {torch.get_num_threads()} threads, the model's linear shapes (M={m}) as one "
            f"layer uses them: {mm['combined'] / 1e9:.1f} GFLOP/s (best shape {mm['peak'] / 1e9:.1f})",
            flush=True,
        )
        return mm

    measure_matmul()

    configs = []
    if args.prompts in ("zero-shot", "both"):
        configs.append(("zero-shot", PromptTemplate()))
    if args.prompts in ("two-shot", "both"):
        configs.append(("two-shot", two_shot_template(args.seed)))
    summary: dict = {}
    results = []
    for k, (label, template) in enumerate(configs):
        results.append(run_config(label, template, model, tokenizer, pairs, args, extras=k == 0 and not args.no_extras))
        measure_matmul()
    mm = {key: max(x[key] for x in measured) for key in ("combined", "peak")}
    print(f"\nmatmul reference (best of {len(measured)} measurements): {mm['combined'] / 1e9:.1f} GFLOP/s")
    for res in results:
        label = res["label"]
        figures = report(res, mm["combined"])
        suffix = "" if not summary else f"_{label.replace('-', '_')}"
        summary.update({f"{k}{suffix}": v for k, v in figures.items()})
        summary.setdefault("prompt", label)
    summary.update(
        {
            "matmul_gflops": round(mm["combined"] / 1e9, 2),
            "matmul_gflops_each": [round(x["combined"] / 1e9, 1) for x in measured],
            "matmul_peak_gflops": round(mm["peak"] / 1e9, 2),
            "questions": len(pairs),
            "captions": args.captions,
            "params_m": round(n_params / 1e6, 1),
            "threads": torch.get_num_threads(),
            "cpu": machine()["cpu"],
        }
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
