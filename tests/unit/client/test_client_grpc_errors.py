from __future__ import annotations

import logging

import grpc
import pytest
from client_fakes import (
    CONNECT_REFUSED,
    QUEUE_FULL,
    RELOADING,
    RESTRICTED,
    SERVER_STOPPING,
    SHED,
    UNKNOWN_MODEL,
    FakeRpcError,
    server_error,
)
from tritonclient.utils import InferenceServerException

from tritonforge.client.grpc_errors import _map_grpc_errors, status_code_of
from tritonforge.errors import (
    ClientError,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotReadyError,
    ServerOverloadedError,
    ServerUnavailableError,
)

URL = "127.0.0.9:8001"


def _mapped(exc: BaseException, model: str | None = "digits", **context) -> ClientError:
    with pytest.raises(ClientError) as info:
        with _map_grpc_errors(url=URL, model=model, version=None, timeout_s=2.5, **context):
            raise exc
    assert info.value.__cause__ is exc
    return info.value


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.UNAVAILABLE, ServerUnavailableError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, InferenceTimeoutError),
        (grpc.StatusCode.NOT_FOUND, ModelNotReadyError),
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidInputError),
        (grpc.StatusCode.INTERNAL, InferenceError),
        (grpc.StatusCode.UNKNOWN, InferenceError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ServerOverloadedError),
        (grpc.StatusCode.CANCELLED, ServerUnavailableError),
    ],
)
@pytest.mark.parametrize("wrap", [server_error, FakeRpcError], ids=["InferenceServerException", "RpcError"])
def test_map_grpc_errors_picks_specific_class_when_status_known(code, expected, wrap) -> None:
    error = _mapped(wrap(code, "details from server"))
    assert type(error) is expected


