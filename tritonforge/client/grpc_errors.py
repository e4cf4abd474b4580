"""The one place where tritonclient and gRPC errors become tritonforge's typed ClientError classes.

    with _map_grpc_errors(url=url, model="digits", version=None, timeout_s=2.0):
        transport.infer("digits", inputs, client_timeout=2.0)
    # InferenceServerException("[StatusCode.NOT_FOUND] ...") -> ModelNotReadyError("digits")

Status codes are read from the exception's structured status. Triton 2.51 reuses UNAVAILABLE and NOT_FOUND for
conditions that need opposite handling (retry a stopping server; never retry a full queue), and those are told apart
by the message text in exactly one table here, `_MESSAGES`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import grpc
from tritonclient.utils import InferenceServerException

from tritonforge.errors import (
    ClientError,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotReadyError,
    ServerOverloadedError,
    ServerUnavailableError,
)

__all__ = ["status_code_of"]

_LOGGER = logging.getLogger(__name__)

_REDACTED = "<redacted>"


class _Condition(enum.Enum):
    """What a status code plus message text really means."""

    OVERLOADED = "the model's queue is full"
    SHED = "the server dropped the request from its queue when its timeout passed"
    RESTRICTED = "the call needs Triton's restricted-protocol header"
    RELOADING = "the model is known but no version is ready (unloading or loading)"
    TLS = "the TLS handshake failed"
    NOT_CONNECTED = "no connection could be made"


_UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
_NOT_FOUND = grpc.StatusCode.NOT_FOUND

# WAR: Triton 2.51 (and gRPC core for the last two) tell these conditions apart only in the message text; each text
# was read from the embedded server's answers (full queue, queue timeout, restricted protocol, an unloading model
# during SIGINT drain and after unload_model, a wrong CA). Matched case-insensitively, first match wins: a TLS failure
# also says "failed to connect to all addresses".
_MESSAGES: tuple[tuple[grpc.StatusCode, str, _Condition], ...] = (
    (_UNAVAILABLE, "exceeds maximum queue size", _Condition.OVERLOADED),
    (_UNAVAILABLE, "request timeout expired", _Condition.SHED),
    (_UNAVAILABLE, "this protocol is restricted", _Condition.RESTRICTED),
    (_NOT_FOUND, "has no available versions", _Condition.RELOADING),
    (_NOT_FOUND, "is not at ready state", _Condition.RELOADING),
    (_UNAVAILABLE, "handshake failed", _Condition.TLS),
    (_UNAVAILABLE, "failed to connect to all addresses", _Condition.NOT_CONNECTED),
)


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


def _condition(code: grpc.StatusCode | None, message: str) -> _Condition | None:
    text = message.lower()
    for known_code, fragment, condition in _MESSAGES:
        if code is known_code and fragment in text:
            return condition
    return None


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    return text


def _tls_detail(message: str) -> str:
    """The handshake's own reason ("CERTIFICATE_VERIFY_FAILED: self signed certificate..."), without gRPC's frame."""
    marker = "handshake failed"
    start = message.lower().find(marker)
    detail = message[start + len(marker) :] if start >= 0 else message
    detail = detail.rsplit("OPENSSL_internal:", 1)[-1]  # BoringSSL's prefix says nothing to the user
    return detail.removesuffix(": OK").strip(" :")


def _connect_hint(message: str, *, tls: bool, client_certificate: bool) -> str:
    """What to check when the server closed the connection during set-up: almost always a TLS mismatch."""
    if "socket closed" not in message.lower():
        return ""
    if not tls:
        return " (if the server uses TLS, set tls=true and root_certificates)"
    if not client_certificate:
        return (
            " (TLS is on: if the server requires client certificates (mutual TLS), set private_key and "
            "certificate_chain)"
        )
    return " (TLS is on: check that the server trusts the CA of certificate_chain)"


def _translate(
    exc: BaseException,
    *,
    url: str,
    model: str | None,
    version: str | None,
    timeout_s: float,
    tls: bool,
    client_certificate: bool,
    secrets: Sequence[str],
) -> ClientError:
    code = status_code_of(exc)
    message = _redact(_message_of(exc), secrets)
    condition = _condition(code, message)
    if condition is _Condition.OVERLOADED:
        return ServerOverloadedError(url, model, message)
    if condition is _Condition.SHED and model is not None:
        return InferenceTimeoutError(model, timeout_s, shed_by_server=True)
    if condition is _Condition.RESTRICTED:
        return ClientError(
            f"the server at {url} refused the model-control call: {message}; set model_control_header to that "
            "header and the server's model-control key"
        )
    if condition is _Condition.RELOADING and model is not None:
        return ModelNotReadyError(model, version, message, transient=True)
    if condition is _Condition.TLS:
        return ClientError(
            f"TLS handshake with {url} failed ({_tls_detail(message)}); check that root_certificates is the CA that "
            "signed the server's certificate and that the certificate names this host"
        )
    if condition is _Condition.NOT_CONNECTED:
        hint = _connect_hint(message, tls=tls, client_certificate=client_certificate)
        return ServerUnavailableError(url, message + hint, connected=False)
    if code is grpc.StatusCode.UNAVAILABLE:
        return ServerUnavailableError(url, message)
    if code is grpc.StatusCode.CANCELLED:
        # The sync client never cancels its own calls and an asyncio cancellation raises CancelledError, not this:
        # a CANCELLED status comes from a server that went away mid-call (seen when tritonserver exits on SIGINT).
        return ServerUnavailableError(url, f"the call was cancelled by the server ({message}); it may be stopping")
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return ServerOverloadedError(url, model, message)
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
    *,
    url: str,
    model: str | None = None,
    version: str | None = None,
    timeout_s: float,
    tls: bool = False,
    client_certificate: bool = False,
    secrets: Sequence[str] = (),
) -> Iterator[None]:
    """Re-raise tritonclient/gRPC errors raised inside the block as the most specific ClientError.

    By status code: UNAVAILABLE and CANCELLED → ServerUnavailableError, RESOURCE_EXHAUSTED → ServerOverloadedError,
    DEADLINE_EXCEEDED → InferenceTimeoutError (ServerUnavailableError for calls that name no model), NOT_FOUND →
    ModelNotReadyError, INVALID_ARGUMENT → InvalidInputError, UNAUTHENTICATED/PERMISSION_DENIED → ClientError,
    anything else → InferenceError. Before that, `_MESSAGES` picks out what Triton signals only in its text: a full
    queue (ServerOverloadedError), a request dropped past its timeout (InferenceTimeoutError), a model that is
    reloading (ModelNotReadyError, transient), a restricted call or a failed TLS handshake (ClientError, final), and a
    channel that could not connect (ServerUnavailableError, connected=False).

    Args:
        url: the server's address, for messages.
        model: the model the call is about, if any.
        version: the model version the call is about, if any.
        timeout_s: the call's deadline, for messages.
        tls: whether the channel uses TLS (decides what a failed connection set-up tells the user to check).
        client_certificate: whether the channel presents a client certificate (mutual TLS).
        secrets: header values that must never appear in an error or a log line; replaced by "<redacted>".

    Raises:
        ClientError: one of its subclasses, chained to the original exception unless that one carried a secret.
    """
    try:
        yield
    except (InferenceServerException, grpc.RpcError) as exc:
        error = _translate(
            exc,
            url=url,
            model=model,
            version=version,
            timeout_s=timeout_s,
            tls=tls,
            client_certificate=client_certificate,
            secrets=secrets,
        )
        _LOGGER.debug("gRPC call failed (%s): %s", type(error).__name__, error)
        if any(secret and (secret in str(exc) or secret in _message_of(exc)) for secret in secrets):
            raise error from None  # the original would print the secret in a traceback
        raise error from exc
