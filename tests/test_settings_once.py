"""Settings declared once: every flag a command takes from a settings model has the model's name, type, default and
help, and a flag declared by hand is declared in one place (or means something else where it recurs).

The commands are read as they are built (typer's click tree), so a flag added by hand beside its model, or a model
field whose flag drifted, fails here.
"""

from __future__ import annotations

import inspect
import typing
from typing import Annotated, Any, Literal

import pytest
import typer
from pydantic import BaseModel, ConfigDict, Field
from typer.main import get_command
from typer.testing import CliRunner

from caprl.cli import app
from caprl.errors import ConfigError, OptionError
from caprl.flags import SETTINGS_ATTR, Derived, Flag, fields_of, flag_help, settings_flags
from caprl.preflight import ModelFlags, model_flags

ROOT = get_command(app)

# Flags declared by hand in several commands that mean a different thing in each (so they cannot be one
# declaration): what each command reads or writes, or a count or seed of its own kind.
DIFFERENT_MEANINGS = {
    "--out": "each command writes its own kind of output (a dataset, a run folder, a jsonl, a parquet file)",
    "--data": "a dataset of MCQs, a folder of media, or NAME=PATH benchmark files",
    "--json": "print JSON (data inspect) vs also write a report file (models check)",
    "--limit": "input rows (data import) vs items of a source",
    "--media-root": "where relative media paths resolve (data) vs NAME=DIR benchmark videos (eval)",
    "--n": "images vs videos to generate",
    "--seed": "a dataset's, random weights', or held-out items' seed",
    "--size": "image side (224) vs video frame side (168)",
    "--batch-size": "captions per engine call, rows per forward, or items per captioner call",
}


def _commands(cmd=ROOT, path=()):
    if hasattr(cmd, "commands"):
        for name, sub in cmd.commands.items():
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), cmd


COMMANDS = dict(_commands())


def _options(cmd) -> dict[str, Any]:
    return {p.name: p for p in cmd.params if p.param_type_name == "option" and p.name != "help"}


def _plans(cmd) -> list[Derived]:
    return list(getattr(cmd.callback, SETTINGS_ATTR, []))


def _derived_names(cmd) -> set[str]:
    return {param for plan in _plans(cmd) for param in plan.params.values()}


