from __future__ import annotations

from pathlib import Path

import pytest

from tritonforge.client import ClientSettings
from tritonforge.client.settings import channel_args, load_settings
from tritonforge.errors import ConfigError


def test_client_settings_reads_every_kind_of_field_when_env_vars_set(monkeypatch, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv("TRITONFORGE_CLIENT_URL", "dns:///triton.internal:8001")
    monkeypatch.setenv("TRITONFORGE_CLIENT_TIMEOUT_S", "2.5")
    monkeypatch.setenv("TRITONFORGE_CLIENT_RETRIES", "0")
    monkeypatch.setenv("TRITONFORGE_CLIENT_TLS", "true")
    monkeypatch.setenv("TRITONFORGE_CLIENT_ROOT_CERTIFICATES", str(ca))
    monkeypatch.setenv("TRITONFORGE_CLIENT_HEADERS", '{"authorization": "Bearer t0ken"}')
    monkeypatch.setenv("TRITONFORGE_CLIENT_MODEL_CONTROL_HEADER", '["triton-grpc-protocol-admin-key", "s3cret"]')
    monkeypatch.setenv("TRITONFORGE_CLIENT_RETRY_MAX_TOKENS", "20")
    monkeypatch.setenv("TRITONFORGE_CLIENT_KEEPALIVE_TIME_S", "30")
    monkeypatch.setenv("TRITONFORGE_CLIENT_ROUND_ROBIN", "1")
    settings = ClientSettings()
    assert settings.url == "dns:///triton.internal:8001"
    assert settings.timeout_s == 2.5
    assert settings.retries == 0
    assert settings.tls is True
    assert settings.root_certificates == ca
    assert {name: value.get_secret_value() for name, value in settings.headers.items()} == {
        "authorization": "Bearer t0ken"
    }
    assert settings.model_control_header is not None
    assert settings.model_control_header[0] == "triton-grpc-protocol-admin-key"
    assert settings.model_control_header[1].get_secret_value() == "s3cret"
    assert settings.retry_max_tokens == 20.0
    assert settings.keepalive_time_s == 30.0
    assert settings.round_robin is True


def test_client_settings_uses_documented_defaults_when_env_empty() -> None:
    settings = ClientSettings()
    assert (settings.url, settings.timeout_s, settings.retries, settings.backoff_s) == (
        "127.0.0.1:8001",
        10.0,
        None,
        0.05,
    )
    assert (settings.backoff_max_s, settings.retry_max_tokens, settings.retry_token_ratio) == (1.0, 10.0, 1.0)
    assert settings.server_timeout_margin_s == 0.05
    assert (settings.tls, settings.headers, settings.keepalive_time_s, settings.round_robin) == (False, {}, None, False)
    assert settings.model_control_header is None


def test_client_settings_has_docstring_when_field_declared() -> None:
    undocumented = [name for name, info in ClientSettings.model_fields.items() if not info.description]
    assert undocumented == []


def test_load_settings_prefers_overrides_when_env_also_set(monkeypatch) -> None:
    monkeypatch.setenv("TRITONFORGE_CLIENT_TIMEOUT_S", "7")
    settings = load_settings(url="127.0.0.1:9001", timeout_s=1.0)
    assert (settings.url, settings.timeout_s) == ("127.0.0.1:9001", 1.0)
    assert load_settings().timeout_s == 7.0


def test_load_settings_keeps_base_fields_when_overriding_some() -> None:
    base = ClientSettings(url="a:1", retries=5)
    settings = load_settings(base, timeout_s=3.0)
    assert (settings.url, settings.retries, settings.timeout_s) == ("a:1", 5, 3.0)


def test_load_settings_raises_config_error_when_field_unknown() -> None:
    with pytest.raises(ConfigError, match="timeout"):
        load_settings(timeout=3.0)


def test_load_settings_raises_config_error_when_value_out_of_range() -> None:
    with pytest.raises(ConfigError, match="timeout_s"):
        load_settings(timeout_s=-1.0)


def test_load_settings_rejects_http_url_when_given_one() -> None:
    with pytest.raises(ConfigError, match="HTTP URL; give the gRPC address as host:port"):
        load_settings(url="http://127.0.0.1:8000")


def test_load_settings_strips_grpc_scheme_when_present() -> None:
    assert load_settings(url="grpc://127.0.0.1:8001").url == "127.0.0.1:8001"


def test_load_settings_names_file_when_tls_file_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="root_certificates file .*missing.pem does not exist"):
        load_settings(tls=True, root_certificates=tmp_path / "missing.pem")


def test_load_settings_rejects_cert_when_tls_off(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    with pytest.raises(ConfigError, match="tls is off"):
        load_settings(root_certificates=ca)


def test_channel_args_sets_round_robin_and_keepalive_when_asked() -> None:
    args = dict(channel_args(ClientSettings(round_robin=True, keepalive_time_s=30.0, keepalive_timeout_s=5.0)))
    assert args["grpc.lb_policy_name"] == "round_robin"
    assert args["grpc.keepalive_time_ms"] == 30_000
    assert args["grpc.keepalive_timeout_ms"] == 5_000
    assert args["grpc.max_receive_message_length"] == 2**31 - 1


def test_channel_args_leaves_lb_and_keepalive_to_grpc_when_not_asked() -> None:
    args = dict(channel_args(ClientSettings()))
    assert "grpc.lb_policy_name" not in args
    assert "grpc.keepalive_time_ms" not in args


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"retry_max_tokens": 0}, "retry_max_tokens"),
        ({"retry_max_tokens": 5000}, "retry_max_tokens"),
        ({"retry_token_ratio": 1.5}, "retry_token_ratio"),
        ({"retries": -1}, "retries"),
        ({"server_timeout_margin_s": -0.1}, "server_timeout_margin_s"),
        ({"headers": {"Authorization": "x"}}, "lowercase"),
        ({"model_control_header": ("admin-key", "")}, "empty value"),
    ],
)
def test_load_settings_raises_config_error_when_retry_or_header_setting_invalid(overrides, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(**overrides)


def test_load_settings_keeps_secrets_when_overriding_other_fields() -> None:
    base = ClientSettings(headers={"authorization": "Bearer t0ken"}, model_control_header=("k", "v"))
    settings = load_settings(base, timeout_s=1.0)
    assert settings.headers["authorization"].get_secret_value() == "Bearer t0ken"
    assert settings.model_control_header is not None
    assert settings.model_control_header[1].get_secret_value() == "v"
