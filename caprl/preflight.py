"""Checks a command makes before it loads any model or writes anything: paths that exist, model folders of the
right kind, ports that can be bound, option values that go together. Each failure is a ``CaprlError`` naming the
flag and the value, so a mistake costs a second, not a model load.

>>> check_model("models/tiny/reader", role="reader", flag="--reader")      # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from caprl.backends import LOCAL_BACKENDS, ModelSpec, backend_of, is_url
from caprl.errors import InputError, MissingInput, OptionError

Role = Literal["reader", "captioner"]

# A Hugging Face repo id: "name" or "namespace/name" (letters, digits, "-", "_", ".").
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TINY_HINT = "build local tiny models with `caprl models tiny --out models/tiny`"
_READER_HINT = "`caprl models list` names the pretrained readers (a name works as the reader); or " + _TINY_HINT
GGUF_MAGIC = b"GGUF"


def named(flag: str, value: object) -> str:
    """How a message names a value: ``--data x`` for a flag, ``data.train=x`` for a config key, ``x`` for an
    argument (flag ``""``)."""
    if not flag:
        return str(value)
    return f"{flag} {value}" if flag.startswith("-") else f"{flag}={value}"


def existing_path(path: str | Path, flag: str, *, what: str = "file or folder") -> Path:
    """``path`` if it exists, else a ``MissingInput`` naming the flag."""
    p = Path(path).expanduser()
    if not p.exists():
        raise MissingInput(f"{named(flag, path)}: no such {what}")
    return p


def looks_local(spec: str) -> bool:
    """Whether ``spec`` can only be meant as a local path (so it must never reach the hub resolver): it starts like a
    path, is not a valid repo id, or its first part is a folder here (``models/nope`` when ``models/`` exists)."""
    if spec.startswith(("/", ".", "~")) or "\\" in spec or spec.endswith("/") or not _HUB_ID.match(spec):
        return True
    head = spec.split("/", 1)[0]
    return "/" in spec and Path(head).is_dir()


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)


def _check_kind(folder: Path, spec: str, role: Role, flag: str) -> None:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise InputError(f"{named(flag, spec)}: not a model folder (no config.json)", hint=_TINY_HINT)
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{named(flag, spec)}: config.json is not valid JSON ({exc})") from None
    is_vlm = isinstance(config, dict) and "vision_config" in config
    if role == "reader" and is_vlm:
        raise InputError(
            f"{named(flag, spec)}: a vision-language model (a captioner); the reader is a text-only language model",
            hint="e.g. models/tiny/reader from `caprl models tiny`",
        )
    if role == "captioner" and not is_vlm:
        raise InputError(
            f"{named(flag, spec)}: a text-only model; a captioner is a vision-language model (config.json has no "
            "vision_config)",
            hint="e.g. models/tiny/captioner from `caprl models tiny`",
        )


def _check_gguf(path: Path, spec: str, flag: str) -> None:
    if not path.exists():
        raise MissingInput(f"{named(flag, spec)}: no such GGUF file")
    if not path.is_file():
        raise InputError(f"{named(flag, spec)}: a folder, not a GGUF file")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic != GGUF_MAGIC:
        raise InputError(f"{named(flag, spec)}: not a GGUF file (it does not start with {GGUF_MAGIC!r})")


def check_model(spec: str, *, role: Role, flag: str, backend: str | None = None) -> None:
    """Fail now, with one line, when ``spec`` cannot be the ``role`` model: a local-looking path that does not exist,
    a folder that is not a model or is the other kind, a hub id that is not cached while the hub is offline.
    A reader may also be a catalog name (``caprl models list``; fetched on first use) or a ``.gguf`` file
    (converted once). Server URLs and non-local backends are checked when they are first called."""
    if is_url(spec) or backend_of(spec, backend) not in LOCAL_BACKENDS:
        return
    if role == "reader":
        from caprl.store.resolve import is_catalog_name, is_gguf

        if is_catalog_name(spec):
            return  # fetched from the package registry when loaded (not a hub id, not a path)
        if is_gguf(spec):
            _check_gguf(Path(spec).expanduser(), spec, flag)
            return
    folder = Path(spec).expanduser()
    if folder.exists():
        if not folder.is_dir():
            raise InputError(f"{named(flag, spec)}: a file, not a model folder")
        _check_kind(folder, spec, role, flag)
        return
    hint = _READER_HINT if role == "reader" else _TINY_HINT
    if looks_local(spec):
        raise MissingInput(f"{named(flag, spec)}: no such model folder", hint=hint)
    if _hub_offline() and not _in_hub_cache(spec):
        raise MissingInput(
            f"{named(flag, spec)}: not a local folder, and not in the Hugging Face cache (HF_HUB_OFFLINE is set)",
            hint=f"give a local model folder; {hint}",
        )


def model_spec(
    location: str,
    *,
    role: Role,
    flag: str,
    backend: str | None = None,
    model: str | None = None,
    model_flag: str = "--model",
    device: str | None = None,
    check: bool = True,
    **options: Any,
) -> ModelSpec:
    """A command's model flags as one ``ModelSpec``, checked now (``check_model``; ``check=False``: only the flags,
    for a model this run may not load): a ``--model`` without a server URL is an ``OptionError`` naming both flags."""
    if model and backend_of(location, backend) != "openai":
        raise OptionError(f"{model_flag} names the model on an OpenAI-compatible server ({flag} URL)")
    spec = ModelSpec.parse(location, backend=backend, model=model, device=device, **options)
    if check:
        check_model(spec.location, role=role, flag=flag, backend=spec.backend)
    return spec


def check_port(host: str, port: int, flag: str = "--port") -> None:
    """Fail now when ``host:port`` cannot be listened on (in use, or not an address of this machine)."""
    if not 0 < port < 65536:
        raise OptionError(f"{named(flag, port)}: a port is a number from 1 to 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OptionError(f"--host {host}: not an address this machine knows ({exc.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        # The server sets SO_REUSEADDR too: a port in TIME_WAIT after a restart is free for it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(addr)
        except OSError as exc:
            raise OptionError(f"{named(flag, port)}: cannot listen on {host}:{port} ({exc.strerror})") from None



@dataclass(frozen=True)
class ModelFlags:
    """A command's flags for one model (``--reader``, ``--backend``, ``--model``, ``--device``) as typed; ``spec()``
    checks them into a ``ModelSpec`` once the command knows it needs the model."""

    location: str | None
    backend: str | None
    served_model: str | None
    device: str | None
    role: Role
    flags: dict[str, str]
    """ModelSpec field -> the flag that set it."""

    @property
    def given(self) -> str:
        """The location typed; an ``OptionError`` naming its flag when none was."""
        if self.location is None:
            raise OptionError(f"{self.flags['location']} is needed")
        return self.location

    @property
    def backend_name(self) -> str:
        """The backend that will serve it (``caprl.backends.backend_of``)."""
        return backend_of(self.given, self.backend)

    def spec(self, *, check: bool = True, device: str | None = None, **options: Any) -> ModelSpec:
        """The checked ``ModelSpec`` (``model_spec``), with the backend's ``options``; ``device`` where the command
        has one device flag for several models."""
        return model_spec(
            self.given, role=self.role, flag=self.flags["location"], backend=self.backend,
            model=self.served_model, model_flag=self.flags.get("served_model", "--model"),
            device=device if device is not None else self.device,
            check=check, **options,
        )  # fmt: skip


def model_flags(
    into: str,
    *,
    flag: str,
    role: Role,
    what: str,
    prefix: str = "",
    served_model: bool = True,
    device: bool = True,
    required: bool = False,
    note: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A command's flags for one model, from ``ModelSpec``'s fields: ``flag`` (where it is), ``--{prefix}backend``,
    ``--{prefix}model`` and ``--{prefix}device``; the command receives them as ``ModelFlags`` in ``into``. ``what``
    leads each help line ("Reader: ..."); ``note`` ends the location's. ``flag=""``: the location is the command's
    argument, not a flag (the command fills ``ModelFlags.location`` in).

    >>> @model_flags("reader", flag="--reader", role="reader", what="Reader")           # doctest: +SKIP
    ... def score(reader: ModelFlags | None = None): spec = reader.spec()
    """
    import functools

    from caprl.flags import settings_flags

    names = {"location": flag, "backend": f"--{prefix}backend", "served_model": f"--{prefix}model"}
    names["device"] = f"--{prefix}device"
    exclude = ["options"] + ([] if served_model else ["served_model"]) + ([] if device else ["device"])
    exclude += [] if flag else ["location"]
    helps = {f: f"{what}: {{doc}}" for f in names if f not in exclude}
    if flag:
        helps["location"] += note
    derive = settings_flags(
        ModelSpec, into=into, unset=True, exclude=exclude, names={f: n for f, n in names.items() if f not in exclude},
        optional=("backend",) if required else ("backend", "location"), helps=helps,
    )  # fmt: skip

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def typed(**kwargs: Any) -> Any:
            given = kwargs[into]
            kwargs[into] = ModelFlags(
                location=given.get("location"), backend=given.get("backend"),
                served_model=given.get("served_model"), device=given.get("device"), role=role, flags=names,
            )  # fmt: skip
            return func(**kwargs)

        return derive(typed)  # wraps() keeps func's signature (via __wrapped__) and the flags it derived already

    return decorate
