from __future__ import annotations

import grpc
import numpy as np
import pytest
from client_fakes import DIGITS, FakeRpcError, FakeTriton, fake_logits, images, server_error

from tritonforge.client import TensorInfo, TritonClient
from tritonforge.errors import (
    ClientError,
    ConfigError,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotReadyError,
    ServerUnavailableError,
)

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


@pytest.fixture
def client(factory) -> TritonClient:
    return TritonClient("127.0.0.1:8001", transport_factory=factory, retries=3, backoff_s=0.001)


def test_infer_returns_outputs_by_name_when_request_valid(client: TritonClient, fake: FakeTriton) -> None:
    batch = images(3)
    outputs = client.infer(DIGITS, {"image": batch})
    assert list(outputs) == ["logits"]
    np.testing.assert_array_equal(outputs["logits"], fake_logits(batch))
    outputs["logits"][0, 0] = 1.0  # callers may modify results


def test_infer_passes_deadline_and_headers_when_calling_server(factory, fake: FakeTriton) -> None:
    client = TritonClient("127.0.0.1:8001", transport_factory=factory, headers={"authorization": "Bearer x"})
    client.infer(DIGITS, {"image": images()}, timeout_s=1.5)
    assert [name for name, _ in fake.calls] == ["get_model_metadata", "get_model_config", "infer"]
    for _, kwargs in fake.calls:
        assert 0 < kwargs["client_timeout"] <= 1.5
        assert kwargs["headers"] == {"authorization": "Bearer x"}


def test_infer_requests_only_named_outputs_when_outputs_given(client: TritonClient, fake: FakeTriton) -> None:
    client.infer(DIGITS, {"image": images()}, outputs=["logits"])
    requested = fake.calls[-1][1]["outputs"]
    assert [output.name() for output in requested] == ["logits"]


def test_infer_raises_invalid_input_without_calling_server_when_dtype_wrong(client, fake) -> None:
    client.model_inputs(DIGITS)  # fill the cache
    calls_before = len(fake.calls)
    with pytest.raises(InvalidInputError, match=r"expects FP32 with shape \[-1, 1, 8, 8\], got float64"):
        client.infer(DIGITS, {"image": images(2, np.float64)})
    assert len(fake.calls) == calls_before


def test_infer_raises_invalid_input_when_batch_over_max_batch_size(client: TritonClient, fake: FakeTriton) -> None:
    with pytest.raises(InvalidInputError, match="max_batch_size 4"):
        client.infer(DIGITS, {"image": images(5)})
    assert fake.count("infer") == 0


def test_infer_fetches_metadata_once_when_called_repeatedly(client: TritonClient, fake: FakeTriton) -> None:
    for _ in range(3):
        client.infer(DIGITS, {"image": images()})
    assert fake.count("get_model_metadata") == 1
    assert fake.count("get_model_config") == 1
    assert fake.count("infer") == 3


def test_infer_rereads_metadata_when_server_says_model_unknown(client: TritonClient, fake: FakeTriton) -> None:
    client.infer(DIGITS, {"image": images()})
    fake.fail("infer", server_error(grpc.StatusCode.NOT_FOUND, "Request for unknown model: 'digits' is not found"))
    with pytest.raises(ModelNotReadyError, match="model 'digits'"):
        client.infer(DIGITS, {"image": images()})
    client.infer(DIGITS, {"image": images()})
    assert fake.count("get_model_metadata") == 2


def test_infer_rereads_metadata_when_server_rejects_validated_request(client: TritonClient, fake: FakeTriton) -> None:
    client.infer(DIGITS, {"image": images()})
    fake.fail("infer", server_error(grpc.StatusCode.INVALID_ARGUMENT, "unexpected shape for input 'image'"))
    with pytest.raises(InvalidInputError, match="unexpected shape"):
        client.infer(DIGITS, {"image": images()})
    client.infer(DIGITS, {"image": images()})
    assert fake.count("get_model_metadata") == 2


def test_infer_raises_model_not_ready_when_model_unknown(client: TritonClient, fake: FakeTriton) -> None:
    with pytest.raises(ModelNotReadyError, match="model 'nope' is not ready"):
        client.infer("nope", {"image": images()})
    assert fake.count("infer") == 0


def test_infer_names_version_when_version_unknown(client: TritonClient) -> None:
    with pytest.raises(ModelNotReadyError, match="model 'digits' version 7"):
        client.infer(DIGITS, {"image": images()}, version="7")


def test_infer_retries_then_succeeds_when_server_briefly_unavailable(client: TritonClient, fake: FakeTriton) -> None:
    fake.fail("infer", server_error(UNAVAILABLE), FakeRpcError(UNAVAILABLE))
    outputs = client.infer(DIGITS, {"image": images()})
    assert outputs["logits"].shape == (2, 10)
    assert fake.count("infer") == 3


