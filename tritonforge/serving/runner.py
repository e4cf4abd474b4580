"""Run a server in the foreground until SIGINT or SIGTERM, then stop it cleanly.

    serve_until_signalled(ServerOptions(repository=Path("model_repository"), restart_on_crash=True), on_ready=print)

While it waits, it calls `EmbeddedTriton.watch()` every `poll_s` from this (the starting) thread: a server that died
is restarted when the options allow it, else the death is raised as a ServerError naming its exit code or signal.
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
    options: ServerOptions,
    *,
    on_ready: Callable[[EmbeddedTriton], None] | None = None,
    on_failure: Callable[[EmbeddedTriton], None] | None = None,
    poll_s: float = 0.5,
) -> int | None:
    """Start the server, call `on_ready`, block until SIGINT/SIGTERM, then drain and stop it.

    Args:
        options: how to start the server.
        on_ready: called once the server is ready (print its addresses).
        on_failure: called with the stopped server before a ServerError propagates (show its log's last lines).
        poll_s: how often the server is watched.

    Returns:
        The server's exit code.

    Raises:
        ServerError: the server failed to start, or died while serving and was not (or could not be) restarted.
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
            server.watch()
        return server.stop()
    except ServerError:
        server.stop()
        if on_failure is not None:
            on_failure(server)
        raise
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
