"""``OUT/report.html``: the report to look at. One self-contained page (styles, script and media inlined, nothing
fetched): per benchmark the scores with their intervals (and per category, and the paired comparison), then a
stable sample of questions, each with its image (or frames of its video), the question and options, every caption,
the reader's answer to each (with its letter probabilities) and whether it was right, and the answer with no
caption; with ``--compare`` the two captioners side by side.

``html_samples`` gathers what a sample shows while the score stage's results are at hand; ``write_html`` renders
the page from the report and those samples.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from html import escape
from pathlib import Path
from typing import Any

from PIL import Image

from caprl.data.io import atomic_write
from caprl.data.media import MediaError, target_times
from caprl.eval.benchmarks.base import Benchmark
from caprl.eval.caption import caption_index, unit_id
from caprl.eval.config import PrismConfig
from caprl.eval.media import load_unit_media
from caprl.eval.report import TRUTH_NOTE, columns, fmt, fmt_ci, rows, truth_columns, truth_rows
from caprl.eval.score import ScoreOutcome
from caprl.eval.types import EvalItem, stable_id
from caprl.schema import LETTERS, FrameSampling, ImageMedia, VideoMedia

THUMB_PX = 320
VIDEO_FRAMES = 4


# ------------------------------------------------------------------------------------------------- gathering


def _jpeg_uri(image: Image.Image) -> str:
    image = image.convert("RGB")
    image.thumbnail((THUMB_PX, THUMB_PX))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _seek_frames(path: Path, clip: tuple[float, float] | None) -> tuple[list[Image.Image], list[float]]:
    """A few frames spread over the video (or its clip), each found by seeking: the report must not decode whole
    hour-long videos to show four thumbnails."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000
        else:
            raise ValueError("the video does not say how long it is")
        start, end = clip if clip else (0.0, duration)
        spread = FrameSampling(num_frames=VIDEO_FRAMES, max_frames=VIDEO_FRAMES)
        images, times = [], []
        for t in (start + x for x in target_times(max(end - start, 1e-3), spread)):
            container.seek(int(t / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is None or frame.time >= t - 1e-3:
                    images.append(frame.to_image())
                    times.append(round(float(frame.time if frame.time is not None else t), 1))
                    break
    if not images:
        raise ValueError("no frame could be decoded")
    return images, times


def _view(item: EvalItem) -> dict[str, Any]:
    clip = item.extra.get("clip")
    clip = (float(clip[0]), float(clip[1])) if clip else None
    if isinstance(item.media, ImageMedia):
        return {"images": [_jpeg_uri(load_unit_media(item.media))], "times": []}
    assert isinstance(item.media, VideoMedia)
    path = Path(item.media.path)
    if path.is_dir():  # a folder of frames: reading a few of them is cheap
        few = item.media.model_copy(
            update={"sampling": FrameSampling(num_frames=VIDEO_FRAMES, max_frames=VIDEO_FRAMES)}
        )
        frames = load_unit_media(few, clip)
        images, times = [Image.fromarray(f) for f in frames.frames], [round(t, 1) for t in frames.timestamps]
    elif not path.is_file():
        raise MediaError("video file not found", path=path)
    else:
        images, times = _seek_frames(path, clip)
    return {"images": [_jpeg_uri(i) for i in images], "times": times}


def media_view(item: EvalItem, cache: Path | None = None) -> dict[str, Any]:
    """Thumbnails of the item's image, or a few frames of its video (of its clip) with their times; cached under
    ``cache`` by medium, so re-scoring does not decode the media again. A medium that cannot be shown says why."""
    key = stable_id(item.media.model_dump_json(), item.extra.get("clip"), THUMB_PX, VIDEO_FRAMES)
    path = None if cache is None else cache / f"{key}.json"
    if path is not None and path.is_file():
        return json.loads(path.read_text())
    import av

    try:
        view = _view(item)
    except (MediaError, OSError, ValueError, IndexError, av.error.FFmpegError) as exc:
        return {"images": [], "times": [], "error": str(exc)}
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda p: p.write_text(json.dumps(view)))
    return view


def _answers(item: EvalItem, outcome: ScoreOutcome, captions: Sequence[Any], scores: Sequence[float]) -> list[dict]:
    out = []
    for j, rec in enumerate(captions):
        read = outcome.reads.get((item.id, j))
        out.append(
            {
                "caption": None if rec is None else rec.caption,
                "caption_error": None if rec is None else rec.error,
                "output": None if read is None else read.output,
                "prediction": outcome.predictions.get((item.id, j)),
                "probs": None if read is None else read.probs,
                "score": scores[j],
            }
        )
    return out


def html_samples(
    bench: Benchmark,
    items: Sequence[EvalItem],
    cfg: PrismConfig,
    outcome: ScoreOutcome,
    other: ScoreOutcome | None = None,
) -> list[dict[str, Any]]:
    """The report's sample of ``cfg.html_items`` questions (the same ones on every run: a stable hash order)."""
    picked = sorted(items, key=lambda i: stable_id(bench.name, "html", i.id))[: cfg.html_items]
    if not picked:
        return []
    sides = [(outcome, caption_index(bench, picked, cfg, outcome.captioner))]
    if other is not None:
        sides.append((other, caption_index(bench, picked, cfg, other.captioner)))
    by_question = [{s.question_id: s for s in side.scores} for side, _ in sides]
    samples = []
    for item in picked:
        blind_read = outcome.reads.get((item.id, -1))
        samples.append(
            {
                "id": item.id,
                "media_name": item.media_name or item.media_id,
                "category": item.category,
                "question": item.question,
                "options": item.options,
                "gold": item.gold_letter if item.is_mcq else (item.answers or None),
                "span": item.span,
                "media": media_view(item, cfg.out / "media" / "thumbs"),
                "sides": [
                    {
                        "captioner": side.captioner,
                        "answers": _answers(item, side, index[unit_id(item, cfg)], by_question[n][item.id].scores),
                    }
                    for n, (side, index) in enumerate(sides)
                ],
                "blind": None
                if blind_read is None
                else {
                    "output": blind_read.output,
                    "prediction": outcome.predictions.get((item.id, -1)),
                    "probs": blind_read.probs,
                    "score": by_question[0][item.id].blind,
                },
            }
        )
    return samples


# ------------------------------------------------------------------------------------------------- rendering

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2330;background:#f4f5f8}
header{background:#1d2330;color:#fff;padding:18px 28px}header h1{margin:0 0 4px;font-size:22px}
header p{margin:2px 0;color:#c8cdd8}nav a{color:#9cc3ff;margin-right:14px}
section{margin:22px 28px;background:#fff;border-radius:8px;padding:16px 20px;box-shadow:0 1px 3px #0002}
h2{margin:0 0 10px}table{border-collapse:collapse;margin:8px 0 14px}
td,th{padding:3px 10px;border-bottom:1px solid #e3e6ec;text-align:right}td:first-child,th:first-child{text-align:left}
tr.cat td{color:#666}.controls button{margin-right:6px;padding:3px 10px;border:1px solid #bbb;border-radius:4px;
background:#fff;cursor:pointer}.controls button.on{background:#1d2330;color:#fff}
.item{display:grid;grid-template-columns:340px 1fr;gap:16px;border-top:1px solid #e3e6ec;padding:14px 0}
.media img{max-width:320px;display:block;margin-bottom:4px;border-radius:4px}
.frames{display:grid;grid-template-columns:1fr 1fr;gap:4px}.frames img{max-width:158px}
.meta{color:#777;font-size:12px}.question{font-weight:600;margin:0 0 4px}
.options{margin:0 0 6px;padding-left:4px;list-style:none}
.options li.gold{font-weight:600;color:#17703a}.sides{display:grid;grid-auto-columns:1fr;grid-auto-flow:column;gap:12px}
.side h4{margin:6px 0;font-size:13px;color:#3a4a6b;word-break:break-all}
.caption{background:#f7f8fb;border-left:3px solid #9aa7c2;margin:6px 0;padding:6px 9px;white-space:pre-wrap;
max-height:180px;overflow:auto}.answer{margin:2px 0 10px}.ok{color:#17703a;font-weight:700}
.bad{color:#b3261e;font-weight:700}.part{color:#a86800;font-weight:700}
.probs{display:inline-flex;gap:6px;margin-left:8px;vertical-align:middle}
.bar{display:inline-block;width:38px;height:10px;background:#e3e6ec;position:relative}
.bar i{position:absolute;left:0;top:0;bottom:0;background:#5b7bd5}.blind{color:#555;font-size:13px}
.error{color:#b3261e}
"""

SCRIPT = """
document.querySelectorAll('.controls').forEach(function(bar){
  bar.querySelectorAll('button').forEach(function(b){b.addEventListener('click',function(){
    bar.querySelectorAll('button').forEach(function(x){x.classList.toggle('on',x===b)});
    var show=b.dataset.filter;
    bar.parentNode.querySelectorAll('.item').forEach(function(it){
      it.style.display=(show==='all'||it.dataset.outcome===show)?'':'none'});
  })});
});
window.addEventListener('load',function(){
  var imgs=document.querySelectorAll('img'),ok=0;
  imgs.forEach(function(i){if(i.complete&&i.naturalWidth>0)ok++});
  document.body.dataset.imagesLoaded=ok+'/'+imgs.length;
});
"""


def _mark(score: float | None, scale: float) -> str:
    if score is None:
        return ""
    if score >= scale:
        return '<span class="ok">✓ right</span>'
    if score <= 0:
        return '<span class="bad">✗ wrong</span>'
    return f'<span class="part">{escape(fmt(score, scale))}{"%" if scale == 1 else f" / {scale:g}"}</span>'


def _probs(probs: dict[str, float] | None) -> str:
    if not probs:
        return ""
    bars = "".join(
        f'<span title="{escape(k)} {p:.3f}">{escape(k)} <span class="bar"><i style="width:{100 * p:.0f}%"></i>'
        f"</span></span>"
        for k, p in probs.items()
    )
    return f'<span class="probs">{bars}</span>'


def _answer_line(a: dict[str, Any], scale: float) -> str:
    shown = a.get("prediction") if a.get("prediction") is not None else a.get("output")
    if a.get("output") is None:
        return '<p class="answer"><em>no answer (the caption failed)</em> ' + _mark(a.get("score"), scale) + "</p>"
    unread = "" if a.get("prediction") is not None else ' <em class="error">(nothing could be read from it)</em>'
    raw = escape(str(a.get("output")), quote=True)
    return (
        f'<p class="answer" title="the reader wrote: {raw}">answer: <b>{escape(str(shown))}</b>{unread} '
        f"{_mark(a.get('score'), scale)}{_probs(a.get('probs'))}</p>"
    )


def _outcome(sample: dict[str, Any], scale: float) -> str:
    scores = [a["score"] for a in sample["sides"][0]["answers"]]
    if all(s >= scale for s in scores):
        return "right"
    return "wrong" if all(s <= 0 for s in scores) else "mixed"


def _item(sample: dict[str, Any], scale: float) -> str:
    media = sample["media"]
    if media.get("error"):
        view = f'<p class="error">media could not be shown: {escape(media["error"])}</p>'
    elif media["times"]:
        frames = "".join(
            f'<figure style="margin:0"><img src="{uri}" alt="frame at {t}s"><figcaption class="meta">{t}s'
            f"</figcaption></figure>"
            for uri, t in zip(media["images"], media["times"], strict=True)
        )
        view = f'<div class="frames">{frames}</div>'
    else:
        view = "".join(f'<img src="{uri}" alt="{escape(sample["media_name"])}">' for uri in media["images"])
    category = sample["category"]
    category = ", ".join(category) if isinstance(category, list) else category
    meta = f'<p class="meta">{escape(sample["id"])} · {escape(str(sample["media_name"]))}'
    meta += f" · {escape(str(category))}</p>" if category else "</p>"
    qa = [f'<p class="question">{escape(sample["question"])}</p>']
    if sample["options"]:
        opts = "".join(
            f'<li class="{"gold" if LETTERS[i] == sample["gold"] else ""}">{LETTERS[i]}. {escape(o)}</li>'
            for i, o in enumerate(sample["options"])
        )
        qa.append(f'<ul class="options">{opts}</ul><p class="meta">gold: {escape(str(sample["gold"]))}</p>')
    elif sample["span"]:
        qa.append(f'<p class="meta">gold span: {sample["span"][0]:g} - {sample["span"][1]:g} s</p>')
    elif sample["gold"]:
        qa.append(f'<p class="meta">gold: {escape(" | ".join(map(str, sample["gold"])))}</p>')
    sides = []
    for side in sample["sides"]:
        parts = [f"<h4>{escape(side['captioner'])}</h4>"]
        for j, a in enumerate(side["answers"]):
            text = a["caption"] if a["caption"] is not None else f"(caption failed: {a['caption_error']})"
            parts.append(f'<blockquote class="caption" title="caption {j + 1}">{escape(text)}</blockquote>')
            parts.append(_answer_line(a, scale))
        sides.append(f'<div class="side">{"".join(parts)}</div>')
    qa.append(f'<div class="sides">{"".join(sides)}</div>')
    if sample["blind"] is not None:
        qa.append(f'<div class="blind">no caption: {_answer_line(sample["blind"], scale)}</div>')
    return (
        f'<article class="item" data-outcome="{_outcome(sample, scale)}"><div class="media">{view}{meta}</div>'
        f'<div class="qa">{"".join(qa)}</div></article>'
    )


def _scores_table(bench: dict[str, Any], k: int) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns(k))
    body = []
    for r in rows({"benchmarks": [bench]}):
        cls = ' class="cat"' if r[0].startswith("  ") else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{escape(c.strip())}</td>" for c in r) + "</tr>")
    table = f"<table><tr>{head}</tr>{''.join(body)}</table>"
    if bench.get("compare"):
        c, s = bench["compare"], bench["scale"]
        table += (
            "<table><tr><th>paired comparison</th><th>n</th><th>M_Acc (this)</th><th>M_Acc (other)</th>"
            "<th>difference</th><th>95% CI</th></tr>"
            f"<tr><td>vs {escape(c['captioner'])}</td><td>{c['n']}</td><td>{fmt(bench['m_acc'], s)}</td>"
            f"<td>{fmt(c['m_acc'], s)}</td><td>{fmt(c['diff'], s)}</td><td>{fmt_ci(c['diff_ci95'], s)}</td></tr>"
            "</table>"
        )
    if bench.get("truth"):
        head = "".join(f"<th>{escape(c)}</th>" for c in truth_columns()[1:])
        (row,) = truth_rows({"benchmarks": [bench]})
        table += (
            f'<p class="meta">{escape(TRUTH_NOTE)}</p><table class="truth"><tr>{head}</tr><tr>'
            + "".join(f"<td>{escape(c)}</td>" for c in row[1:])
            + "</tr></table>"
        )
    return table


def render(report: dict[str, Any], samples: dict[str, list[dict[str, Any]]]) -> str:
    cfg = report["config"]
    nav = " ".join(f'<a href="#b-{escape(b["benchmark"])}">{escape(b["benchmark"])}</a>' for b in report["benchmarks"])
    sections = []
    for b in report["benchmarks"]:
        shown = samples.get(b["benchmark"], [])
        items = "".join(_item(s, b["scale"]) for s in shown)
        controls = (
            '<div class="controls"><button class="on" data-filter="all">all</button>'
            '<button data-filter="right">right</button><button data-filter="mixed">mixed</button>'
            '<button data-filter="wrong">wrong</button></div>'
        )
        unit = "% (judge score 0-3)" if b["scale"] != 1 else "%"
        failed = (
            f'<p class="error">{b["caption_errors"]} of {b["n"] * b["k"]} captions failed (media could not be read) '
            "and count as wrong answers in M_Acc</p>"
            if b.get("caption_errors")
            else ""
        )
        sections.append(
            f'<section id="b-{escape(b["benchmark"])}"><h2>{escape(b["title"])}</h2>'
            f'<p class="meta">{escape(b["metric"])}, in {unit}; {b["n"]} questions on {b["n_media"]} media; '
            f"{b['k']} caption(s) each; 95% CI: bootstrap over media</p>{failed}{_scores_table(b, b['k'])}"
            f"<h3>{len(shown)} of {b['n']} questions</h3>{controls if shown else ''}{items}</section>"
        )
    compare = f" · compared with <b>{escape(cfg['compare'])}</b>" if cfg.get("compare") else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Prism report</title>'
        f"<style>{STYLE}</style></head><body><header><h1>Prism evaluation</h1>"
        f"<p>captioner <b>{escape(str(cfg['captioner']))}</b> read by <b>{escape(str(cfg['reader']))}</b> "
        f"({escape(str(cfg['read_mode']))} mode){compare} · scoring profile "
        f"<b>{escape(str(cfg.get('profile', 'caprl')))}</b></p>"
        "<p>M_Acc averages each question's scores over its captions, BoN takes its best caption</p>"
        f"<nav>{nav}</nav></header>{''.join(sections)}<script>{SCRIPT}</script></body></html>\n"
    )


def write_html(report: dict[str, Any], samples: dict[str, list[dict[str, Any]]], out: Path) -> Path:
    path = out / "report.html"
    text = render(report, samples)
    atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
    return path
