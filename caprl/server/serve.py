"""Running the service: in the foreground (``caprl reward serve``) or in a background thread (tests, notebooks).

Shutdown is graceful: on SIGTERM/SIGINT (or ``stop()``) /health turns 503 at once, the port stops accepting,
requests in flight are answered (up to ``shutdown_timeout`` seconds), queued work is finished, then the process
exits.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import FrameType

import uvicorn

from caprl.server.app import create_app
from caprl.server.settings import ServerSettings
from caprl.server.state import EngineSource, JudgeSource, ServiceState


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServiceState):
        super().__init__(config)
        self.state = state

    def drain(self) -> None:
        # Load balancers and clients see "draining" while the in-flight requests finish.
        if self.state.status in ("ready", "loading"):
            self.state.status = "draining"
            self.state.metrics.ready.set(0)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.drain()
        super().handle_exit(sig, frame)


def _config(app: object, host: str, port: int, log_level: str, shutdown_timeout: float) -> uvicorn.Config:
    return uvicorn.Config(
        app,  # type: ignore[arg-type]
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,  # per-request lines cost more than scoring a small request; /metrics counts them
        timeout_graceful_shutdown=shutdown_timeout,
        lifespan="on",
    )


def serve(
    source: EngineSource | None,
    settings: ServerSettings | None = None,
    *,
    judge: JudgeSource | None = None,
    host: str = "127.0.0.1",
    port: int = 18889,
    log_level: str = "info",
    shutdown_timeout: float = 30.0,
) -> int:
    """Serve until SIGTERM/SIGINT. Returns 0, or 1 when the reader or the judge failed to load (the server then
    exits)."""
    _log_to_stderr(log_level)
    app = create_app(source, settings, judge=judge)
    state: ServiceState = app.state.service
    server = _Server(_config(app, host, port, log_level, shutdown_timeout), state)
    failed: list[BaseException] = []

    def on_load_failure(exc: BaseException) -> None:
        failed.append(exc)
        server.should_exit = True

    state.on_load_failure = on_load_failure
    server.run()
    return 1 if failed else 0


def _log_to_stderr(level: str) -> None:
    # uvicorn configures only its own loggers; the service's (load time, engine failures) would go nowhere.
    logger = logging.getLogger("caprl")
    logger.setLevel(level.upper())
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        logger.addHandler(handler)


class BackgroundServer:
    """The service on a loopback port in a daemon thread; ``url`` once started.

    >>> with BackgroundServer(RewardEngine(reader)) as srv:       # doctest: +SKIP
    ...     httpx.post(srv.url + "/get_reward", json=body)
    """

    def __init__(
        self,
        source: EngineSource | None,
        settings: ServerSettings | None = None,
        *,
        judge: JudgeSource | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 10.0,
        log_level: str = "warning",
    ):
        self.app = create_app(source, settings, judge=judge)
        self.state: ServiceState = self.app.state.service
        self.host, self.port = host, port
        self._server = _Server(_config(self.app, host, port, log_level, shutdown_timeout), self.state)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        # Bind here, not in uvicorn, so port 0 gives a free port with no race and a restart can reuse a port.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name=f"caprl-server-{self.port}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the reward service did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Graceful: in-flight requests are answered first."""
        if self._thread is None:
            return
        self._server.drain()
        self._server.should_exit = True
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