def test_infer_stops_at_retry_limit_when_server_stays_unavailable(client: TritonClient, fake: FakeTriton) -> None:
    client.model_inputs(DIGITS)
    fake.fail("infer", *[server_error(UNAVAILABLE, "connection refused") for _ in range(10)])
    with pytest.raises(ServerUnavailableError, match="connection refused") as info:
        client.infer(DIGITS, {"image": images()})
    assert fake.count("infer") == 4  # the first attempt plus retries=3
    assert info.value.url == "127.0.0.1:8001"


def test_infer_makes_one_attempt_when_retries_zero(factory, fake: FakeTriton) -> None:
    client = TritonClient("127.0.0.1:8001", transport_factory=factory, retries=0)
    fake.fail("get_model_metadata", server_error(UNAVAILABLE))
    with pytest.raises(ServerUnavailableError):
        client.infer(DIGITS, {"image": images()})
    assert fake.count("get_model_metadata") == 1


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidInputError),
        (grpc.StatusCode.INTERNAL, InferenceError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, InferenceTimeoutError),
        (grpc.StatusCode.NOT_FOUND, ModelNotReadyError),
    ],
)
def test_infer_never_retries_when_status_not_unavailable(client, fake, code, expected) -> None:
    fake.fail("infer", server_error(code), server_error(code))
    with pytest.raises(expected):
        client.infer(DIGITS, {"image": images()})
    assert fake.count("infer") == 1


def test_model_metadata_methods_report_signature_when_model_known(client: TritonClient, fake: FakeTriton) -> None:
    assert client.model_inputs(DIGITS) == [TensorInfo("image", "FP32", (-1, 1, 8, 8))]
    assert client.model_outputs(DIGITS) == [TensorInfo("logits", "FP32", (-1, 10))]
    assert client.max_batch_size(DIGITS) == 4
    assert client.model_inputs(DIGITS)[0].np_dtype == np.float32
    assert fake.count("get_model_metadata") == 1


def test_close_closes_transport_once_when_called_twice(client: TritonClient, fake: FakeTriton) -> None:
    client.close()
    client.close()
    assert fake.closed


def test_context_manager_closes_transport_when_block_exits(factory, fake: FakeTriton) -> None:
    with TritonClient(transport_factory=factory) as client:
        client.infer(DIGITS, {"image": images()})
    assert fake.closed


def test_infer_raises_client_error_when_client_closed(client: TritonClient) -> None:
    client.close()
    with pytest.raises(ClientError, match="closed; create a new one"):
        client.infer(DIGITS, {"image": images()})


def test_is_server_ready_returns_false_when_nothing_answers(client: TritonClient, fake: FakeTriton) -> None:
    assert client.is_server_ready() is True
    fake.fail("is_server_ready", server_error(UNAVAILABLE))
    assert client.is_server_ready() is False


def test_wait_until_ready_returns_when_server_comes_up(client: TritonClient, fake: FakeTriton) -> None:
    fake.fail("is_server_ready", server_error(UNAVAILABLE), server_error(UNAVAILABLE))
    client.wait_until_ready(DIGITS, timeout_s=10.0)
    assert fake.count("is_server_ready") == 3
    assert fake.count("is_model_ready") == 1


def test_wait_until_ready_raises_server_unavailable_when_server_never_answers(client, fake) -> None:
    fake.fail("is_server_ready", *[server_error(UNAVAILABLE, "connection refused") for _ in range(10_000)])
    with pytest.raises(ServerUnavailableError, match="not ready within 0.3 s"):
        client.wait_until_ready(timeout_s=0.3)


def test_wait_until_ready_raises_model_not_ready_when_model_missing(client: TritonClient) -> None:
    with pytest.raises(ModelNotReadyError, match="model 'nope'.*not ready within 0.2 s"):
        client.wait_until_ready("nope", timeout_s=0.2)


def test_wait_until_ready_raises_server_unavailable_when_server_not_ready(client, fake: FakeTriton) -> None:
    fake.ready = False
    with pytest.raises(ServerUnavailableError, match="answers but is not ready"):
        client.wait_until_ready(DIGITS, timeout_s=0.2)


def test_client_raises_config_error_when_override_unknown(factory) -> None:
    with pytest.raises(ConfigError, match="invalid client settings"):
        TritonClient(transport_factory=factory, timeout=3)


def test_client_builds_transport_from_merged_settings_when_url_and_overrides_given(factory, fake) -> None:
    TritonClient("dns:///triton:8001", transport_factory=factory, round_robin=True, timeout_s=4.0)
    assert fake.settings is not None
    assert (fake.settings.url, fake.settings.round_robin, fake.settings.timeout_s) == ("dns:///triton:8001", True, 4.0)


def test_client_default_transport_opens_and_closes_real_channel_when_no_server_needed() -> None:
    client = TritonClient("127.0.0.1:1", keepalive_time_s=10.0, round_robin=True)
    assert repr(client) == "TritonClient(url='127.0.0.1:1')"
    client.close()
    with pytest.raises(ClientError, match="closed"):
        client.is_server_ready()
