"""The one place where tritonclient and gRPC errors become tritonforge's typed ClientError classes.

    with _map_grpc_errors(url=url, model="digits", version=None, timeout_s=2.0):
        transport.infer("digits", inputs, client_timeout=2.0)
    # InferenceServerException("[StatusCode.NOT_FOUND] ...") -> ModelNotReadyError("digits")

Status codes are read from the exception's structured status, never from its message text.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from tritonclient.utils import InferenceServerException

from tritonforge.errors import (
    ClientError,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotReadyError,
    ServerUnavailableError,
)

__all__ = ["status_code_of"]

_LOGGER = logging.getLogger(__name__)


def status_code_of(exc: BaseException) -> grpc.StatusCode | None:
    """The gRPC status code carried by a tritonclient or gRPC exception, or None if it carries none.

    Args:
        exc: an `InferenceServerException` (status like "StatusCode.UNAVAILABLE") or a `grpc.RpcError`.

    Returns:
        The status code, or None for client-side errors that never reached the network.
    """
    if isinstance(exc, InferenceServerException):
        status = exc.status()
        if not status:
            return None
        return grpc.StatusCode.__members__.get(str(status).removeprefix("StatusCode."))
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        code = exc.code()
        return code if isinstance(code, grpc.StatusCode) else None
    return None


def _message_of(exc: BaseException) -> str:
    if isinstance(exc, InferenceServerException):
        return str(exc.message() or "")
    details = getattr(exc, "details", None)
    return str(details() or "") if callable(details) else str(exc)


def _translate(
    exc: BaseException, *, url: str, model: str | None, version: str | None, timeout_s: float
) -> ClientError:
    code = status_code_of(exc)
    message = _message_of(exc)
    if code is grpc.StatusCode.UNAVAILABLE:
        return ServerUnavailableError(url, message)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        if model is None:
            return ServerUnavailableError(url, f"no answer within {timeout_s:g} s")
        return InferenceTimeoutError(model, timeout_s)
    if code is grpc.StatusCode.NOT_FOUND and model is not None:
        return ModelNotReadyError(model, version, message)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidInputError(f"the server rejected the request to model '{model}': {message}")
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return ClientError(f"the server at {url} refused the call ({code.name}): {message}; check the auth headers")
    which = f"model '{model}'" if model is not None else f"the server at {url}"
    status = code.name if code is not None else "client-side error"
    return InferenceError(f"{which} failed ({status}): {message}")


@contextmanager
def _map_grpc_errors(
    *, url: str, model: str | None = None, version: str | None = None, timeout_s: float
) -> Iterator[None]:
    """Re-raise tritonclient/gRPC errors raised inside the block as the most specific ClientError.

    UNAVAILABLE → ServerUnavailableError, DEADLINE_EXCEEDED → InferenceTimeoutError (ServerUnavailableError for
    calls that name no model), NOT_FOUND → ModelNotReadyError, INVALID_ARGUMENT → InvalidInputError,
    UNAUTHENTICATED/PERMISSION_DENIED → ClientError, anything else → InferenceError.

    Args:
        url: the server's address, for messages.
        model: the model the call is about, if any.
        version: the model version the call is about, if any.
        timeout_s: the call's deadline, for messages.

    Raises:
        ClientError: one of its subclasses, chained to the original exception.
    """
    try:
        yield
    except (InferenceServerException, grpc.RpcError) as exc:
        error = _translate(exc, url=url, model=model, version=version, timeout_s=timeout_s)
        _LOGGER.debug("gRPC call failed: %s -> %s", exc, type(error).__name__)
        raise error from exc
