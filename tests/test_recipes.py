"""The recipes of docs/architecture.md ("Where a new thing goes"), done: a copy of the package gets a toy reader
backend, a toy Prism benchmark and a toy reward mode by exactly the edits the page lists, and the ``caprl`` command
of that copy then offers and uses all three. If a recipe stops being true (another file must be touched, a table
moves), this test fails and the page must be rewritten with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_architecture import copy_package

# --- the recipes, as the edits they list ---------------------------------------------------------------------------

ECHO_READER = '''"""A toy reader: options the description names share the probability; none named: all alike."""

from __future__ import annotations

import re

import numpy as np

from caprl.readers.base import LetterScores


class EchoReader:
    def __init__(self, location: str, **options):
        self.name = f"echo:{location}"

    def _probs(self, messages, letters: str) -> np.ndarray:
        text = messages[-1]["content"]
        caption = text.split("Description:\\n", 1)[1].split("\\n\\nQuestion:", 1)[0].lower()
        options = dict(re.findall(r"^([A-Z])\\) (.+)$", text, flags=re.M))
        hits = np.array([1.0 if options[x].lower() in caption else 0.0 for x in letters])
        return hits / hits.sum() if hits.sum() else np.full(len(letters), 1.0 / len(letters))

    def score_letters(self, queries):
        return [LetterScores(q.letters, self._probs(q.messages, q.letters), 1.0) for q in queries]

    def generate(self, prompts, *, max_new_tokens=10, temperature=0.0, seed=None, seeds=None):
        out = []
        for messages in prompts:
            letters = "".join(re.findall(r"^([A-Z])\\) ", messages[-1]["content"], flags=re.M))
            out.append(letters[int(np.argmax(self._probs(messages, letters)))])
        return out
'''

TOY_BENCHMARK = '''"""A toy benchmark: {"id", "image", "question", "options", "answer"} rows in colours.jsonl."""

from __future__ import annotations

import json

from caprl.eval.benchmarks.base import Benchmark, LoadContext
from caprl.eval.data import DataSpec
from caprl.eval.types import EvalItem
from caprl.schema import ImageMedia


def load(ctx: LoadContext):
    for line in (ctx.path / "colours.jsonl").read_text().splitlines():
        row = json.loads(line)
        yield EvalItem(
            id=row["id"], media_id=row["image"], media=ImageMedia(path=str(ctx.path / row["image"])),
            question=row["question"], options=row["options"], gold=row["options"].index(row["answer"]),
        )


TOY_COLOURS = Benchmark(
    name="toy-colours", title="Toy colours", modality="image",
    data=DataSpec(download=("made by the test",), layout="colours.jsonl + PNGs"), load=load,
)
'''


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: the recipe's anchor {old!r} is not there once"
    path.write_text(text.replace(old, new))


def add_reader_backend(pkg: Path) -> None:
    """Recipe "A reader backend": a module in caprl/readers/, its name in BackendName, its line in READERS."""
    (pkg / "readers/echo.py").write_text(ECHO_READER)
    edit(pkg / "backends.py", 'BackendName = Literal["transformers", "openai", "vllm"]',
         'BackendName = Literal["transformers", "openai", "vllm", "echo"]')  # fmt: skip
    edit(pkg / "readers/__init__.py", 'READERS: dict[str, str] = {\n',
         'READERS: dict[str, str] = {\n    "echo": "caprl.readers.echo:EchoReader",\n')  # fmt: skip


def add_benchmark(pkg: Path) -> None:
    """Recipe "A Prism benchmark": a module in caprl/eval/benchmarks/ and its line in REGISTRY."""
    (pkg / "eval/benchmarks/toy.py").write_text(TOY_BENCHMARK)
    init = pkg / "eval/benchmarks/__init__.py"
    anchor = "from caprl.eval.benchmarks.tomato import TOMATO\n"
    edit(init, anchor, anchor + "from caprl.eval.benchmarks.toy import TOY_COLOURS\n")
    edit(init, "        SHAPES_VIDEO,\n", "        SHAPES_VIDEO,\n        TOY_COLOURS,\n")


def add_reward_mode(pkg: Path) -> None:
    """Recipe "A reward mode": its name in RewardMode and its line in MODES (here from existing question scores)."""
    engine = pkg / "reward/engine.py"
    edit(engine, 'RewardMode = Literal["hard", "soft", "blind_gain"]',
         'RewardMode = Literal["hard", "soft", "blind_gain", "soft_gain"]')  # fmt: skip
    edit(engine, '    "blind_gain": ModeRule(None, minus_blind=True),\n',
         '    "blind_gain": ModeRule(None, minus_blind=True),\n'
         '    "soft_gain": ModeRule("soft", minus_blind=True, samples_letter=False),\n')  # fmt: skip


# --- the copy's command ----------------------------------------------------------------------------------------------


def caprl(root: Path, *args: object) -> subprocess.CompletedProcess[str]:
    code = "import sys, caprl; assert caprl.__file__.startswith(sys.argv[1]), caprl.__file__; "
    code += "from caprl.cli import app; app(sys.argv[2:])"
    return subprocess.run(
        [sys.executable, "-c", code, str(root), *map(str, args)],
        cwd=root, env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "COLUMNS": "200"},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def extended(tmp_path_factory) -> Path:
    root = copy_package(tmp_path_factory.mktemp("pkg"))
    pkg = root / "caprl"
    add_reader_backend(pkg)
    add_benchmark(pkg)
    add_reward_mode(pkg)
    return root


def test_the_new_backend_mode_and_benchmark_are_offered(extended):
    score = caprl(extended, "reward", "score", "--help")
    assert score.returncode == 0, score.stderr
    assert "transformers|openai|vllm|echo" in score.stdout and "hard|soft|blind_gain|soft_gain" in score.stdout
    listed = caprl(extended, "eval", "list")
    assert listed.returncode == 0 and "toy-colours: Toy colours (image; metric accuracy)" in listed.stdout
    # The copy's floors still hold with the new rooms in place.
    from tests.test_architecture import lint

    assert lint(extended).returncode == 0


def test_the_new_backend_scores_with_the_new_mode(extended, tmp_path):
    data = tmp_path / "shapes"
    made = caprl(extended, "synth", "image", "--n", "2", "--out", data, "--no-progress")
    assert made.returncode == 0, made.stderr
    from caprl.data.io import read_dataset

    captions = tmp_path / "captions.jsonl"
    captions.write_text("".join(json.dumps({"id": s.id, "caption": s.references["exhaustive"]}) + "\n"
                                for s in read_dataset(data).samples))  # fmt: skip
    out = tmp_path / "rewards.jsonl"
    run = caprl(extended, "reward", "score", "--data", data, "--captions", captions, "--reader", "any",
                "--backend", "echo", "--mode", "soft_gain", "--out", out)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(results) == 2 and {r["settings"]["mode"] for r in results} == {"soft_gain"}
    assert {r["settings"]["reader"] for r in results} == {"echo:any"}
    for r in results:
        for q in r["questions"]:
            # soft_gain: P(gold | caption) less P(gold | no caption); with no caption the echo reader is uniform.
            assert q["blind_score"] == pytest.approx(1 / len(q["probs"]))
            assert q["score"] == pytest.approx(q["probs"][q["gold"]] - q["blind_score"])
        assert r["reward"] > 0  # the exhaustive captions name the answers


def test_the_new_benchmark_is_evaluated_with_the_new_backend(extended, tmp_path):
    from PIL import Image

    data = tmp_path / "toy"
    data.mkdir()
    rows = [
        {"id": "q0", "image": "a.png", "question": "Which colour fills the image?", "options": ["red", "blue"],
         "answer": "red"},
        {"id": "q1", "image": "b.png", "question": "Which colour fills the image?", "options": ["red", "blue"],
         "answer": "blue"},
    ]  # fmt: skip
    for row, colour in zip(rows, ("red", "blue"), strict=True):
        Image.new("RGB", (28, 28), colour).save(data / row["image"])
    (data / "colours.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    captions = tmp_path / "captions.jsonl"
    captions.write_text('{"media_id": "a.png", "caption": "All red."}\n{"media_id": "b.png", "caption": "Blue."}\n')
    out = tmp_path / "eval"
    run = caprl(extended, "eval", "prism", "-b", "toy-colours", "--data", f"toy-colours={data}", "--captions",
                captions, "--reader", "any", "--reader-backend", "echo", "--out", out)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((out / "report.json").read_text())
    bench = report["benchmarks"]["toy-colours"] if isinstance(report["benchmarks"], dict) else report["benchmarks"][0]
    assert bench["m_acc"] == pytest.approx(1.0)
