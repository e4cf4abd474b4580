"""Runtime settings of the gRPC client, read from arguments or `TRITONFORGE_CLIENT_*` environment variables.

    settings = ClientSettings(url="triton.internal:8001", timeout_s=2.0)
    # or: export TRITONFORGE_CLIENT_URL=dns:///triton.internal:8001 TRITONFORGE_CLIENT_ROUND_ROBIN=true
    settings = ClientSettings()
    client = TritonClient(settings=settings)

Every field maps to one environment variable (`TRITONFORGE_CLIENT_<FIELD>`); `headers` takes a JSON object and
`model_control_header` a JSON pair, e.g. '["triton-grpc-protocol-admin-key", "..."]'. Header values are secrets
(pydantic SecretStr): they never show in a repr, a log line or an error message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tritonforge.errors import ConfigError

__all__ = ["ClientSettings", "channel_args", "load_settings"]

# tritonclient's own default; without it gRPC caps messages at 4 MiB, too small for image batches.
_MAX_MESSAGE_BYTES = 2**31 - 1
# gRPC's default reconnect backoff starts at 1 s and grows to 120 s, so a client whose server restarted could stay in
# TRANSIENT_FAILURE (every call failing fast) for minutes. Starting at 100 ms and capping at 1 s finds a restarted
# server within about a second of its readiness (5 s measured 2.8 s in `make faults`) at one connect attempt a second.
_INITIAL_RECONNECT_BACKOFF_MS = 100
_MAX_RECONNECT_BACKOFF_MS = 1_000


class ClientSettings(BaseSettings):
    """How to reach a Triton server over gRPC and how patiently to call it."""

    model_config = SettingsConfigDict(env_prefix="TRITONFORGE_CLIENT_", extra="forbid", use_attribute_docstrings=True)

    url: str = "127.0.0.1:8001"
    """gRPC address `host:port`; `dns:///host:port` resolves every address behind a name (see `round_robin`)."""

    timeout_s: float = Field(default=10.0, gt=0)
    """Deadline of one call in seconds, retries and metadata look-ups included."""

    retries: int | None = Field(default=None, ge=0)
    """Optional cap on retries of one call; None (default) retries until the deadline, 0 never retries.

    Retried: a server that is unreachable or stopping (UNAVAILABLE) and a model it is reloading (NOT_FOUND "has no
    available versions"), where the request did not run. Never retried: a full queue, a bad request, an unknown
    model. Why no small fixed count: a tritonserver restart takes seconds, and three quick retries gave up after
    0.2 s on callers who would have waited their whole 10 s; `retry_max_tokens` bounds the load instead."""

    backoff_s: float = Field(default=0.05, ge=0)
    """Base of the exponential backoff between retries; each wait is drawn uniformly up to base * 2**attempt."""

    backoff_max_s: float = Field(default=1.0, ge=0)
    """Cap on one backoff wait: a server that came back is found within about this long."""

    retry_max_tokens: float = Field(default=10.0, gt=0, le=1000)
    """Size of the client's retry budget (gRPC retry throttling): each failure a server answered costs one token,
    retries stop while half or fewer are left, so a server failing every call gets about one attempt per request."""

    retry_token_ratio: float = Field(default=1.0, gt=0, le=1)
    """Tokens each success returns to the retry budget. 1.0 lets retries keep up while one of N >= 2 servers behind
    round robin restarts (about 1/N of first attempts fail; the budget holds while ratio >= 1/(N-1))."""

    server_timeout_margin_s: float = Field(default=0.05, ge=0)
    """How much earlier than the client's own deadline the server is told to give up (`timeout` of the request, used
    by models whose queue policy allows the override): the server rejects a request still queued when its caller's
    time is up, and the answer arrives before the client's deadline would cancel the call (client cancellation races
    crashed tritonserver 2.51's gRPC front end, triton-inference-server/server#7368). Never more than half the time
    left."""

    tls: bool = False
    """Use a TLS channel; without `root_certificates` the system's trusted roots verify the server."""

    root_certificates: Path | None = None
    """PEM file of the CA that signed the server's certificate (TLS only)."""

    private_key: Path | None = None
    """PEM private key of the client, for mutual TLS (TLS only)."""

    certificate_chain: Path | None = None
    """PEM certificate chain of the client, for mutual TLS (TLS only)."""

    headers: dict[str, SecretStr] = Field(default_factory=dict)
    """Metadata headers sent with every call, e.g. `{"authorization": "Bearer ..."}` for an auth proxy; the values
    are secrets. gRPC metadata names are lowercase."""

    model_control_header: tuple[str, SecretStr] | None = None
    """(name, value) of the header Triton's restricted protocol expects, sent only with model-control calls (load,
    unload, repository index). For `--grpc-restricted-protocol=model-repository:KEY=VALUE` the name is
    `triton-grpc-protocol-KEY` (Triton adds that prefix on gRPC); servers started by tritonforge use
    `triton-grpc-protocol-tritonforge-model-control-key` and $TRITONFORGE_MODEL_CONTROL_KEY."""

    keepalive_time_s: float | None = Field(default=None, gt=0)
    """Send an HTTP/2 keepalive ping after this many idle seconds, so that idle load balancers keep the connection."""

    keepalive_timeout_s: float = Field(default=20.0, gt=0)
    """How long to wait for a keepalive ping's answer before the connection is considered dead."""

    prediction_log: str | None = None
    """Folder or URL (`s3://...`) of a Parquet prediction log to write every inference call to (sample rate 1.0,
    default queue); None logs nothing. A `prediction_log=` argument of the client takes precedence."""

    round_robin: bool = False
    """Spread calls over every resolved address (`grpc.lb_policy_name=round_robin`), for `dns:///host:port` or a
    list such as `ipv4:10.0.0.1:8001,10.0.0.2:8001`; a retry then goes to the next server."""

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        url = url.strip()
        if url.startswith("grpc://"):
            url = url.removeprefix("grpc://")
        if url.startswith(("http://", "https://")):
            raise ValueError(f"'{url}' is an HTTP URL; give the gRPC address as host:port (Triton's default port 8001)")
        if not url:
            raise ValueError("the URL is empty; give the gRPC address as host:port")
        return url

    @field_validator("headers")
    @classmethod
    def _check_header_names(cls, headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name in headers:
            _check_header_name(name)
        return headers

    @field_validator("model_control_header")
    @classmethod
    def _check_control_header(cls, header: tuple[str, SecretStr] | None) -> tuple[str, SecretStr] | None:
        if header is not None:
            _check_header_name(header[0])
            if not header[1].get_secret_value():
                raise ValueError(f"model_control_header '{header[0]}' has an empty value; give the server's key")
        return header

    @model_validator(mode="after")
    def _check_tls_files(self) -> ClientSettings:
        for name in ("root_certificates", "private_key", "certificate_chain"):
            path = getattr(self, name)
            if path is None:
                continue
            if not self.tls:
                raise ValueError(f"{name}={path} is set but tls is off; set tls=true or drop {name}")
            if not path.is_file():
                raise ValueError(f"{name} file {path} does not exist; give the path of a PEM file")
        if (self.private_key is None) != (self.certificate_chain is None):
            raise ValueError("mutual TLS needs both private_key and certificate_chain; set both or neither")
        return self


def _check_header_name(name: str) -> None:
    if not name or name != name.strip().lower():
        raise ValueError(f"header name {name!r} must be non-empty and lowercase (gRPC metadata names are lowercase)")


def load_settings(settings: ClientSettings | None = None, **overrides: Any) -> ClientSettings:
    """Build client settings from an optional base object plus keyword overrides, reporting mistakes as ConfigError.

    Args:
        settings: a base object; when None, the fields come from the environment and defaults.
        **overrides: field values that win over `settings` and the environment (None values are ignored).

    Returns:
        The validated settings.

    Raises:
        ConfigError: a field has an invalid value or an unknown name.
    """
    overrides = {key: value for key, value in overrides.items() if value is not None}
    try:
        if settings is None:
            return ClientSettings(**overrides)
        if not overrides:
            return settings
        return ClientSettings(**{**settings.model_dump(), **overrides})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        # `from None`: a ValidationError prints the raw input, and that may hold a header's secret value.
        raise ConfigError(f"invalid client settings: {problems}") from None


def channel_args(settings: ClientSettings) -> list[tuple[str, Any]]:
    """Channel options of gRPC for these settings (message size, reconnect backoff, keepalive, load balancing).

    tritonclient ignores its own keepalive options as soon as channel_args is given, so every option is set here.

    Args:
        settings: the client settings.

    Returns:
        `(name, value)` pairs for `grpc.insecure_channel(..., options=...)`.
    """
    args: list[tuple[str, Any]] = [
        ("grpc.max_send_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", _MAX_MESSAGE_BYTES),
        ("grpc.initial_reconnect_backoff_ms", _INITIAL_RECONNECT_BACKOFF_MS),
        ("grpc.max_reconnect_backoff_ms", _MAX_RECONNECT_BACKOFF_MS),
    ]
    if settings.keepalive_time_s is not None:
        args += [
            ("grpc.keepalive_time_ms", int(settings.keepalive_time_s * 1000)),
            ("grpc.keepalive_timeout_ms", int(settings.keepalive_timeout_s * 1000)),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
        ]
    if settings.round_robin:
        args.append(("grpc.lb_policy_name", "round_robin"))
    return args
