from __future__ import annotations

import grpc
import pytest
from client_fakes import FakeRpcError, server_error
from tritonclient.utils import InferenceServerException

from tritonforge.client.grpc_errors import _map_grpc_errors, status_code_of
from tritonforge.errors import (
    ClientError,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotReadyError,
    ServerUnavailableError,
)

URL = "127.0.0.9:8001"


def _mapped(exc: BaseException, model: str | None = "digits") -> ClientError:
    with pytest.raises(ClientError) as info, _map_grpc_errors(url=URL, model=model, version=None, timeout_s=2.5):
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
        (grpc.StatusCode.RESOURCE_EXHAUSTED, InferenceError),
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
