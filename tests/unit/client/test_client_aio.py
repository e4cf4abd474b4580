from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from client_fakes import DIGITS, FakeRpcError, FakeTriton, fake_logits, images, server_error

from tritonforge.client import AsyncTritonClient, TensorInfo
from tritonforge.errors import (
    ClientError,
    InferenceError,
    InvalidInputError,
    ModelNotReadyError,
    ServerUnavailableError,
)

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def _client(async_factory, **overrides) -> AsyncTritonClient:
    return AsyncTritonClient("127.0.0.1:8001", transport_factory=async_factory, backoff_s=0.001, **overrides)


def test_async_infer_matches_fake_model_when_request_valid(async_factory, fake: FakeTriton) -> None:
    batch = images(3)

    async def run() -> dict[str, np.ndarray]:
        async with _client(async_factory) as client:
            return await client.infer(DIGITS, {"image": batch}, timeout_s=2.0)

    outputs = asyncio.run(run())
    np.testing.assert_array_equal(outputs["logits"], fake_logits(batch))
    assert fake.closed
    assert all(0 < kwargs["client_timeout"] <= 2.0 for _, kwargs in fake.calls)


def test_async_infer_raises_invalid_input_when_shape_wrong(async_factory, fake: FakeTriton) -> None:
    async def run() -> None:
        await _client(async_factory).infer(DIGITS, {"image": np.zeros((2, 8, 8), np.float32)})

    with pytest.raises(InvalidInputError, match=r"expects FP32 with shape \[-1, 1, 8, 8\], got float32 \[2, 8, 8\]"):
        asyncio.run(run())
    assert fake.count("infer") == 0


def test_async_infer_retries_only_unavailable_when_server_fails(async_factory, fake: FakeTriton) -> None:
    fake.fail("infer", FakeRpcError(UNAVAILABLE), server_error(grpc.StatusCode.INTERNAL, "backend crashed"))

    async def run() -> None:
        await _client(async_factory, retries=5).infer(DIGITS, {"image": images()})

    with pytest.raises(InferenceError, match="backend crashed"):
        asyncio.run(run())
    assert fake.count("infer") == 2


def test_async_infer_stops_at_retry_limit_when_server_stays_unavailable(async_factory, fake: FakeTriton) -> None:
    fake.fail("get_model_metadata", *[server_error(UNAVAILABLE) for _ in range(10)])

    async def run() -> None:
        await _client(async_factory, retries=2).infer(DIGITS, {"image": images()})

    with pytest.raises(ServerUnavailableError):
        asyncio.run(run())
    assert fake.count("get_model_metadata") == 3


def test_async_metadata_methods_use_cache_when_called_repeatedly(async_factory, fake: FakeTriton) -> None:
    async def run() -> tuple[list[TensorInfo], list[TensorInfo], int]:
        client = _client(async_factory)
        result = (
            await client.model_inputs(DIGITS),
            await client.model_outputs(DIGITS),
            await client.max_batch_size(DIGITS),
        )
        await client.close()
        return result

    inputs, outputs, max_batch = asyncio.run(run())
    assert inputs == [TensorInfo("image", "FP32", (-1, 1, 8, 8))]
    assert outputs == [TensorInfo("logits", "FP32", (-1, 10))]
    assert max_batch == 4
    assert fake.count("get_model_metadata") == 1


def test_async_wait_until_ready_raises_model_not_ready_when_model_missing(async_factory) -> None:
    async def run() -> None:
        await _client(async_factory).wait_until_ready("nope", timeout_s=0.2)

    with pytest.raises(ModelNotReadyError, match="not ready within 0.2 s"):
        asyncio.run(run())


def test_async_wait_until_ready_returns_when_server_comes_up(async_factory, fake: FakeTriton) -> None:
    fake.fail("is_server_ready", server_error(UNAVAILABLE))

    async def run() -> bool:
        client = _client(async_factory)
        await client.wait_until_ready(DIGITS, timeout_s=5.0)
        return await client.is_server_ready()

    assert asyncio.run(run()) is True
    assert fake.count("is_server_ready") == 3


def test_async_is_server_ready_returns_false_when_nothing_answers(async_factory, fake: FakeTriton) -> None:
    fake.fail("is_server_ready", server_error(UNAVAILABLE))
    assert asyncio.run(_client(async_factory).is_server_ready()) is False


def test_async_client_raises_client_error_when_used_after_close(async_factory) -> None:
    async def run() -> None:
        client = _client(async_factory)
        await client.close()
        await client.infer(DIGITS, {"image": images()})

    with pytest.raises(ClientError, match="closed"):
        asyncio.run(run())


def test_async_client_builds_no_channel_when_never_used(async_factory, fake: FakeTriton) -> None:
    client = _client(async_factory)
    asyncio.run(client.close())
    assert fake.settings is None  # the factory never ran: channels are made inside the loop that uses them


def test_async_default_transport_fails_fast_when_port_closed() -> None:
    async def run() -> None:
        async with AsyncTritonClient("127.0.0.1:1", retries=0, timeout_s=5.0) as client:
            await client.wait_until_ready(timeout_s=0.5)

    with pytest.raises(ServerUnavailableError, match="127.0.0.1:1"):
        asyncio.run(run())
