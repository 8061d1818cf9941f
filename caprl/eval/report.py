"""The Prism report: per benchmark and category, M_Acc (mean over the k captions of each question, then over
questions: the paper's number), BoN@k (a question counts as right when its best caption is), the parse-failure
rate, a 95% bootstrap interval clustered by medium, the no-caption baseline and, optionally, a paired comparison
with a second captioner. Written as ``OUT/report.json`` and ``OUT/report.md``; ``rich_table`` renders it.

Scores are on the metric's own scale: fractions for accuracies, ANLS and IoU (shown as percentages), 0-3 for
MMBench-Video's judge score (shown as is).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from caprl.data.io import atomic_write
from caprl.eval.benchmarks.base import Benchmark
from caprl.eval.stats import cluster_bootstrap
from caprl.eval.types import ItemScore, category_list


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def summarise(scores: Sequence[ItemScore], *, n_boot: int, seed: int) -> dict[str, Any]:
    """The figures of one set of questions (a benchmark, or one of its categories)."""
    m = [float(np.mean(s.scores)) for s in scores]
    parsed = [p for s in scores for p in s.parsed]
    blind = [s.blind for s in scores if s.blind is not None]
    out: dict[str, Any] = {
        "n": len(scores),
        "n_media": len({s.media_id for s in scores}),
        "m_acc": _mean(m),
        "bon": _mean([max(s.scores) for s in scores]),
        "ci95": cluster_bootstrap(m, [s.media_id for s in scores], n_boot=n_boot, seed=seed),
        "parse_failure_rate": 1.0 - float(np.mean(parsed)) if parsed else None,
        "no_caption_acc": _mean(blind) if blind else None,
        "caption_errors": sum(s.caption_errors for s in scores),
    }
    extras = sorted({name for s in scores for name in s.extras})
    if extras:
        out["extras"] = {name: _mean([float(np.mean(s.extras[name])) for s in scores]) for name in extras}
    return out


def profiled(summary: dict[str, Any], scores: Sequence[ItemScore], how: str, *, n_boot: int, seed: int) -> None:
    """Replace M_Acc, BoN, the no-caption figure and the interval with the profile's aggregate (e.g. lmms-eval's
    mean of L2-category means); the plain mean over questions stays as ``m_acc_questions``."""
    from caprl.eval.profiles import aggregate_bootstrap, aggregate_figures

    summary["m_acc_questions"] = summary["m_acc"]
    summary.update(aggregate_figures(scores, how))  # type: ignore[arg-type]
    summary["ci95"] = aggregate_bootstrap(scores, how, n_boot=n_boot, seed=seed)  # type: ignore[arg-type]


def compare(a: Sequence[ItemScore], b: Sequence[ItemScore], *, name_b: str, n_boot: int, seed: int) -> dict[str, Any]:
    """Paired comparison on the questions both captioners were scored on: M_Acc(a) - M_Acc(b) with a clustered
    bootstrap interval of the per-question differences."""
    by_id = {s.question_id: s for s in b}
    pairs = [(s, by_id[s.question_id]) for s in a if s.question_id in by_id]
    diffs = [float(np.mean(x.scores) - np.mean(y.scores)) for x, y in pairs]
    return {
        "captioner": name_b,
        "n": len(pairs),
        "m_acc": _mean([float(np.mean(y.scores)) for _, y in pairs]),
        "diff": _mean(diffs),
        "diff_ci95": cluster_bootstrap(diffs, [x.media_id for x, _ in pairs], n_boot=n_boot, seed=seed),
    }


def benchmark_report(
    bench: Benchmark,
    scores: Sequence[ItemScore],
    *,
    k: int,
    n_boot: int = 2000,
    seed: int = 0,
    other: Sequence[ItemScore] | None = None,
    other_name: str | None = None,
    judge_failures: int = 0,
    profile: str = "caprl",
    aggregate: str = "mean",
) -> dict[str, Any]:
    report = {
        "benchmark": bench.name,
        "title": bench.title,
        "metric": bench.metric.name,
        "scale": bench.metric.scale,
        "k": k,
        **summarise(scores, n_boot=n_boot, seed=seed),
        "judge_failures": judge_failures,
        "profile": profile,
        "aggregate": aggregate,
    }
    if aggregate != "mean":
        profiled(report, scores, aggregate, n_boot=n_boot, seed=seed)
    by_cat: dict[str, list[ItemScore]] = defaultdict(list)
    for s in scores:
        for c in category_list(s.category) or ["-"]:
            by_cat[c].append(s)
    if len(by_cat) > 1:
        report["categories"] = {c: summarise(v, n_boot=n_boot, seed=seed) for c, v in sorted(by_cat.items())}
        if aggregate != "mean":
            for c, v in by_cat.items():
                profiled(report["categories"][c], v, aggregate, n_boot=n_boot, seed=seed)
    if other is not None:
        report["compare"] = compare(scores, other, name_b=other_name or "other", n_boot=n_boot, seed=seed)
    return report


# ------------------------------------------------------------------------------------------------- rendering


def fmt(value: float | None, scale: float) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}" if scale == 1 else f"{value:.2f}"


def fmt_ci(ci: Sequence[float] | None, scale: float) -> str:
    return "-" if ci is None else f"[{fmt(ci[0], scale)}, {fmt(ci[1], scale)}]"


def rows(report: dict[str, Any]) -> list[list[str]]:
    """Table rows: one per benchmark (and per category beneath it)."""
    out = []
    for b in report["benchmarks"]:
        s = b["scale"]
        pf = b["parse_failure_rate"]
        out.append(
            [
                b["benchmark"],
                str(b["n"]),
                fmt(b["m_acc"], s),
                fmt_ci(b["ci95"], s),
                fmt(b["bon"], s),
                fmt(b["no_caption_acc"], s),
                "-" if pf is None else f"{100 * pf:.1f}%",
            ]
        )
        for name, c in (b.get("categories") or {}).items():
            pf = c["parse_failure_rate"]
            out.append(
                [
                    f"  {name}",
                    str(c["n"]),
                    fmt(c["m_acc"], s),
                    fmt_ci(c["ci95"], s),
                    fmt(c["bon"], s),
                    fmt(c["no_caption_acc"], s),
                    "-" if pf is None else f"{100 * pf:.1f}%",
                ]
            )
    return out


def columns(k: int) -> list[str]:
    return ["benchmark", "n", "M_Acc", "95% CI", f"BoN@{k}", "no caption", "parse fail"]


def caption_error_lines(report: dict[str, Any]) -> list[str]:
    """One line per benchmark with captions that failed (their media could not be read). Such a caption scores its
    questions as wrong, so M_Acc is lower than the captioner's: the line goes wherever M_Acc is shown."""
    out = report["config"].get("out", "OUT")
    lines = []
    for b in report["benchmarks"]:
        if b.get("caption_errors"):
            k = b.get("k") or report["config"]["k"]  # with a captions file, k is per benchmark
            lines.append(
                f"{b['benchmark']}: {b['caption_errors']} of {b['n'] * k} captions failed (media could not be "
                f"read) and count as wrong answers in M_Acc; errors in {out}/{b['benchmark']}/captions.jsonl"
            )
    return lines


