"""Run a server in the foreground until SIGINT or SIGTERM, then stop it cleanly.

    serve_until_signalled(ServerOptions(repository=Path("model_repository")), on_ready=print)

The signal handlers are restored afterwards, so tests can call this in-process.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

from tritonforge.errors import ServerError
from tritonforge.serving.launcher import EmbeddedTriton, ServerOptions


def serve_until_signalled(
    options: ServerOptions, *, on_ready: Callable[[EmbeddedTriton], None] | None = None, poll_s: float = 0.5
) -> int | None:
    """Start the server, call `on_ready`, block until SIGINT/SIGTERM, then drain and stop it.

    Returns:
        The server's exit code.

    Raises:
        ServerError: the server failed to start or died while serving.
    """
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    server = EmbeddedTriton(options)
    try:
        server.start()
        if on_ready is not None:
            on_ready(server)
        while not stop_requested.wait(poll_s):
            if not server.is_running():
                raise ServerError(f"tritonserver exited unexpectedly (server log: {server.log_path})")
        return server.stop()
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
