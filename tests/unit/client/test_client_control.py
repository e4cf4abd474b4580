"""load_model, unload_model and repository_index on both clients."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest
from client_fakes import DIGITS, SERVER_STOPPING, FakeTriton, images, server_error

from tritonforge.client import AsyncTritonClient, ModelState, TritonClient
from tritonforge.errors import InferenceError


def test_load_model_sends_config_as_json_when_given_a_mapping(factory, fake: FakeTriton) -> None:
    client = TritonClient(transport_factory=factory)
    client.load_model(DIGITS, config={"max_batch_size": 8}, timeout_s=60.0)
    name, kwargs = fake.calls[-1]
    assert name == "load_model"
    assert json.loads(kwargs["config"]) == {"max_batch_size": 8}
    assert 0 < kwargs["client_timeout"] <= 60.0
    client.load_model(DIGITS, config='{"max_batch_size": 4}')
    assert fake.calls[-1][1]["config"] == '{"max_batch_size": 4}'
    client.load_model(DIGITS)
    assert fake.calls[-1][1]["config"] is None


def test_load_and_unload_forget_cached_metadata_when_model_changes(factory, fake: FakeTriton) -> None:
    client = TritonClient(transport_factory=factory)
    client.infer(DIGITS, {"image": images()})
    client.infer(DIGITS, {"image": images()}, version="1")
    client.load_model(DIGITS)
    client.infer(DIGITS, {"image": images()})
    assert fake.count("get_model_metadata") == 3  # re-read after the reload
    client.unload_model(DIGITS, unload_dependents=True)
    assert fake.calls[-1][1]["unload_dependents"] is True
    client.infer(DIGITS, {"image": images()}, version="1")
    assert fake.count("get_model_metadata") == 4


def test_repository_index_lists_models_with_state_when_asked(factory, fake: FakeTriton) -> None:
    fake.index = [(DIGITS, "1", "READY", ""), ("minilm", "", "", ""), ("broken", "1", "UNAVAILABLE", "load failed")]
    states = TritonClient(transport_factory=factory).repository_index()
    assert states == [
        ModelState(name=DIGITS, version="1", state="READY", reason=""),
        ModelState(name="minilm", version="", state="", reason=""),
        ModelState(name="broken", version="1", state="UNAVAILABLE", reason="load failed"),
    ]
    assert [s.ready for s in states] == [True, False, False]


def test_control_calls_retry_when_server_stopping(factory, fake: FakeTriton) -> None:
    client = TritonClient(transport_factory=factory, backoff_s=0.0)
    fake.fail("unload_model", server_error(grpc.StatusCode.UNAVAILABLE, SERVER_STOPPING))
    client.unload_model(DIGITS)
    assert fake.count("unload_model") == 2


def test_load_model_raises_inference_error_with_reason_when_load_fails(factory, fake: FakeTriton) -> None:
    client = TritonClient(transport_factory=factory)
    fake.fail("load_model", server_error(grpc.StatusCode.INTERNAL, "failed to load 'nope', failed to poll"))
    with pytest.raises(InferenceError, match="failed to load 'nope'"):
        client.load_model("nope")
    assert fake.count("load_model") == 1


def test_async_control_calls_match_sync_when_awaited(async_factory, fake: FakeTriton) -> None:
    async def run() -> list[ModelState]:
        async with AsyncTritonClient(transport_factory=async_factory) as client:
            await client.load_model(DIGITS, config={"max_batch_size": 8})
            await client.unload_model(DIGITS)
            return await client.repository_index()

    assert asyncio.run(run()) == [ModelState(name=DIGITS, version="1", state="READY", reason="")]
    assert [name for name, _ in fake.calls] == ["load_model", "unload_model", "get_model_repository_index"]
    assert json.loads(fake.calls[0][1]["config"]) == {"max_batch_size": 8}