TRUTH_ATTRIBUTES = ("colour", "shape", "size", "cell", "label", "count", "event", "time", "title")


def truth_columns() -> list[str]:
    return ["benchmark", "statements/caption", "precision", "recall", "hallucinating captions",
            "invented objects/caption", "unread", "precision by attribute"]  # fmt: skip


def truth_rows(report: dict[str, Any]) -> list[list[str]]:
    """One row per benchmark whose captions were checked statement by statement (the shapes world), in %."""
    out = []
    for b in report["benchmarks"]:
        t = b.get("truth")
        if not t:
            continue
        by = t["precision_by_attribute"]
        attrs = ", ".join(f"{a} {fmt(by[a], 1)}" for a in TRUTH_ATTRIBUTES if by.get(a) is not None)
        per = t["statements_per_caption"]
        inv = t["invented_objects_per_caption"]
        out.append([
            b["benchmark"], "-" if per is None else f"{per:.1f}", fmt(t["precision"], 1), fmt(t["recall"], 1),
            fmt(t["hallucination_rate"], 1), "-" if inv is None else f"{inv:.2f}", fmt(t["unread_share"], 1),
            attrs or "-",
        ])  # fmt: skip
    return out


TRUTH_NOTE = (
    "Caption truth: every sentence checked against the scene graph (caprl.synth.truth); precision = true "
    "statements / statements read, recall = share of the scene's facts stated, hallucinating = captions with a "
    "false object statement; unread sentences are counted apart, never as true."
)


