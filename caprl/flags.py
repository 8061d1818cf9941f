"""Command-line flags derived from a pydantic settings model: each setting's name, type, default and help are
written once, on the model, and every command that offers it gets the same flag (as TRL derives its CLI from its
config dataclasses).

A field ``max_batch: int = 64`` with a docstring becomes ``--max-batch <int>  <the docstring's first sentence>
[default: 64]``; a bool becomes ``--x/--no-x``. ``Flag`` (in the field's ``Annotated`` metadata) gives another name
or a short form. The command declares a parameter of the model's type and ``settings_flags`` puts the model's flags
in its place; the values typed are validated by the model, so a value it refuses is an ``OptionError`` naming the
flag, just as a YAML file or a service's JSON body validated by the same model names the field.

>>> class Limits(BaseModel):
...     max_batch: int = Field(default=64, ge=1, description="Items per engine call.")
>>> @settings_flags(Limits, into="limits")
... def serve(host: str = "127.0.0.1", limits: Limits = None): ...
>>> [p.name for p in inspect.signature(serve).parameters.values()]
['host', 'max_batch']
"""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError  # noqa: F401 (BaseModel, Field: the example, a test)
from pydantic.fields import FieldInfo

from caprl.errors import OptionError, describe_validation

SETTINGS_ATTR = "__caprl_settings__"
"""Where a command wrapped by ``settings_flags`` lists its ``Derived`` parts (read by the CLI consistency test)."""

_PLAIN = (int, float, str, bool, Path)


@dataclass(frozen=True)
class Flag:
    """A field's flag where it is not ``--field-name``: ``n_questions: Annotated[int | None, Flag("--n")]``."""

    name: str | None = None
    short: str | None = None


@dataclass(frozen=True)
class Derived:
    """The flags one model gave one command (read by the test that compares every command with its models)."""

    model: type
    into: str
    flags: dict[str, str]
    """field -> its flag in this command."""
    params: dict[str, str]
    """field -> the command's parameter that carries it."""
    unset: bool
    defaults: dict[str, Any]
    """This command's own defaults, where not the model's."""
    optional: frozenset[str]
    helps: dict[str, str]
    """This command's help templates (``{doc}``: the field's sentence), where not the sentence alone."""

    def help_of(self, field: str) -> str:
        template, doc = self.helps.get(field, "{doc}"), flag_help(fields_of(self.model)[field])
        if not template.startswith("{doc}"):  # the sentence goes on after a lead-in: "Reader: a catalog name ..."
            doc = doc[:1].lower() + doc[1:]
        return template.format(doc=doc)


def fields_of(model: type) -> dict[str, FieldInfo]:
    """The fields of a pydantic model or pydantic dataclass."""
    fields = getattr(model, "model_fields", None) or getattr(model, "__pydantic_fields__", None)
    if fields is None:
        raise TypeError(f"{model!r} is not a pydantic model or pydantic dataclass")
    return fields


def _flag_meta(info: FieldInfo) -> Flag:
    return next((m for m in info.metadata if isinstance(m, Flag)), Flag())


def flag_name(model: type, field: str) -> str:
    """The flag that sets ``field`` of ``model``: ``--field-name`` unless its ``Flag`` says otherwise."""
    return _flag_meta(fields_of(model)[field]).name or "--" + field.replace("_", "-")


def flag_help(info: FieldInfo) -> str:
    """The first sentence of the field's docstring: the line a ``--help`` shows (the rest stays in the API docs)."""
    text = " ".join((info.description or "").split())
    first = re.split(r"(?<=[.!?])\s+(?=[A-Z(`])", text, maxsplit=1)[0]
    return first.replace("``", "")


