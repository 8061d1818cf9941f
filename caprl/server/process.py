"""``caprl reward serve`` as a child process: start, wait until ready, stop gracefully, restart on the same port.

For launchers and benchmarks that want the service in its own process (its own interpreter and GIL), as in
production.

>>> with ServiceProcess("models/reader", ["--mode", "soft"]) as svc:      # doctest: +SKIP
...     RewardClient(svc.url).score(items)
>>> judge_only = ServiceProcess(None, ["--judge", "models/vlm", "--media-root", "data"])   # doctest: +SKIP
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServiceProcess:
    """One ``caprl reward serve --reader READER ARGS`` child on ``host:port`` (a free port by default); ``reader``
    None leaves ``--reader`` out (then ``args`` give ``--judge``)."""

    def __init__(
        self,
        reader: str | Path | None,
        args: Sequence[str] = (),
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        log_path: str | Path | None = None,
    ):
        self.reader, self.args, self.host = None if reader is None else str(reader), list(args), host
        self.port = port or free_port(host)
        self.env = {**os.environ, **(env or {})}
        self.log_path = Path(log_path) if log_path else None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, *, wait: bool = True, timeout: float = 180.0) -> ServiceProcess:
        cmd = [sys.executable, "-m", "caprl.cli", "reward", "serve"]
        cmd += ["--reader", self.reader] if self.reader is not None else []
        cmd += ["--host", self.host, "--port", str(self.port), "--log-level", "warning", *self.args]
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()  # the child holds its own descriptor
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"the reward service exited with {self.proc.returncode}{self._log_hint()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the reward service on {self.url} was not ready after {timeout:g} s{self._log_hint()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM (in-flight requests are answered first), then SIGKILL after ``timeout``; the exit code."""
        if self.proc is None:
            return None
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def restart(self, *, timeout: float = 180.0) -> None:
        self.stop()
        self.start(timeout=timeout)

    def _log_hint(self) -> str:
        return f" (log: {self.log_path})" if self.log_path else ""

    def __enter__(self) -> ServiceProcess:
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
