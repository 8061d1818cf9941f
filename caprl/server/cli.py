"""``caprl reward serve``: the reward service's command (registered under ``caprl reward`` by ``caprl.cli``).

It lives with the service so that ``caprl.reward`` never imports ``caprl.server``; the reward flags it shares with
``caprl reward score`` come from ``caprl.reward.cli``.
"""

from __future__ import annotations

import os
from typing import Any

import typer
from pydantic import SecretStr
from rich.console import Console

from caprl.errors import OptionError
from caprl.flags import settings_flags
from caprl.preflight import ModelFlags, check_port, model_flags
from caprl.reward.cli import LENGTH_TOKENIZER, PRESET, Preset, reward_config, reward_flags, token_counter
from caprl.server.settings import JudgeSettings, ListenSettings, ServerSettings

console = Console()
SHORT_HELP = "Serve the reward over HTTP (CapRL-compatible)."


@settings_flags(JudgeSettings, into="judging")
@model_flags("judge", flag="--judge", role="captioner", what="VLM judge", prefix="judge-", note=" Scores judge items.")
@settings_flags(ServerSettings, into="limits", exclude=("api_key",))
@settings_flags(ListenSettings, into="listen")
@reward_flags
@model_flags("reader", flag="--reader", role="reader", what="Reader", note=" QA items; optional with --judge.")
def serve_command(
    reader: ModelFlags | None = None,
    preset: Preset | None = PRESET,
    reward: dict[str, Any] | None = None,
    length_tokenizer: str | None = LENGTH_TOKENIZER,
    listen: ListenSettings | None = None,
    api_key_env: str | None = typer.Option(
        None, help="Name of an environment variable holding a bearer token that every request must carry."
    ),
    limits: ServerSettings | None = None,
    judge: ModelFlags | None = None,
    judging: JudgeSettings | None = None,
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

    assert reader is not None and judge is not None  # filled in by model_flags
    if reader.location is None and judge.location is None:
        raise OptionError("give --reader (QA items), --judge (judge items), or both")
    api_key = None
    if api_key_env:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise OptionError(f"--api-key-env {api_key_env}: the environment variable is unset or empty")
    assert listen is not None and limits is not None and judging is not None  # filled in by settings_flags
    config = reward_config(preset, reward or {})
    settings = limits.model_copy(update={"api_key": SecretStr(api_key) if api_key else None})
    try:
        check_config(config, settings)
    except ValueError as exc:
        raise OptionError(str(exc)) from None
    # Then what needs a look outside the flags: the model folders and the port, all before any model loads.
    reader_spec = reader.spec() if reader.location is not None else None
    judge_spec = judge.spec() if judge.location is not None else None
    check_port(listen.host, listen.port)

    def build_engine() -> RewardEngine:
        assert reader_spec is not None
        return RewardEngine(load_reader(reader_spec), config, count_tokens=token_counter(length_tokenizer))

    def build_judge():
        from caprl.captioners import load_captioner
        from caprl.captioners.base import GenerationSettings
        from caprl.reward.judge import VLMJudge

        assert judge_spec is not None
        captioner = load_captioner(judge_spec)
        decoding = GenerationSettings(max_new_tokens=judging.max_new_tokens, temperature=0.0, seed=config.seed)
        return VLMJudge(captioner, retries=judging.retries, settings=decoding)

    models = ", ".join(
        part
        for part in (
            reader_spec and f"reader {reader_spec.location}, mode {config.mode}",
            judge_spec and f"judge {judge_spec.location}",
        )
        if part
    )
    console.print(
        f"[bold]caprl reward service[/] on http://{listen.host}:{listen.port} ({models}); "
        "GET /health turns 200 once every model is loaded"
    )
    raise typer.Exit(
        serve(
            build_engine if reader_spec is not None else None,
            settings,
            judge=build_judge if judge_spec is not None else None,
            **listen.model_dump(),
        )
    )