def markdown(report: dict[str, Any]) -> str:
    cfg = report["config"]
    head = columns(cfg["k"])
    lines = [
        "# Prism evaluation",
        "",
        f"- captioner: `{cfg['captioner']}`",
        f"- reader: `{cfg['reader']}` ({cfg['read_mode']} mode)",
        f"- captions per medium: {cfg['k']} (temperature {cfg['temperature']:g}); 95% CI: bootstrap over media"
        if not cfg.get("captions")
        else f"- captions: {cfg['k']} per unit, read from `{cfg['captions']}`; 95% CI: bootstrap over media",
        "- scores in % (MMBench-Video: judge score 0-3)",
        f"- scoring profile: `{cfg.get('profile', 'caprl')}`",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows(report)]
    errors = caption_error_lines(report)
    if errors:
        lines += ["", "**Caption errors:**", ""] + [f"- {e}" for e in errors]
    truth = truth_rows(report)
    if truth:
        head = truth_columns()
        align = "|".join("---" if i in (0, len(head) - 1) else "---:" for i in range(len(head)))
        lines += ["", TRUTH_NOTE + " In %.", "", "| " + " | ".join(head) + " |", "|" + align + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in truth]
    extras = [(b["benchmark"], b["extras"], b["scale"]) for b in report["benchmarks"] if b.get("extras")]
    if extras:
        lines += ["", "Secondary metrics (M over k captions):", ""]
        for name, values, scale in extras:
            lines.append(f"- {name}: " + ", ".join(f"{k} {fmt(v, scale)}" for k, v in values.items()))
    comps = [b for b in report["benchmarks"] if b.get("compare")]
    if comps:
        lines += [
            "",
            "| benchmark | vs captioner | n | M_Acc (other) | difference | 95% CI |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for b in comps:
            c, s = b["compare"], b["scale"]
            lines.append(
                f"| {b['benchmark']} | `{c['captioner']}` | {c['n']} | {fmt(c['m_acc'], s)} | "
                f"{fmt(c['diff'], s)} | {fmt_ci(c['diff_ci95'], s)} |"
            )
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    js, md = out / "report.json", out / "report.md"
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    atomic_write(js, lambda p: p.write_text(text, encoding="utf-8"))
    atomic_write(md, lambda p: p.write_text(markdown(report), encoding="utf-8"))
    return js, md


def truth_table(report: dict[str, Any]):
    """The caption-truth figures as a rich Table, or None when no benchmark checked its captions."""
    from rich.table import Table

    rows_ = truth_rows(report)
    if not rows_:
        return None
    table = Table(title="Caption truth (%): statements checked against the scene graph")
    for i, col in enumerate(truth_columns()):
        table.add_column(col, justify="left" if i in (0, 7) else "right")
    for r in rows_:
        table.add_row(*r)
    return table


def rich_table(report: dict[str, Any]):
    from rich.table import Table

    errors = sum(b.get("caption_errors") or 0 for b in report["benchmarks"])
    table = Table(
        title=f"Prism: {report['config']['captioner']} read by {report['config']['reader']}",
        caption=f"{errors} captions failed and count as wrong: see below" if errors else None,
    )
    for i, col in enumerate(columns(report["config"]["k"])):
        table.add_column(col, justify="left" if i == 0 else "right")
    for r in rows(report):
        table.add_row(*r, style="dim" if r[0].startswith("  ") else None)
    return table
