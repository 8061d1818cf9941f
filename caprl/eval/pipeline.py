"""``run_prism``: the caption (or captions-file import), read and score stages over several benchmarks, and the
report (``report.json``, ``report.md``, ``report.html``).

>>> cfg = PrismConfig(benchmarks=["shapes-image"], out="runs/eval", captioner="models/tiny/captioner",
...                   reader="models/tiny/reader")                                       # doctest: +SKIP
>>> report = run_prism(cfg, captioner=lambda: TransformersCaptioner(...), reader=...)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from caprl.eval.benchmarks import get_benchmark
from caprl.eval.caption import Progress, caption_index, run_caption_stage
from caprl.eval.config import Lazy, PrismConfig
from caprl.eval.data import DataPaths
from caprl.eval.external import import_captions
from caprl.eval.html import html_samples, write_html
from caprl.eval.profiles import scoring
from caprl.eval.read import run_read_stage
from caprl.eval.report import benchmark_report, write_report
from caprl.eval.score import run_score_stage

ModelArg = Any  # an instance, a zero-argument factory, or None


def run_prism(
    cfg: PrismConfig,
    *,
    captioner: ModelArg = None,
    reader: ModelArg = None,
    judge: ModelArg = None,
    paths: DataPaths | None = None,
    progress: Progress | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any] | None:
    """Run ``cfg.stage`` (or all stages) for every benchmark; returns the report when the score stage ran.

    Models are given as instances or factories and built only when a stage has work for them: re-reading cached
    captions never loads (or calls) the captioner.
    """
    paths = paths or DataPaths()
    say = log or (lambda _msg: None)
    benches = [get_benchmark(b) for b in cfg.benchmarks]
    for bench in benches:  # a profile that does not cover a benchmark stops the run before any work
        scoring(cfg.profile, bench.name)
    for bench in benches:  # every benchmark's data is found before any model loads or any work is done
        if not bench.builtin:
            bench.locate(paths, cfg.out)
    lazy_captioner, lazy_reader, lazy_judge = Lazy(captioner, "captioner"), Lazy(reader, "reader"), Lazy(judge, "judge")
    stages = ("caption", "read", "score") if cfg.stage == "all" else (cfg.stage,)
    reports = []
    samples = {}
    ks = []
    for bench in benches:
        items = bench.load_items(paths, cfg.out, frames=cfg.sampling(), limit=cfg.limit)
        say(f"{bench.name}: {len(items)} questions on {len({i.media_id for i in items})} media")
        run = cfg
        if cfg.captions is not None:
            # Captions written elsewhere are this run's caption stage: stored once, then read like any others.
            run = import_captions(bench, items, cfg)
            unit = "question" if run.question_aware else "medium"
            say(f"{bench.name}: {run.k} caption(s) per {unit} from {cfg.captions}")
        elif "caption" in stages:
            run_caption_stage(bench, items, run, lazy_captioner, progress)
        if "read" in stages:
            run_read_stage(bench, items, run, lazy_reader, progress)
        if "score" in stages:
            outcome = run_score_stage(bench, items, run, lazy_judge, progress=progress)
            other = None
            if run.compare:
                other = run_score_stage(bench, items, run, lazy_judge, captioner=run.compare, progress=progress)
            reports.append(
                benchmark_report(
                    bench,
                    outcome.scores,
                    k=run.k,
                    n_boot=run.bootstrap,
                    seed=run.seed,
                    other=None if other is None else other.scores,
                    other_name=run.compare,
                    judge_failures=outcome.judge_failures,
                    profile=run.profile,
                    aggregate=scoring(run.profile, bench.name).aggregate,
                )
            )
            if bench.caption_check is not None and not run.question_aware:
                index = caption_index(bench, items, run, outcome.captioner)
                captions = {u: [r.caption for r in recs if r and r.caption is not None] for u, recs in index.items()}
                reports[-1]["truth"] = bench.caption_check(bench.locate(paths, cfg.out), captions)
            samples[bench.name] = html_samples(bench, items, run, outcome, other)
            ks.append(run.k)
    if not reports:
        return None
    config = cfg.model_dump(mode="json")
    if len(set(ks)) == 1:  # captions from a file: k is what the file holds
        config["k"] = ks[0]
    report = {"config": config, "benchmarks": reports}
    write_report(report, cfg.out)
    write_html(report, samples, cfg.out)
    return report
