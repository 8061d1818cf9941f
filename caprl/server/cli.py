"""``caprl reward serve``: the reward service's command (registered under ``caprl reward`` by ``caprl.cli``).

It lives with the service so that ``caprl.reward`` never imports ``caprl.server``; the reward flags it shares with
``caprl reward score`` come from ``caprl.reward.cli``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import typer
from rich.console import Console

from caprl.backends import BackendName
from caprl.errors import OptionError, from_flags
from caprl.preflight import check_port, model_spec
from caprl.reward.cli import (
    ANSWER_PARSE,
    BACKEND,
    CORRECTNESS_FORM,
    CORRECTNESS_WEIGHT,
    LENGTH_TOKENIZER,
    MODE,
    MODEL,
    N_QUESTIONS,
    PRESET,
    PROMPT,
    READ_PATH,
    SEED,
    SHUFFLE,
    TEMPERATURE,
    TIMESTAMP_WEIGHT,
    UNANSWERABLE,
    WRONG_PENALTY,
    Preset,
    reward_config,
    token_counter,
)
from caprl.reward.engine import AnswerParse, CorrectnessForm, PromptName, ReadPath, RewardMode
from caprl.schema import Modality

console = Console()
SHORT_HELP = "Serve the reward over HTTP (CapRL-compatible)."


def serve_command(
    reader: str | None = typer.Option(
        None,
        "--reader",
        help="Reader model id/path, or an OpenAI-compatible server URL (QA items; optional with --judge).",
    ),
    backend: BackendName | None = BACKEND,
    model: str | None = MODEL,
    device: str | None = typer.Option(None, help="Device of a transformers reader (cuda, cuda:1, cpu; default: best)."),
    preset: Preset | None = PRESET,
    mode: RewardMode | None = MODE,
    n: int | None = N_QUESTIONS,
    path: ReadPath | None = READ_PATH,
    prompt: PromptName | None = PROMPT,
    answer_parse: AnswerParse | None = ANSWER_PARSE,
    temperature: float | None = TEMPERATURE,
    shuffle: bool | None = SHUFFLE,
    unanswerable: bool | None = UNANSWERABLE,
    qa_weight: float | None = typer.Option(
        None, help="Weight of the mean QA score (default 1; 2 gives CapRL v1's rewards, 0-2)."
    ),
    length_weight: float | None = typer.Option(
        None, help="Weight of the length term (items send caption_tokens, or give --length-tokenizer)."
    ),
    length_tokenizer: str | None = LENGTH_TOKENIZER,
    timestamp_weight: float | None = TIMESTAMP_WEIGHT,
    wrong_penalty: float | None = WRONG_PENALTY,
    correctness_weight: float | None = CORRECTNESS_WEIGHT,
    correctness_form: CorrectnessForm | None = CORRECTNESS_FORM,
    seed: int | None = SEED,
    modality: Modality = typer.Option(
        "image",
        help="What /get_reward prompts describe (CapRL++'s --task): image | video (prompt wording, and "
        "the timestamp term there).",
    ),  # fmt: skip
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(
        18889, min=1, max=65535, help="Port (18889 is CapRL++'s reward master, so its scripts work unchanged)."
    ),
    api_key_env: str | None = typer.Option(
        None, help="Name of an environment variable holding a bearer token that every request must carry."
    ),
    max_batch: int = typer.Option(64, min=1, help="Items per engine call: requests are coalesced up to this many."),
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

    \b
    POST /v1/rewards   many items per request; each item's reward and its parts
                       (judge items: "mode": "judge", scored by --judge)
    POST /get_reward   CapRL's bodies (QA prompts; CapRL++'s vl_judge samples),
                       answered with {"rewards": [...], ...}
    GET  /health       200 once every model is loaded, 503 before and while
                       draining
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
    from caprl.reward.engine import RewardEngine
    from caprl.server.parse import check_config
    from caprl.server.serve import serve
    from caprl.server.settings import ServerSettings

    if reader is None and judge is None:
        raise OptionError("give --reader (QA items), --judge (judge items), or both")
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise OptionError(f"--api-key-env {api_key_env}: the environment variable is unset or empty")
    config = reward_config(
        preset, mode=mode, n_questions=n, path=path, prompt=prompt, answer_parse=answer_parse,
        temperature=temperature, shuffle=shuffle, unanswerable_option=unanswerable, qa_weight=qa_weight,
        length_weight=length_weight, timestamp_weight=timestamp_weight, wrong_penalty=wrong_penalty,
        correctness_weight=correctness_weight, correctness_form=correctness_form, seed=seed,
    )  # fmt: skip
    settings = from_flags(
        ServerSettings,
        {"max_body_bytes": "--max-body-mb", "get_reward_modality": "--modality"},
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
        get_reward_modality=modality,
    )
    try:
        check_config(config, settings)
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    # Then what needs a look outside the flags: the model folders and the port, all before any model loads.
    reader_spec = judge_spec = None
    if reader is not None:
        reader_spec = model_spec(reader, role="reader", flag="--reader", backend=backend, model=model, device=device)
    if judge is not None:
        judge_spec = model_spec(
            judge, role="captioner", flag="--judge", backend=judge_backend, model=judge_model,
            model_flag="--judge-model", device=judge_device,
        )  # fmt: skip
    check_port(host, port)

    def build_engine() -> RewardEngine:
        assert reader_spec is not None
        return RewardEngine(load_reader(reader_spec), config, count_tokens=token_counter(length_tokenizer))

    def build_judge():
        from caprl.captioners import load_captioner
        from caprl.captioners.base import GenerationSettings
        from caprl.reward.judge import VLMJudge

        assert judge_spec is not None
        captioner = load_captioner(judge_spec)
        decoding = GenerationSettings(max_new_tokens=judge_max_new_tokens, temperature=0.0, seed=config.seed)
        return VLMJudge(captioner, retries=judge_retries, settings=decoding)

    models = ", ".join(
        part for part in (reader and f"reader {reader}, mode {config.mode}", judge and f"judge {judge}") if part
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
