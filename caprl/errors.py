"""User mistakes as one line: the ``CaprlError`` family, which the ``caprl`` command turns into ``error: ...``
(plus at most a hint) and a non-zero exit, and helpers that word such messages.

A ``CaprlError`` is something the user can fix from its message: a path that does not exist, a malformed input
line, a config field, a flag value, an output folder started with other settings. Library code raises it where
it finds the problem, with the file, line, field or flag in the message; ``caprl.cli`` catches it once, at the
command-line boundary (``caprl.cli.CaprlGroup``). Every other exception is a bug and keeps its traceback.
``caprl --debug ...`` (or ``CAPRL_DEBUG=1``) shows the traceback of a ``CaprlError`` too, for bug reports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

DEBUG_ENV = "CAPRL_DEBUG"
M = TypeVar("M", bound=BaseModel)


class CaprlError(Exception):
    """A mistake the user can fix from the message alone (no traceback)."""

    exit_code: int = 1
    hint: str | None = None

    def __init__(self, message: str = "", *args: Any, hint: str | None = None) -> None:
        super().__init__(message, *args)
        if hint is not None:
            self.hint = hint


class InputError(CaprlError, ValueError):
    """A file, folder or model that is missing, of the wrong kind, or malformed (names the file and line)."""


class MissingInput(InputError, FileNotFoundError):
    """A path that does not exist."""


class OptionError(CaprlError, ValueError):
    """A flag value that is not allowed (names the flag)."""

    exit_code = 2


class ConfigError(CaprlError, ValueError):
    """A config file or override that does not make a valid config (names the file, line or field)."""

    exit_code = 2


class RunStateError(CaprlError, ValueError):
    """An output folder that does not fit the command: started with other settings, or missing what it needs."""


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def _compact(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_validation(exc: ValidationError, *, names: Mapping[str, str] | None = None, limit: int = 3) -> str:
    """A pydantic error as ``where: what (got X)`` phrases joined by ``; `` (no links, no type codes). ``names``
    maps a field path (``n_questions``) to what the user typed (``--n``); other paths are named as they are."""
    names = names or {}
    parts = []
    errors = exc.errors(include_url=False)
    for err in errors[:limit]:
        loc = ".".join(str(p) for p in err["loc"])
        where = names.get(loc, loc)
        lead = f"{where}: " if where else ""
        if err["type"] == "missing":
            parts.append(f"{lead}required")
        elif err["type"] == "extra_forbidden":
            parts.append(f"{lead}unknown setting")
        elif not loc:  # a check across fields: its message names them
            parts.append(err["msg"].removeprefix("Value error, "))
        else:
            parts.append(f"{lead}{err['msg'].removeprefix('Value error, ')} (got {_compact(err.get('input'))})")
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def describe_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """``key: old -> new`` for every setting that differs, nested ones by dotted path (the message of a refused
    resume); ``""`` when nothing does."""
    a, b = _flatten(old), _flatten(new)
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "; ".join(f"{k}: {_compact(a.get(k))} -> {_compact(b.get(k))}" for k in changed)
