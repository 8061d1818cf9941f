"""``caprl reward``: score captions with the CapRL reward."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from caprl.errors import InputError, OptionError, from_flags
from caprl.preflight import BackendName, backend_of, check_model, check_port, existing_path
from caprl.tables import summary_table

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)
console = Console()


@app.callback()
def _group() -> None:
    """Score captions by how well a text-only reader answers each item's MCQs from them."""


def _token_counter(length_tokenizer: str | None) -> Callable[[str], int] | None:
    """Counts caption tokens with the policy's tokenizer, for the length term."""
    if not length_tokenizer:
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(length_tokenizer)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


# RewardConfig fields set by flags of another name, so a rejected value is reported by its flag.
REWARD_FLAGS = {"n_questions": "--n", "unanswerable_option": "--unanswerable"}
Mode = Literal["hard", "soft", "blind_gain"]
ReadPath = Literal["score", "generate"]
SHOW_SKIPPED = 5


@app.command("score", short_help="Score a captions file with a reader (resumable).")
def score_command(
    data: Path = typer.Option(..., "--data", help="caprl dataset (directory or samples file) holding the MCQs."),
    captions: Path = typer.Option(..., "--captions", help='jsonl of {"id": SAMPLE_ID, "caption": TEXT} rows.'),
    reader: str = typer.Option(..., "--reader", help="Reader model id/path, or an OpenAI-compatible server URL."),
    out: Path = typer.Option(..., "--out", help="Output jsonl (appended; re-runs skip captions already scored)."),
    backend: BackendName | None = typer.Option(None, help="Reader backend (default: from --reader)."),
    model: str | None = typer.Option(None, help="Model name to request from an OpenAI-compatible server."),
    mode: Mode = typer.Option("hard", help="hard (chosen letter is gold) | soft (gold probability) | blind_gain."),
    n: int | None = typer.Option(
        None, "--n", min=1, help="Questions per caption, drawn with replacement (default: all)."
    ),
    path: ReadPath = typer.Option("score", help="score (letter probabilities) | generate (free text, parsed)."),
    unanswerable: bool = typer.Option(
        True, "--unanswerable/--no-unanswerable", help="Append the 'cannot be answered' option (CapRL does)."
    ),
    length_weight: float = typer.Option(0.0, help="Weight of the length term (needs --length-tokenizer)."),
    length_tokenizer: str | None = typer.Option(None, help="Tokenizer that counts caption tokens (the policy's)."),
    timestamp_weight: float = typer.Option(0.0, help="Weight of the video timestamp-format term."),
    seed: int = typer.Option(0, help="Seed for question draws, shuffles and sampled letters."),
    batch_size: int = typer.Option(32, min=1, help="Captions per engine call."),
) -> None:
    """Score CAPTIONS against the MCQs in DATA with a text-only reader; write one result per caption.

    Each row of OUT records the settings that scored it (reader, mode, seed, ...): a re-run with the same
    settings scores only what is missing; other settings are refused (use another --out).
    """
    from caprl.readers import load_reader
    from caprl.reward.batch import score_captions
    from caprl.reward.engine import RewardConfig, RewardEngine

    existing_path(data, "--data", what="dataset")
    existing_path(captions, "--captions", what="file")
    resolved = backend_of(reader, backend)
    check_model(reader, role="reader", flag="--reader", backend=resolved)
    if length_weight and not length_tokenizer:
        raise OptionError("--length-weight needs --length-tokenizer (the policy's tokenizer counts the tokens)")
    config = from_flags(
        RewardConfig,
        REWARD_FLAGS,
        mode=mode,
        n_questions=n,
        path=path,
        unanswerable_option=unanswerable,
        length_weight=length_weight,
        timestamp_weight=timestamp_weight,
        seed=seed,
    )
    settings = {"reader": f"{resolved}:{model or reader}", **config.model_dump(mode="json")}
    if length_tokenizer:
        settings["length_tokenizer"] = length_tokenizer

    def build_engine() -> RewardEngine:  # only when something is left to score
        kwargs = {"model": model} if model else {}
        return RewardEngine(
            load_reader(reader, backend=resolved, **kwargs), config, count_tokens=_token_counter(length_tokenizer)
        )

    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,  # the table below says what was done
    ) as progress:
        task = progress.add_task("score", total=None)

        def on_progress(advance: int, total: int) -> None:
            progress.update(task, total=total, advance=advance)

        summary = score_captions(
            data, captions, build_engine, out, settings=settings, batch_size=batch_size, on_progress=on_progress
        )
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    rows = [
        ("scored now", summary.scored),
        ("already done", summary.skipped_existing),
        ("left out (see below)", len(summary.bad_rows)),
        ("mean reward", fmt(summary.mean_reward)),
        ("mean accuracy", fmt(summary.mean_accuracy)),
        ("parse failures", summary.parse_failures),
    ]
    console.print(summary_table(f"reward ({mode}) -> {out}", rows))
    for msg in summary.bad_rows[:SHOW_SKIPPED]:
        console.print(f"left out: {msg}", markup=False, highlight=False, soft_wrap=True)  # paths stay whole
    if len(summary.bad_rows) > SHOW_SKIPPED:
        console.print(f"... and {len(summary.bad_rows) - SHOW_SKIPPED} more left out ({len(summary.bad_rows)} in all)")
    if summary.scored == 0 and summary.skipped_existing == 0:
        raise InputError(
            f"nothing was scored: all {len(summary.bad_rows)} captions of {captions} were left out",
            hint=f"caption ids must be sample ids of {data}",
        )