def _cli_type(annotation: Any) -> Any:
    """The field's type as typer takes it: plain types, ``Literal`` choices and ``X | None`` of those."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _cli_type(typing.get_args(annotation)[0])
    if annotation in _PLAIN or origin is Literal:
        return annotation
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(annotation)) == 2:
            return _cli_type(args[0]) | None
    raise TypeError(f"{annotation!r} cannot be a flag (plain types, Literal and X | None only)")


def _optional(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _default(info: FieldInfo, field: str, plan: Derived) -> Any:
    """The default this command shows and uses: ``...`` for a required flag."""
    if field in plan.defaults:
        return plan.defaults[field]
    if field in plan.optional:
        return None
    return ... if info.is_required() else info.get_default(call_default_factory=True)


def _option(field: str, plan: Derived) -> tuple[Any, Any]:
    """``(annotation, typer.Option)`` of one field."""
    import typer

    info = fields_of(plan.model)[field]
    name, short = plan.flags[field], _flag_meta(info).short
    if not flag_help(info):
        raise TypeError(f"{plan.model.__name__}.{field} has no docstring: its flag would have no help")
    annotation, help_text, default = _cli_type(info.annotation), plan.help_of(field), _default(info, field, plan)
    if plan.unset and default is not ...:  # the command receives only what was typed (a preset fills in the rest)
        shown, default = default, None
        if isinstance(shown, bool):
            shown = name if shown else "--no-" + name.removeprefix("--")
        if shown is not None:
            help_text += f" (default: {shown})"
    if default is None and not _optional(annotation):
        annotation = annotation | None
    decls = [name] if short is None else [name, short]
    if bool in (annotation, *typing.get_args(annotation)):
        decls = [f"{name}/--no-{name.removeprefix('--')}"] + ([short] if short else [])
    return annotation, typer.Option(default, *decls, help=help_text, show_default=not plan.unset)


def build_settings(model: type, values: dict[str, Any], *, renamed: dict[str, str] | None = None) -> Any:
    """``model(**values)``; a value it refuses is an ``OptionError`` naming the flag that gave it."""
    try:
        return model(**values)
    except ValidationError as exc:
        names = {f: flag_name(model, f) for f in fields_of(model)} | dict(renamed or {})
        raise OptionError(describe_validation(exc, names=names)) from None


def settings_flags(
    model: type,
    *,
    into: str,
    exclude: Iterable[str] = (),
    unset: bool = False,
    defaults: dict[str, Any] | None = None,
    names: dict[str, str] | None = None,
    optional: Iterable[str] = (),
    helps: dict[str, str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Replace the command's parameter ``into`` by one flag per field of ``model`` (but ``exclude``).

    The command then receives ``model(**flags)`` in ``into`` — or, with ``unset=True``, the dict of the flags that
    were typed (every flag defaults to None), for a command that lays them over a preset or checks them itself.
    Fields in ``exclude`` are not offered (the command sets them from other inputs). Where a command needs its own:
    ``defaults`` (``qa generate`` asks for longer replies than ``annotate``), ``names`` (flag names: one command
    with two models of a kind, ``--reader``/``--judge``), ``optional`` (a field the model requires, offered as
    optional: the command says when it is needed) and ``helps`` (help templates around the field's ``{doc}``).
    """
    fields_all = fields_of(model)
    skipped = set(exclude)
    for what, given in (("exclude", skipped), ("defaults", defaults), ("names", names), ("optional", optional)):
        unknown = set(given or ()) - set(fields_all)
        if unknown:
            raise TypeError(f"{what} names no field of {model.__name__}: {sorted(unknown)}")
    fields = [f for f in fields_all if f not in skipped]
    flags = {f: (names or {}).get(f) or flag_name(model, f) for f in fields}
    # A flag's parameter is named after the flag, so two models' fields of one name can sit in one command under
    # different flags (--max-new-tokens, --judge-max-new-tokens).
    params = {f: flags[f].removeprefix("--").replace("-", "_") for f in fields}
    plan = Derived(
        model=model, into=into, flags=flags, params=params, unset=unset, defaults=dict(defaults or {}),
        optional=frozenset(optional), helps=dict(helps or {}),
    )  # fmt: skip

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(func, eval_str=True)
        if into not in sig.parameters:
            raise TypeError(f"{func.__name__} has no parameter {into!r} for {model.__name__}'s flags")
        clash = set(params.values()) & (set(sig.parameters) - {into})
        if clash:
            raise TypeError(f"{func.__name__} declares {sorted(clash)} by hand; {model.__name__} gives them")
        new: list[inspect.Parameter] = []
        for p in sig.parameters.values():
            if p.name != into:
                new.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
                continue
            for f in fields:
                annotation, option = _option(f, plan)
                kind = inspect.Parameter.KEYWORD_ONLY
                new.append(inspect.Parameter(params[f], kind, default=option, annotation=annotation))

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            values = {f: kwargs.pop(p) for f, p in params.items()}
            if unset:
                kwargs[into] = {f: v for f, v in values.items() if v is not None}
            else:
                kwargs[into] = build_settings(model, values, renamed=flags)
            return func(**kwargs)

        wrapper.__signature__ = sig.replace(parameters=new)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in new} | {"return": sig.return_annotation}
        setattr(wrapper, SETTINGS_ATTR, [*getattr(func, SETTINGS_ATTR, []), plan])
        return wrapper

    return decorate
