"""Command-line flags derived from a pydantic settings model: each setting's name, type, default and help are
written once, on the model, and every command that offers it gets the same flag (as TRL derives its CLI from its
config dataclasses).

A field ``max_batch: int = 64`` with a docstring becomes ``--max-batch INTEGER  <the docstring's first sentence>
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

from pydantic import BaseModel, Field, ValidationError  # noqa: F401 (Field: the example)
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
    """The flags one model gave one command: field -> command parameter name, and how they were built."""

    model: type
    into: str
    params: dict[str, str]
    unset: bool
    defaults: dict[str, Any]


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


def _option(model: type, field: str, *, unset: bool, default: Any = inspect.Parameter.empty) -> tuple[Any, Any]:
    """``(annotation, typer.Option)`` of one field; ``default``: this command's default, where not the model's."""
    import typer

    info = fields_of(model)[field]
    name, short = flag_name(model, field), _flag_meta(info).short
    annotation = _cli_type(info.annotation)
    help_text = flag_help(info)
    if not help_text:
        raise TypeError(f"{model.__name__}.{field} has no docstring: its flag would have no help")
    own = info.get_default(call_default_factory=True) if default is inspect.Parameter.empty else default
    if info.is_required() and default is inspect.Parameter.empty:
        default = ...
    elif unset:  # the command receives only what was typed (a preset fills in the rest)
        default = None
        shown = own
        if isinstance(shown, bool):
            shown = name if shown else "--no-" + name.removeprefix("--")
        if shown is not None:
            help_text += f" (default: {shown})"
        if not _optional(annotation):
            annotation = annotation | None
    else:
        default = own
    decls = [name] if short is None else [name, short]
    if bool in (annotation, *typing.get_args(annotation)):
        decls = [f"{name}/--no-{name.removeprefix('--')}"] + ([short] if short else [])
    return annotation, typer.Option(default, *decls, help=help_text, show_default=not unset)


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
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Replace the command's parameter ``into`` by one flag per field of ``model`` (but ``exclude``).

    The command then receives ``model(**flags)`` in ``into`` — or, with ``unset=True``, the dict of the flags that
    were typed (every flag defaults to None), for a command that lays them over a preset. Fields in ``exclude`` are
    not offered (the command sets them from other inputs) and keep the model's defaults. ``defaults`` gives this
    command's own default of a field (``qa generate`` asks for longer replies than ``annotate``).
    """
    skipped, own = set(exclude), dict(defaults or {})
    unknown = (skipped | set(own)) - set(fields_of(model))
    if unknown:
        raise TypeError(f"exclude/defaults name no field of {model.__name__}: {sorted(unknown)}")
    fields = [f for f in fields_of(model) if f not in skipped]

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(func, eval_str=True)
        if into not in sig.parameters:
            raise TypeError(f"{func.__name__} has no parameter {into!r} for {model.__name__}'s flags")
        # A flag's parameter is named after the flag, so two models' fields of one name can sit in one command
        # under different flags (--max-new-tokens, --judge-max-new-tokens).
        params = {f: flag_name(model, f).removeprefix("--").replace("-", "_") for f in fields}
        clash = set(params.values()) & (set(sig.parameters) - {into})
        if clash:
            raise TypeError(f"{func.__name__} declares {sorted(clash)} by hand; {model.__name__} gives them")
        new: list[inspect.Parameter] = []
        for p in sig.parameters.values():
            if p.name != into:
                new.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
                continue
            for f in fields:
                annotation, option = _option(model, f, unset=unset, **({"default": own[f]} if f in own else {}))
                kind = inspect.Parameter.KEYWORD_ONLY
                new.append(inspect.Parameter(params[f], kind, default=option, annotation=annotation))

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            values = {f: kwargs.pop(p) for f, p in params.items()}
            if unset:
                kwargs[into] = {f: v for f, v in values.items() if v is not None}
            else:
                kwargs[into] = build_settings(model, values)
            return func(**kwargs)

        wrapper.__signature__ = sig.replace(parameters=new)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in new} | {"return": sig.return_annotation}
        derived = Derived(model=model, into=into, params=params, unset=unset, defaults=own)
        setattr(wrapper, SETTINGS_ATTR, [*getattr(func, SETTINGS_ATTR, []), derived])
        return wrapper

    return decorate