@app.command("serve", short_help="Serve the reward over HTTP (CapRL-compatible).")
def serve_command(
    reader: str | None = typer.Option(
        None,
        "--reader",
        help="Reader model id/path, or an OpenAI-compatible server URL (QA items; optional with --judge).",
    ),
    backend: BackendName | None = typer.Option(None, help="Reader backend (default: from --reader)."),
    model: str | None = typer.Option(None, help="Model name to request from an OpenAI-compatible server."),
    device: str | None = typer.Option(None, help="Device of a transformers reader (cuda, cuda:1, cpu; default: best)."),
    mode: Mode = typer.Option("hard", help="hard (chosen letter is gold) | soft (gold probability) | blind_gain."),
    n: int | None = typer.Option(
        None, "--n", min=1, help="Questions per caption, drawn with replacement (default: all)."
    ),
    path: ReadPath = typer.Option("score", help="score (letter probabilities) | generate (free text, parsed)."),
    unanswerable: bool = typer.Option(
        True, "--unanswerable/--no-unanswerable", help="Append the 'cannot be answered' option (CapRL does)."
    ),
    length_weight: float = typer.Option(
        0.0, help="Weight of the length term (items send caption_tokens, or give --length-tokenizer)."
    ),
    length_tokenizer: str | None = typer.Option(None, help="Tokenizer that counts caption tokens (the policy's)."),
    timestamp_weight: float = typer.Option(0.0, help="Weight of the video timestamp-format term."),
    seed: int = typer.Option(0, help="Seed for question draws, shuffles and sampled letters."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(
        18889, min=1, max=65535, help="Port (18889 is CapRL++'s reward master, so its scripts work unchanged)."
    ),
    api_key_env: str | None = typer.Option(
        None, help="Name of an environment variable holding a bearer token that every request must carry."
    ),
    max_batch: int = typer.Option(
        64, min=1, help="Items per engine call: requests are coalesced up to this many."
    ),
    max_wait_ms: float = typer.Option(5.0, min=0.0, help="How long an idle engine waits for a batch to fill."),
    max_pending: int = typer.Option(
        4096, min=1, help="Items in flight (queued or scoring); beyond it: 503 + Retry-After."
    ),
    max_request_items: int = typer.Option(2048, min=1, help="Items per request; beyond it: 413."),
    max_body_mb: float = typer.Option(64.0, min=0.0, help="Largest request body in MiB; beyond it: 413."),
    max_caption_chars: int = typer.Option(100_000, min=1, help="Longest caption in characters; beyond it: 422."),
    shutdown_timeout: float = typer.Option(30.0, min=0.0, help="Seconds in-flight requests get to finish on SIGTERM."),
    log_level: Literal["critical", "error", "warning", "info", "debug"] = typer.Option(
        "info", help="Server log level."
    ),
    judge: str | None = typer.Option(
        None, "--judge", help="VLM judge model id/path, or an OpenAI-compatible server URL: scores judge items."
    ),
    judge_backend: BackendName | None = typer.Option(None, help="Judge backend (default: from --judge)."),
    judge_model: str | None = typer.Option(
        None, help="Model name to request from the judge's OpenAI-compatible server."
    ),
    judge_device: str | None = typer.Option(None, help="Device of a transformers judge (default: best)."),
    judge_retries: int = typer.Option(2, min=0, help="Judge retries of an answer without valid scores."),
    judge_max_new_tokens: int = typer.Option(256, min=1, help="Most tokens of one judge answer."),
    judge_max_batch: int = typer.Option(8, min=1, help="Judge items per judge call (coalesced like the reader's)."),
    judge_max_pending: int = typer.Option(512, min=1, help="Judge items in flight; beyond it: 503 + Retry-After."),
    media_root: Path | None = typer.Option(
        None,
        exists=True,
        file_okay=False,
        dir_okay=True,
        help="Directory judge items' media paths are read from (paths leading outside it are refused); without it "
        "only inline base64 images are taken.",
    ),  # fmt: skip
    max_judge_frames: int = typer.Option(64, min=1, help="Most frames of one video the judge sees."),
) -> None:
    """Serve the reward over HTTP: one reader (and/or a VLM judge), batched across every client.

    POST /v1/rewards   many items per request; each item's reward and its parts
                       (judge items: "mode": "judge" with media, scored by --judge)
    POST /get_reward   the CapRL body, answered with {"rewards": [...]}
    GET  /health       200 once every model is loaded, 503 before and while draining
    GET  /metrics      Prometheus metrics
    GET  /docs         the API and its schemas (/openapi.json)

    Invalid items get 422 naming the item and field; the other items are still
    scored. An overloaded server answers 503 with Retry-After. SIGTERM finishes
    the requests in flight before the server exits.

    \b
    Examples:
      caprl reward serve --reader Qwen/Qwen2.5-3B-Instruct --host 0.0.0.0 \\
        --api-key-env CAPRL_KEY
      caprl reward serve --reader R --judge Qwen/Qwen2.5-VL-7B-Instruct \\
        --media-root /data/media    # with a VLM judge
    """
    from caprl.readers import load_reader
    from caprl.reward.engine import RewardConfig, RewardEngine
    from caprl.server.parse import check_config
    from caprl.server.serve import serve
    from caprl.server.settings import ServerSettings

    if reader is None and judge is None:
        raise OptionError("give --reader (QA items), --judge (judge items), or both")
    if judge is not None:
        resolved = backend_of(judge, judge_backend)
        if judge_model and resolved == "transformers":
            raise OptionError("--judge-model names the model on a judge server (--judge URL)")

    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise OptionError(f"--api-key-env {api_key_env}: the environment variable is unset or empty")
    config = from_flags(
        RewardConfig,
        REWARD_FLAGS,
        mode=mode,
        n_questions=n,
        path=path,
        unanswerable_option=unanswerable,
        length_weight=length_weight,
        timestamp_weight=timestamp_weight,
        seed=seed,
    )
    settings = from_flags(
        ServerSettings,
        {"max_body_bytes": "--max-body-mb"},
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_pending=max_pending,
        max_request_items=max_request_items,
        max_body_bytes=int(max_body_mb * 2**20),
        max_caption_chars=max_caption_chars,
        api_key=api_key,
        media_root=media_root,
        judge_max_batch=judge_max_batch,
        judge_max_pending=judge_max_pending,
        max_judge_frames=max_judge_frames,
    )
    try:
        check_config(config, settings)
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    # Then what needs a look outside the flags: the model folders and the port, all before any model loads.
    if reader is not None:
        check_model(reader, role="reader", flag="--reader", backend=backend_of(reader, backend))
    if judge is not None:
        check_model(judge, role="captioner", flag="--judge", backend=resolved)
    check_port(host, port)

    def build_engine() -> RewardEngine:
        assert reader is not None
        kwargs: dict = {"model": model} if model else {}
        is_url = reader.startswith(("http://", "https://"))
        if device and (backend or ("openai" if is_url else "transformers")) == "transformers":
            kwargs["device"] = device
        return RewardEngine(
            load_reader(reader, backend=backend, **kwargs), config, count_tokens=_token_counter(length_tokenizer)
        )

    def build_judge():
        from caprl.captioners import load_captioner
        from caprl.captioners.base import GenerationSettings
        from caprl.reward.judge import VLMJudge

        assert judge is not None
        kwargs: dict = {"model": judge_model} if judge_model else {}
        if judge_device and resolved == "transformers":
            kwargs["device"] = judge_device
        captioner = load_captioner(judge, backend=judge_backend, **kwargs)
        decoding = GenerationSettings(max_new_tokens=judge_max_new_tokens, temperature=0.0, seed=seed)
        return VLMJudge(captioner, retries=judge_retries, settings=decoding)

    models = ", ".join(
        part for part in (reader and f"reader {reader}, mode {mode}", judge and f"judge {judge}") if part
    )
    console.print(
        f"[bold]caprl reward service[/] on http://{host}:{port} ({models}); "
        "GET /health turns 200 once every model is loaded"
    )
    raise typer.Exit(
        serve(
            build_engine if reader is not None else None,
            settings,
            judge=build_judge if judge is not None else None,
            host=host,
            port=port,
            log_level=log_level,
            shutdown_timeout=shutdown_timeout,
        )
    )
