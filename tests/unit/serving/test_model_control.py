"""The model-control key: valid values only, never shown, found by the clients of the server that uses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tritonforge.errors import ConfigError
from tritonforge.serving import model_control
from tritonforge.serving.launcher import ServerOptions
from tritonforge.serving.model_control import GRPC_HEADER, HEADER, MODEL_CONTROL_KEY_ENV, ModelControlKey

SECRET = "s3cret-value-that-is-long-enough"


def test_the_key_never_shows_in_repr_str_or_the_options_repr(tmp_path: Path) -> None:
    key = ModelControlKey(SECRET)
    options = ServerOptions(repository=tmp_path, model_control_mode="explicit", model_control_key=key)
    for text in (repr(key), str(key), f"{key}", repr(options), str(options)):
        assert SECRET not in text
    assert "ModelControlKey(<hidden>)" in repr(options)
    assert key.reveal() == SECRET


def test_headers_and_server_flags_use_triton_2_51_syntax() -> None:
    key = ModelControlKey(SECRET)
    assert key.http_headers() == {HEADER: SECRET}
    assert key.grpc_headers() == {f"triton-grpc-protocol-{HEADER}": SECRET} == {GRPC_HEADER: SECRET}
    # <categories>:<header>=<value>; the --help text says ',' but the 2.51 parser splits on ':'
    assert key.server_args() == [
        f"--grpc-restricted-protocol=model-repository:{HEADER}={SECRET}",
        f"--http-restricted-api=model-repository:{HEADER}={SECRET}",
    ]


@pytest.mark.parametrize(
    "value", ["short", "has:colon-and-more-chars", "has=equals-and-more-chars", "white space 0123456"]
)
def test_a_key_triton_could_misparse_is_refused_without_echoing_it(value: str) -> None:
    with pytest.raises(ConfigError, match="16-256 of A-Z a-z 0-9 _ -") as info:
        ModelControlKey(value)
    assert value not in str(info.value)


def test_generated_keys_are_random_and_valid() -> None:
    first, second = ModelControlKey.generate(), ModelControlKey.generate()
    assert first != second and len(first.reveal()) >= 40


def test_the_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODEL_CONTROL_KEY_ENV, raising=False)
    assert ModelControlKey.from_env() is None
    monkeypatch.setenv(MODEL_CONTROL_KEY_ENV, "too-short")
    with pytest.raises(ConfigError, match=r"^\$TRITONFORGE_MODEL_CONTROL_KEY \(9 characters\) must be 16-256"):
        ModelControlKey.from_env()
    monkeypatch.setenv(MODEL_CONTROL_KEY_ENV, SECRET)
    assert ModelControlKey.from_env() == ModelControlKey(SECRET)
    assert model_control.grpc_headers_for("10.0.0.1:8001") == {GRPC_HEADER: SECRET}


def test_clients_in_the_starting_process_find_the_servers_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MODEL_CONTROL_KEY_ENV, raising=False)
    key = ModelControlKey.generate()
    model_control.register(["127.0.0.1:18001", "127.0.0.1:18000"], key)
    try:
        assert model_control.key_for("localhost:18001") is key
        assert model_control.http_headers_for("http://127.0.0.1:18000/") == key.http_headers()
        assert model_control.grpc_headers_for("127.0.0.1:18999") == {}
    finally:
        model_control.unregister(["127.0.0.1:18001", "127.0.0.1:18000"])
    assert model_control.key_for("127.0.0.1:18001") is None