def test_map_grpc_errors_keeps_server_message_when_unavailable() -> None:
    error = _mapped(server_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"))
    assert isinstance(error, ServerUnavailableError)
    assert error.url == URL
    assert "failed to connect to all addresses" in str(error)


def test_map_grpc_errors_reports_deadline_when_deadline_exceeded() -> None:
    error = _mapped(server_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    assert isinstance(error, InferenceTimeoutError)
    assert (error.model, error.timeout_s) == ("digits", 2.5)


def test_map_grpc_errors_gives_server_unavailable_when_deadline_exceeded_without_model() -> None:
    error = _mapped(server_error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"), model=None)
    assert isinstance(error, ServerUnavailableError)
    assert "2.5 s" in str(error)


def test_map_grpc_errors_names_model_when_not_found() -> None:
    error = _mapped(server_error(grpc.StatusCode.NOT_FOUND, "Request for unknown model: 'digits' is not found"))
    assert isinstance(error, ModelNotReadyError)
    assert error.model == "digits"
    assert "unknown model" in str(error)


def test_map_grpc_errors_includes_server_reason_when_invalid_argument() -> None:
    error = _mapped(server_error(grpc.StatusCode.INVALID_ARGUMENT, "unexpected shape for input 'image'"))
    assert "unexpected shape for input 'image'" in str(error)


def test_map_grpc_errors_points_at_headers_when_unauthenticated() -> None:
    error = _mapped(FakeRpcError(grpc.StatusCode.UNAUTHENTICATED, "missing token"))
    assert type(error) is ClientError
    assert "auth headers" in str(error)


def test_map_grpc_errors_gives_inference_error_when_status_missing() -> None:
    error = _mapped(InferenceServerException("model version must be a string"))
    assert type(error) is InferenceError
    assert "model version must be a string" in str(error)


def test_map_grpc_errors_lets_other_exceptions_through_when_not_grpc() -> None:
    with pytest.raises(KeyError), _map_grpc_errors(url=URL, timeout_s=1.0):
        raise KeyError("not ours")


def test_status_code_of_reads_code_when_exception_carries_one() -> None:
    assert status_code_of(server_error(grpc.StatusCode.UNAVAILABLE)) is grpc.StatusCode.UNAVAILABLE
    assert status_code_of(FakeRpcError(grpc.StatusCode.CANCELLED)) is grpc.StatusCode.CANCELLED
    assert status_code_of(InferenceServerException("client side")) is None
    assert status_code_of(InferenceServerException("odd", status="StatusCode.NO_SUCH")) is None


@pytest.mark.parametrize("wrap", [server_error, FakeRpcError], ids=["InferenceServerException", "RpcError"])
def test_map_grpc_errors_reads_triton_message_when_code_is_ambiguous(wrap) -> None:
    unavailable, not_found = grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND
    overloaded = _mapped(wrap(unavailable, QUEUE_FULL))
    assert isinstance(overloaded, ServerOverloadedError) and overloaded.model == "digits"
    assert "Exceeds maximum queue size" in str(overloaded)
    shed = _mapped(wrap(unavailable, SHED))
    assert isinstance(shed, InferenceTimeoutError) and shed.shed_by_server
    assert "dropped it from the model's queue" in str(shed)
    stopping = _mapped(wrap(unavailable, SERVER_STOPPING))
    assert isinstance(stopping, ServerUnavailableError) and stopping.connected
    reloading = _mapped(wrap(not_found, RELOADING))
    assert isinstance(reloading, ModelNotReadyError) and reloading.transient
    ready_state = _mapped(wrap(not_found, "Request for unknown model: 'digits' version 1 is not at ready state"))
    assert isinstance(ready_state, ModelNotReadyError) and ready_state.transient
    unknown = _mapped(wrap(not_found, UNKNOWN_MODEL))
    assert isinstance(unknown, ModelNotReadyError) and not unknown.transient
    refused = _mapped(wrap(unavailable, CONNECT_REFUSED))
    assert isinstance(refused, ServerUnavailableError) and not refused.connected
    assert "start one with `tritonforge serve`" in str(refused)


def test_map_grpc_errors_names_model_control_header_when_protocol_restricted() -> None:
    error = _mapped(server_error(grpc.StatusCode.UNAVAILABLE, RESTRICTED), model=None)
    assert type(error) is ClientError
    assert "triton-grpc-protocol-admin-key" in str(error)
    assert "set model_control_header" in str(error)


def test_map_grpc_errors_says_check_ca_when_tls_handshake_fails() -> None:
    message = (
        "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:45253: Tls handshake failed "
        "(TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:"
        "CERTIFICATE_VERIFY_FAILED: self signed certificate in certificate chain: OK"
    )
    error = _mapped(server_error(grpc.StatusCode.UNAVAILABLE, message), tls=True)
    assert type(error) is ClientError  # final: retrying cannot fix a certificate
    text = str(error)
    assert "\n" not in text
    assert "CERTIFICATE_VERIFY_FAILED" in text and "check that root_certificates is the CA" in text
    assert not text.endswith(": OK") and "OPENSSL_internal" not in text


@pytest.mark.parametrize(
    ("context", "hint"),
    [
        ({"tls": True, "client_certificate": False}, "set private_key and certificate_chain"),
        ({"tls": True, "client_certificate": True}, "trusts the CA of certificate_chain"),
        ({"tls": False}, "set tls=true"),
    ],
)
def test_map_grpc_errors_hints_at_tls_when_server_closes_connection_at_setup(context, hint) -> None:
    message = "failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:45049: Socket closed"
    error = _mapped(server_error(grpc.StatusCode.UNAVAILABLE, message), **context)
    assert isinstance(error, ServerUnavailableError) and not error.connected
    assert hint in str(error)


def test_map_grpc_errors_gives_no_tls_hint_when_connection_refused() -> None:
    error = _mapped(server_error(grpc.StatusCode.UNAVAILABLE, CONNECT_REFUSED), tls=True)
    assert "TLS" not in str(error)


def test_map_grpc_errors_redacts_secret_and_drops_cause_when_server_echoes_it(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="tritonforge")
    exc = server_error(grpc.StatusCode.UNAUTHENTICATED, "bad token 'Bearer t0ps3cret'")
    with pytest.raises(ClientError) as info:
        with _map_grpc_errors(url=URL, model="digits", timeout_s=1.0, secrets=("Bearer t0ps3cret",)):
            raise exc
    assert "t0ps3cret" not in str(info.value)
    assert "<redacted>" in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert "t0ps3cret" not in caplog.text
