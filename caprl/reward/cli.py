"""``caprl reward``: score captions with the CapRL reward."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from caprl.backends import BackendName
from caprl.errors import InputError, OptionError, describe_validation
from caprl.preflight import existing_path, model_spec
from caprl.reward.engine import AnswerParse, CorrectnessForm, PromptName, ReadPath, RewardMode
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


# RewardConfig fields set by flags of another name, so a rejected value is reported by its flag.
REWARD_FLAGS = {"n_questions": "--n", "unanswerable_option": "--unanswerable"}
Preset = Literal["caprl", "caprl-v1"]
SHOW_SKIPPED = 5
PRESET_HELP = "Start from a named reward setting: caprl (CapRL++'s servers) | caprl-v1; flags given override it."

# Reward flags that `score` and `serve` share: one definition, the same name and meaning in both.
BACKEND = typer.Option(None, help="Reader backend (default: from --reader).")
MODEL = typer.Option(None, help="Model name to request from an OpenAI-compatible server.")
PRESET = typer.Option(None, help=PRESET_HELP)
MODE = typer.Option(None, help="hard (chosen letter is gold; default) | soft | blind_gain.")
N_QUESTIONS = typer.Option(None, "--n", min=1, help="Questions per caption, drawn with replacement (default: all).")
READ_PATH = typer.Option(None, help="score (letter probabilities; default) | generate (parsed).")
PROMPT = typer.Option(None, help="default | caprl (CapRL's layout, examples, lead-in).")
ANSWER_PARSE = typer.Option(None, help="Generate path: robust (default) | first_letter (CapRL).")
TEMPERATURE = typer.Option(None, help="Temperature of the sampled answer (default 0.6).")
SHUFFLE = typer.Option(None, "--shuffle/--no-shuffle", help="Shuffle the options (default; --no-shuffle: as given).")
UNANSWERABLE = typer.Option(
    None, "--unanswerable/--no-unanswerable", help="Append the 'cannot be answered' option (default; CapRL does)."
)
LENGTH_TOKENIZER = typer.Option(None, help="Tokenizer that counts caption tokens (the policy's).")
TIMESTAMP_WEIGHT = typer.Option(None, help="Weight of the video timestamp-format term.")
WRONG_PENALTY = typer.Option(
    None, min=0, help="What a wrong answer costs against 'cannot be answered' (0, CapRL: a guess is free)."
)
CORRECTNESS_WEIGHT = typer.Option(
    None, help="Weight of the correctness term: share of the caption's statements verified (shapes world)."
)
CORRECTNESS_FORM = typer.Option(
    None, help="share: + weight x share confirmed (CCCaption); refuted: - weight x statements not confirmed."
)
SEED = typer.Option(None, help="Seed for question draws, shuffles and sampled letters (default 0).")


def reward_config(preset: str | None, **flags: object):
    """The reward config of ``preset`` (None: caprl's defaults) with the flags that were given (None: not given).
    A value the config rejects is an ``OptionError`` naming its flag."""
    from pydantic import ValidationError

    from caprl.reward.engine import RewardConfig
    from caprl.reward.presets import preset_config

    try:
        return preset_config(preset, **flags)
    except ValidationError as exc:
        names = {f: "--" + f.replace("_", "-") for f in RewardConfig.model_fields} | REWARD_FLAGS
        hint = f"flags given override --preset {preset}'s settings" if preset else None
        raise OptionError(describe_validation(exc, names=names), hint=hint) from None
    except ValueError as exc:  # an unknown preset
        raise OptionError(f"--preset {preset}: {exc}") from None


@app.command("score", short_help="Score a captions file with a reader (resumable).")
def score_command(
    data: Path = typer.Option(..., "--data", help="caprl dataset (directory or samples file) holding the MCQs."),
    captions: Path = typer.Option(..., "--captions", help='jsonl of {"id": SAMPLE_ID, "caption": TEXT} rows.'),
    reader: str = typer.Option(..., "--reader", help="Reader model id/path, or an OpenAI-compatible server URL."),
    out: Path = typer.Option(..., "--out", help="Output jsonl (appended; re-runs skip captions already scored)."),
    backend: BackendName | None = BACKEND,
    model: str | None = MODEL,
    preset: Preset | None = PRESET,
    mode: RewardMode | None = MODE,
    n: int | None = N_QUESTIONS,
    path: ReadPath | None = READ_PATH,
    prompt: PromptName | None = PROMPT,
    answer_parse: AnswerParse | None = ANSWER_PARSE,
    temperature: float | None = TEMPERATURE,
    shuffle: bool | None = SHUFFLE,
    unanswerable: bool | None = UNANSWERABLE,
    qa_weight: float | None = typer.Option(None, help="Weight of the mean QA score (default 1; CapRL v1: 2)."),
    length_weight: float | None = typer.Option(None, help="Weight of the length term (needs --length-tokenizer)."),
    length_tokenizer: str | None = LENGTH_TOKENIZER,
    timestamp_weight: float | None = TIMESTAMP_WEIGHT,
    wrong_penalty: float | None = WRONG_PENALTY,
    correctness_weight: float | None = CORRECTNESS_WEIGHT,
    correctness_form: CorrectnessForm | None = CORRECTNESS_FORM,
    seed: int | None = SEED,
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

    config = reward_config(
        preset, mode=mode, n_questions=n, path=path, prompt=prompt, answer_parse=answer_parse,
        temperature=temperature, shuffle=shuffle, unanswerable_option=unanswerable, qa_weight=qa_weight,
        length_weight=length_weight, timestamp_weight=timestamp_weight, wrong_penalty=wrong_penalty,
        correctness_weight=correctness_weight, correctness_form=correctness_form, seed=seed,
    )  # fmt: skip
    if config.length_weight and not length_tokenizer:
        raise OptionError("--length-weight needs --length-tokenizer (the policy's tokenizer counts the tokens)")
    existing_path(data, "--data", what="dataset")
    existing_path(captions, "--captions", what="file")
    spec = model_spec(reader, role="reader", flag="--reader", backend=backend, model=model)
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
