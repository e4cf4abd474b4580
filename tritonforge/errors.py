"""Typed errors for every tritonforge package, split by what the user must do about them.

    try:
        client.infer("digits", {"image": batch})
    except ModelNotReadyError as exc:  # a ClientError
        ...

The tree:

    TritonForgeError                 root: the CLI prints "<Class>: <message>" and exits 1
    ├── ConfigError                  bad input from the user: fix the argument, file or config
    ├── ConversionError              an export/quantize/build step failed (log_path, repro_cmd)
    │   ├── ParityError              the converted model disagrees with the source model
    │   └── QualityGateError         no quantized variant kept the task metric within tolerance
    ├── ServerError                  the embedded tritonserver did not start or a model did not load
    ├── ClientError                  a gRPC call to Triton failed
    │   ├── InvalidInputError        the request does not match the model's inputs (never retried)
    │   ├── ServerUnavailableError   nothing answers at the URL, or it is stopping (retried until the deadline)
    │   ├── ServerOverloadedError    the model's queue is full: shed load, back off (never retried)
    │   ├── ModelNotReadyError       the model is unknown or not loaded (retried while it is reloading)
    │   ├── InferenceTimeoutError    the call's deadline passed (or the server dropped it from its queue)
    │   └── InferenceError           the server ran the request and reported an error
    └── SLOViolationError            a load test missed its service-level objectives
"""

from __future__ import annotations

from pathlib import Path


class TritonForgeError(Exception):
    """Root of every error tritonforge raises on purpose."""


class ConfigError(TritonForgeError):
    """The user's input (argument, file, model config) is invalid; the message says how to fix it."""


class ConversionError(TritonForgeError):
    """A conversion step failed.

    Attributes:
        log_path: where the step's full log was written, if anywhere.
        repro_cmd: a command that reproduces the failure, if one exists.
    """

    def __init__(self, message: str, *, log_path: Path | None = None, repro_cmd: str | None = None) -> None:
        self.log_path = log_path
        self.repro_cmd = repro_cmd
        details = []
        if log_path is not None:
            details.append(f"log: {log_path}")
        if repro_cmd is not None:
            details.append(f"reproduce: {repro_cmd}")
        super().__init__(message + (f" ({'; '.join(details)})" if details else ""))


class ParityError(ConversionError):
    """The exported model's outputs differ from the source model's beyond the tolerance."""


class QualityGateError(ConversionError):
    """No variant kept the task metric within the gate's tolerance (the message says by how much each missed)."""


class ServerError(TritonForgeError):
    """The Triton server could not be started, or a model failed to load (the message has the server's reason)."""


class ClientError(TritonForgeError):
    """A call to a Triton server failed."""


class InvalidInputError(ClientError):
    """The request does not match the model's inputs (name, dtype or shape); retrying cannot help."""


class ServerUnavailableError(ClientError):
    """No server answered at the given URL, or the one that answered is stopping; retrying may help.

    Attributes:
        url: the address that was called.
        connected: False when no connection could be made at all; such a failure put no load on any server, so it
            does not draw on the client's retry budget.
    """

    def __init__(self, url: str, reason: str = "", *, connected: bool = True) -> None:
        self.url = url
        self.connected = connected
        why = f": {reason}" if reason else ""
        if connected:
            super().__init__(f"the Triton server at {url} is unavailable{why}; it may be stopping or restarting")
        else:
            super().__init__(
                f"no Triton server answers at {url}{why}; start one with `tritonforge serve` or check --url"
            )


class ModelNotReadyError(ClientError):
    """The model (or the requested version) is unknown to the server or not loaded.

    Attributes:
        model: the model's name.
        version: the requested version, or None for the server's latest.
        transient: the server knows the model but has no version ready right now (unloading or loading, as during a
            restart or a reload), so retrying may help; False for a model or version the server does not know.
    """

    def __init__(self, model: str, version: str | None = None, reason: str = "", *, transient: bool = False) -> None:
        self.model = model
        self.version = version
        self.transient = transient
        which = f"model '{model}'" + (f" version {version}" if version else "")
        super().__init__(
            f"{which} is not ready on the server{': ' + reason if reason else ''}; "
            "check the name with `tritonforge repo check` and the server log"
        )


class InferenceTimeoutError(ClientError):
    """The call did not finish before its deadline.

    Attributes:
        model: the model's name.
        timeout_s: the call's deadline in seconds.
        shed_by_server: the server dropped the request from its queue when the deadline it was sent with passed,
            instead of running work whose caller had already given up.
    """

    def __init__(self, model: str, timeout_s: float, *, shed_by_server: bool = False) -> None:
        self.model = model
        self.timeout_s = timeout_s
        self.shed_by_server = shed_by_server
        where = " (the server dropped it from the model's queue)" if shed_by_server else ""
        super().__init__(
            f"inference on '{model}' did not finish within {timeout_s:g} s{where}; raise timeout_s or reduce load"
        )


class ServerOverloadedError(ClientError):
    """The server refused the request because the model's queue is full; it is never retried.

    Retrying would add load exactly where there is too much: callers should shed or delay work, and operators add
    capacity or raise the model's max_queue_size.

    Attributes:
        url: the address that was called.
        model: the model whose queue is full, if known.
    """

    def __init__(self, url: str, model: str | None, reason: str = "") -> None:
        self.url = url
        self.model = model
        which = f"model '{model}'" if model is not None else "the server"
        super().__init__(
            f"{which} at {url} is overloaded{': ' + reason if reason else ''}; "
            "send less load or add capacity (instances, replicas, max_queue_size)"
        )


class InferenceError(ClientError):
    """The server accepted the request but reported an error while running it."""


class SLOViolationError(TritonForgeError):
    """A load test missed at least one of its service-level objectives."""