def _base(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _base(typing.get_args(annotation)[0])
    if origin in (typing.Union, __import__("types").UnionType):
        return _base(next(a for a in typing.get_args(annotation) if a is not type(None)))
    return annotation


def _type_matches(option, annotation: Any) -> bool:
    base = _base(annotation)
    if base is bool and not option.is_flag:
        return False
    return _base(option.type_descriptor.annotation) == base


def test_every_command_that_maps_flags_onto_a_settings_model_derives_them():
    derived = {path: {plan.model.__name__ for plan in _plans(cmd)} for path, cmd in COMMANDS.items()}
    assert derived["reward score"] == {"RewardConfig", "ModelSpec"}
    assert derived["reward serve"] == {"RewardConfig", "ModelSpec", "ServerSettings", "ListenSettings", "JudgeSettings"}
    assert derived["eval prism"] == {"PrismConfig", "ModelSpec"}
    assert derived["qa generate"] == {"ModelSpec", "GenerationSettings", "ShardSettings", "ResumeSettings"}
    assert derived["qa filter"] == {"ModelSpec", "FilterConfig", "ShardSettings", "ResumeSettings"}
    assert derived["annotate"] == {"ModelSpec", "GenerationSettings", "ShardSettings", "ResumeSettings"}
    assert derived["demo"] == {"DemoSettings"}
    assert derived["models check"] == {"ModelSpec"}


@pytest.mark.parametrize("path", sorted(p for p, c in COMMANDS.items() if _plans(c)))
def test_derived_flags_have_the_models_name_type_default_and_help(path):
    cmd = COMMANDS[path]
    options = _options(cmd)
    for plan in _plans(cmd):
        fields = fields_of(plan.model)
        for field, param in plan.params.items():
            info, option = fields[field], options[param]
            where = f"{path}: {plan.model.__name__}.{field}"
            assert plan.flags[field] in option.opts, where
            assert _type_matches(option, info.annotation), where
            assert flag_help(info), f"{where} has no docstring"
            assert option.help.startswith(plan.help_of(field)), where
            required = info.is_required() and field not in plan.optional and field not in plan.defaults
            if required:
                assert option.required, where
            elif plan.unset:  # only what was typed reaches the command; the help names the default
                assert option.default is None, where
            else:
                expected = plan.defaults.get(field, info.get_default(call_default_factory=True))
                assert option.default == expected, where


def _declared_by_hand(path, cmd):
    signature = inspect.signature(cmd.callback)
    derived = _derived_names(cmd)
    for name, option in _options(cmd).items():
        if name not in derived:
            yield option.opts[0], option, signature.parameters[name].default


def test_a_flag_declared_by_hand_is_declared_once_or_means_something_else_where_it_recurs():
    declarations: dict[str, dict[int, list[str]]] = {}
    for path, cmd in COMMANDS.items():
        for flag, _, info in _declared_by_hand(path, cmd):
            declarations.setdefault(flag, {}).setdefault(id(info), []).append(path)
    written_twice = {flag: sorted(decl.values()) for flag, decl in declarations.items() if len(decl) > 1}
    assert set(written_twice) <= set(DIFFERENT_MEANINGS), {
        f: w for f, w in written_twice.items() if f not in DIFFERENT_MEANINGS
    }
    # ... and every flag listed as meaning different things does recur (the list keeps no stale entries).
    assert set(DIFFERENT_MEANINGS) <= set(written_twice)


def test_no_hand_flag_copies_a_derived_one():
    derived_help = {
        (option.opts[0], option.help)
        for cmd in COMMANDS.values()
        for name, option in _options(cmd).items()
        if name in _derived_names(cmd)
    }
    copies = [
        (path, flag)
        for path, cmd in COMMANDS.items()
        for flag, option, _ in _declared_by_hand(path, cmd)
        if (flag, option.help) in derived_help
    ]
    assert copies == []


def test_help_of_every_command_fits_80_columns():
    runner = CliRunner()
    for path in COMMANDS:
        result = runner.invoke(app, [*path.split(), "--help"], terminal_width=80, env={"COLUMNS": "80"})
        assert result.exit_code == 0, (path, result.output)
        wide = [line for line in result.output.splitlines() if len(line) > 80]
        assert wide == [], (path, wide)


# -- one reward model: flags, the training YAML, the service's bodies and verl's keys ----------------------------


def test_the_reward_settings_are_one_model():
    from caprl.reward.engine import RewardConfig
    from caprl.server.protocol import RewardOptions
    from caprl.train.config import PINNED_OPTIONS, RewardSettings
    from caprl.verl.remote import OPTION_KEYS

    reward = fields_of(RewardConfig)
    assert issubclass(RewardSettings, RewardConfig)
    assert set(reward) <= set(RewardSettings.model_fields) and set(PINNED_OPTIONS) <= set(reward)
    for name, info in reward.items():
        assert RewardSettings.model_fields[name].default == info.default, name
    assert set(RewardOptions.model_fields) == set(reward)
    assert tuple(reward) == OPTION_KEYS
    for path in ("reward score", "reward serve"):
        plan = next(p for p in _plans(COMMANDS[path]) if p.model is RewardConfig)
        assert set(plan.params) == set(reward), path


def test_a_run_sends_the_pinned_reward_options_and_those_its_config_sets():
    from caprl.train.config import PINNED_OPTIONS, RewardSettings

    plain = RewardSettings(service="http://127.0.0.1:1")
    assert set(plain.options()) == set(PINNED_OPTIONS)
    told = RewardSettings(service="http://127.0.0.1:1", path="generate", prompt="caprl", n_questions=8)
    assert told.options()["path"] == "generate" and told.options()["prompt"] == "caprl"
    assert told.options()["n_questions"] == 8 and "temperature" not in told.options()
    config = RewardSettings(reader="models/tiny/reader", temperature=0.3, mode="soft").reward_config()
    assert (config.temperature, config.mode, config.n_questions) == (0.3, "soft", None)


def test_one_rule_refuses_a_bad_value_at_every_door(tmp_path):
    """``n_questions=0`` is refused by RewardConfig's own check whether it comes as a flag, a training config key or
    a request option; each message names it the way the user wrote it."""
    from caprl.reward.engine import RewardConfig
    from caprl.server.parse import RequestError, effective_config
    from caprl.server.settings import ServerSettings
    from caprl.train.config import load_config

    result = CliRunner().invoke(
        app, ["reward", "score", "--data", tmp_path, "--captions", tmp_path, "--reader", tmp_path, "--out",
              tmp_path / "o", "--n", "0"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--n: Input should be greater than or equal to 1 (got 0)" in result.output
    with pytest.raises(ConfigError, match=r"reward\.n_questions: Input should be greater than or equal to 1"):
        load_config(None, ["run_dir=r", "model.policy=m", "data.train=d", "reward.reader=x", "reward.n_questions=0"])
    with pytest.raises(RequestError, match=r"options\.n_questions.*greater than or equal to 1"):
        effective_config({"n_questions": 0}, RewardConfig(), ServerSettings())


# -- the adapter itself --------------------------------------------------------------------------------------------


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    mode: Literal["fast", "exact"] = "fast"
    """How to count. The rest of the docstring stays out of --help."""
    n_items: Annotated[int | None, Flag("--n", short="-n")] = Field(default=None, ge=1)
    """Items per call."""
    cache: bool = True
    """Keep results on disk."""
    name: str
    """What to call the run."""


def _app(**kwargs: Any) -> tuple[typer.Typer, list[Any]]:
    seen: list[Any] = []
    cli = typer.Typer(rich_markup_mode=None)

    @cli.command()
    @settings_flags(Limits, into="limits", **kwargs)
    def run(out: str = typer.Option("o", "--out", help="Where."), limits: Any = None) -> None:
        seen.append((out, limits))

    return cli, seen


def test_flags_are_built_from_the_fields_and_the_command_receives_the_model():
    cli, seen = _app()
    result = CliRunner().invoke(cli, ["--name", "a", "-n", "3", "--no-cache", "--mode", "exact"])
    assert result.exit_code == 0, result.output
    assert seen == [("o", Limits(name="a", n_items=3, cache=False, mode="exact"))]
    helped = CliRunner().invoke(cli, ["--help"], terminal_width=200).output
    assert "How to count." in helped and "The rest of the docstring" not in helped
    assert "--no-cache" in helped
    assert CliRunner().invoke(cli, ["--mode", "exact"]).exit_code == 2  # --name is required, as the model says


def test_a_value_the_model_refuses_is_named_by_its_flag():
    cli, seen = _app()
    result = CliRunner().invoke(cli, ["--name", "a", "--n", "0"])
    assert isinstance(result.exception, OptionError) and not seen
    assert str(result.exception) == "--n: Input should be greater than or equal to 1 (got 0)"


def test_unset_mode_passes_only_what_was_typed_and_names_the_defaults():
    cli, seen = _app(unset=True, optional=("name",))
    assert CliRunner().invoke(cli, ["--n", "2", "--no-cache"]).exit_code == 0
    assert seen == [("o", {"n_items": 2, "cache": False})]
    helped = CliRunner().invoke(cli, ["--help"], terminal_width=200).output
    assert "(default: fast)" in helped and "(default: --cache)" in helped


def test_a_command_can_give_its_own_default_flag_name_and_help():
    cli, seen = _app(defaults={"n_items": 5}, names={"mode": "--counting"}, helps={"cache": "Disk: {doc}"})
    assert CliRunner().invoke(cli, ["--name", "a", "--counting", "exact"]).exit_code == 0
    assert seen[0][1].n_items == 5 and seen[0][1].mode == "exact"
    helped = CliRunner().invoke(cli, ["--help"], terminal_width=200).output
    assert "Disk: keep results on disk." in helped


def test_mistakes_in_a_derivation_fail_when_the_command_is_defined():
    with pytest.raises(TypeError, match="no field of Limits"):
        settings_flags(Limits, into="limits", exclude=("nope",))

    class Undocumented(BaseModel):
        size: int = 1

    with pytest.raises(TypeError, match="Undocumented.size has no docstring"):
        settings_flags(Undocumented, into="s")(lambda s=None: None)

    class Nested(BaseModel):
        model_config = ConfigDict(use_attribute_docstrings=True)
        sizes: dict[str, int] = {}
        """Sizes."""

    with pytest.raises(TypeError, match="cannot be a flag"):
        settings_flags(Nested, into="s")(lambda s=None: None)

    def by_hand(cache: bool = True, limits: Any = None) -> None: ...

    with pytest.raises(TypeError, match=r"declares \['cache'\] by hand"):
        settings_flags(Limits, into="limits")(by_hand)
    with pytest.raises(TypeError, match="has no parameter 'settings'"):
        settings_flags(Limits, into="settings")(by_hand)


def test_model_flags_give_one_checked_model_spec(tmp_path):


    seen: list[ModelFlags] = []
    cli = typer.Typer(rich_markup_mode=None)

    @cli.command()
    @model_flags("judge", flag="--judge", role="captioner", what="Judge", prefix="judge-")
    def run(judge: ModelFlags | None = None) -> None:
        seen.append(judge)

    url = "http://127.0.0.1:9/v1"
    assert CliRunner().invoke(cli, ["--judge", url, "--judge-model", "m"]).exit_code == 0
    spec = seen[0].spec()
    assert (spec.backend, spec.served_model, spec.location) == ("openai", "m", url)
    result = CliRunner().invoke(cli, ["--judge", str(tmp_path), "--judge-model", "m"])
    assert result.exit_code == 0
    with pytest.raises(OptionError, match=r"--judge-model names the model on an OpenAI-compatible server \(--judge"):
        seen[1].spec(check=False)
    helped = CliRunner().invoke(cli, ["--help"], terminal_width=200).output
    assert "Judge: the backend that serves it" in helped and "--judge-device" in helped



def test_the_adapters_example_runs():
    import doctest

    import caprl.flags

    result = doctest.testmod(caprl.flags)
    assert result.attempted == 3 and result.failed == 0
