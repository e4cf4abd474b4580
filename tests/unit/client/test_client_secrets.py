"""Header values are secrets (never in a repr, an error or a log line); the control header goes only to control."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from client_fakes import DIGITS, RESTRICTED, FakeTriton, images, server_error

from tritonforge.client import AsyncTritonClient, ClientSettings, TritonClient
from tritonforge.client.settings import load_settings
from tritonforge.errors import ClientError, ConfigError, ModelNotReadyError, ServerUnavailableError

TOKEN = "Bearer tok-9f8e7d6c5b4a"
KEY = "key-0a1b2c3d4e5f6a7b8c9d"
CONTROL = "triton-grpc-protocol-admin-key"


def _client(factory, **overrides) -> TritonClient:
    return TritonClient(
        "127.0.0.1:8001",
        transport_factory=factory,
        headers={"authorization": TOKEN},
        model_control_header=(CONTROL, KEY),
        backoff_s=0.0,
        **overrides,
    )


def _assert_hidden(text: str) -> None:
    assert TOKEN not in text and "tok-9f8e7d6c5b4a" not in text
    assert KEY not in text


def test_settings_hide_secrets_when_printed() -> None:
    settings = ClientSettings(headers={"authorization": TOKEN}, model_control_header=(CONTROL, KEY))
    for text in (repr(settings), str(settings), repr(settings.model_dump()), repr(settings.headers)):
        _assert_hidden(text)
    assert "authorization" in repr(settings)  # the header's name is not secret


def test_client_hides_secrets_when_printed(factory) -> None:
    client = _client(factory)
    _assert_hidden(repr(client))
    _assert_hidden(repr(client.settings))
    _assert_hidden(repr(vars(client)))


def test_config_error_hides_secret_when_header_setting_invalid() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(headers={"Authorization": TOKEN}, model_control_header=(CONTROL, KEY, "extra"))
    _assert_hidden(str(info.value))
    assert info.value.__cause__ is None  # pydantic's ValidationError would print the raw input


def test_client_sends_plain_values_when_calling_server(factory, fake: FakeTriton) -> None:
    client = _client(factory)
    client.infer(DIGITS, {"image": images()})
    assert fake.calls
    assert all(kwargs["headers"] == {"authorization": TOKEN} for _, kwargs in fake.calls)


def test_client_sends_control_header_only_when_call_is_model_control(factory, fake: FakeTriton) -> None:
    client = _client(factory)
    client.wait_until_ready(DIGITS, timeout_s=5.0)
    client.infer(DIGITS, {"image": images()})
    client.is_server_ready()
    client.load_model(DIGITS)
    client.unload_model(DIGITS)
    client.repository_index()
    for name, kwargs in fake.calls:
        control = name in ("load_model", "unload_model", "get_model_repository_index")
        expected = {"authorization": TOKEN, CONTROL: KEY} if control else {"authorization": TOKEN}
        assert kwargs["headers"] == expected, name


def test_errors_and_logs_hide_secrets_when_server_echoes_them(factory, fake: FakeTriton, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="tritonforge")
    client = _client(factory, retries=2)
    client.model_inputs(DIGITS)
    fake.fail("infer", *[server_error(grpc.StatusCode.UNAVAILABLE, f"proxy said no to {TOKEN}") for _ in range(3)])
    with pytest.raises(ServerUnavailableError) as unavailable:
        client.infer(DIGITS, {"image": images()})
    fake.fail("infer", server_error(grpc.StatusCode.NOT_FOUND, f"no model for key {KEY}"))
    with pytest.raises(ModelNotReadyError) as not_ready:
        client.infer(DIGITS, {"image": images()})
    for error in (unavailable.value, not_ready.value):
        _assert_hidden(str(error))
        assert error.__cause__ is None
    assert "retry 2" in caplog.text  # the retries were logged...
    _assert_hidden(caplog.text)  # ...without the secret


def test_async_client_hides_secrets_when_server_echoes_them(async_factory, fake: FakeTriton, caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="tritonforge")
    fake.fail("get_model_repository_index", server_error(grpc.StatusCode.UNAUTHENTICATED, f"wrong key {KEY}"))

    async def run() -> None:
        async with AsyncTritonClient(
            "127.0.0.1:8001", transport_factory=async_factory, model_control_header=(CONTROL, KEY)
        ) as client:
            _assert_hidden(repr(client))
            await client.repository_index()

    with pytest.raises(ClientError, match="check the auth headers") as info:
        asyncio.run(run())
    _assert_hidden(str(info.value))
    _assert_hidden(caplog.text)
    assert fake.calls[-1][1]["headers"] == {CONTROL: KEY}


def test_restricted_call_fails_once_with_hint_when_control_header_missing(factory, fake: FakeTriton) -> None:
    client = TritonClient("127.0.0.1:8001", transport_factory=factory)
    fake.fail("load_model", server_error(grpc.StatusCode.UNAVAILABLE, RESTRICTED))
    with pytest.raises(ClientError, match="set model_control_header"):
        client.load_model(DIGITS)
    assert fake.count("load_model") == 1  # an UNAVAILABLE status, but retrying cannot help
    assert fake.calls[-1][1]["headers"] is None
