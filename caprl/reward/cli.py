"""``caprl reward``: score captions with the CapRL reward."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from caprl.errors import InputError, OptionError, describe_validation
from caprl.flags import flag_name, settings_flags
from caprl.preflight import ModelFlags, existing_path, model_flags
from caprl.reward.engine import RewardConfig
from caprl.tables import summary_table

app = typer.Typer(no_args_is_help=True, rich_markup_mode=None)
console = Console()


@app.callback()
def _group() -> None:
    """Score captions by how well a text-only reader answers each item's MCQs from them."""


def token_counter(length_tokenizer: str | None) -> Callable[[str], int] | None:
    """Counts caption tokens with the policy's tokenizer, for the length term."""
    if not length_tokenizer:
        return None
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(length_tokenizer)
    return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])


Preset = Literal["caprl", "caprl-v1"]
SHOW_SKIPPED = 5
PRESET_HELP = "Start from a named reward setting: caprl (CapRL++'s servers) | caprl-v1; flags given override it."

# Flags that `score` and `serve` share beside the reward's own (RewardConfig's, derived by `reward_flags`).
PRESET = typer.Option(None, help=PRESET_HELP)
LENGTH_TOKENIZER = typer.Option(None, help="Tokenizer that counts caption tokens (the policy's).")

reward_flags = settings_flags(RewardConfig, into="reward", unset=True)
"""The reward's flags, one per ``RewardConfig`` field; the command receives those typed, to lay over --preset."""


def reward_config(preset: str | None, flags: dict[str, Any]) -> RewardConfig:
    """The reward config of ``preset`` (None: caprl's defaults) with the flags that were typed laid over it.
    A value the config rejects is an ``OptionError`` naming its flag."""
    from pydantic import ValidationError

    from caprl.reward.presets import preset_config

    try:
        return preset_config(preset, **flags)
    except ValidationError as exc:
        names = {f: flag_name(RewardConfig, f) for f in RewardConfig.model_fields}
        hint = f"flags given override --preset {preset}'s settings" if preset else None
        raise OptionError(describe_validation(exc, names=names), hint=hint) from None
    except ValueError as exc:  # an unknown preset
        raise OptionError(f"--preset {preset}: {exc}") from None


@app.command("score", short_help="Score a captions file with a reader (resumable).")
@reward_flags
@model_flags("reader", flag="--reader", role="reader", what="Reader", device=False, required=True)
def score_command(
    data: Path = typer.Option(..., "--data", help="caprl dataset (directory or samples file) holding the MCQs."),
    captions: Path = typer.Option(..., "--captions", help='jsonl of {"id": SAMPLE_ID, "caption": TEXT} rows.'),
    reader: ModelFlags | None = None,
    out: Path = typer.Option(..., "--out", help="Output jsonl (appended; re-runs skip captions already scored)."),
    preset: Preset | None = PRESET,
    reward: dict[str, Any] | None = None,
    length_tokenizer: str | None = LENGTH_TOKENIZER,
    batch_size: int = typer.Option(32, min=1, help="Captions per engine call."),
) -> None:
    """Score CAPTIONS against the MCQs in DATA with a text-only reader; write one result per caption.

    --preset starts from CapRL's settings; the reward flags that are given override it. Each row of OUT records
    the settings that scored it (reader and the final reward options): a re-run with the same settings scores
    only what is missing; other settings are refused (use another --out).
    """
    from caprl.readers import load_reader
    from caprl.reward.batch import score_captions
    from caprl.reward.engine import RewardEngine

    config = reward_config(preset, reward or {})
    if config.length_weight and not length_tokenizer:
        raise OptionError("--length-weight needs --length-tokenizer (the policy's tokenizer counts the tokens)")
    existing_path(data, "--data", what="dataset")
    existing_path(captions, "--captions", what="file")
    assert reader is not None  # filled in by model_flags
    spec = reader.spec()
    settings = {"reader": spec.name, **config.model_dump(mode="json")}
    if length_tokenizer:
        settings["length_tokenizer"] = length_tokenizer

    def build_engine() -> RewardEngine:  # only when something is left to score
        return RewardEngine(load_reader(spec), config, count_tokens=token_counter(length_tokenizer))

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
    console.print(summary_table(f"reward ({config.mode}) -> {out}", rows))
    for msg in summary.bad_rows[:SHOW_SKIPPED]:
        console.print(f"left out: {msg}", markup=False, highlight=False, soft_wrap=True)  # paths stay whole
    if len(summary.bad_rows) > SHOW_SKIPPED:
        console.print(f"... and {len(summary.bad_rows) - SHOW_SKIPPED} more left out ({len(summary.bad_rows)} in all)")
    if summary.scored == 0 and summary.skipped_existing == 0:
        raise InputError(
            f"nothing was scored: all {len(summary.bad_rows)} captions of {captions} were left out",
            hint=f"caption ids must be sample ids of {data}",
        )
