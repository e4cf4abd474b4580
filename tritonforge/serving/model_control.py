"""The key that guards Triton's model-control API (load, unload, repository index) when model control is on.

    key = ModelControlKey.from_env() or ModelControlKey.generate()
    server_args = key.server_args()          # --grpc-restricted-protocol / --http-restricted-api
    client.load_model("digits", headers=key.grpc_headers())

Why: with `--model-control-mode=explicit` (or poll) anyone who reaches the server can load, replace or unload its
models. Triton's own restricted APIs (`--grpc-restricted-protocol`, `--http-restricted-api`, both in 2.51) refuse those
calls unless a header carries the expected value, so the launcher always turns them on with model control. The key
comes from `TRITONFORGE_MODEL_CONTROL_KEY`, or is generated per server start when that is unset (as notebook servers
do with their tokens); `repr()` and `str()` never show it. Clients in the process that started a server find its key
with `grpc_headers_for(url)`; clients elsewhere set the same environment variable.

Limits, said plainly: the key is a tritonserver command-line argument, so local users who can read the process table
(`ps`, /proc/PID/cmdline) can read it; it keeps remote callers out, not other users of the same machine. Triton
compares it over plain HTTP/gRPC (no TLS here), so it is not a secret on an untrusted network either.
"""

from __future__ import annotations

import os
import re
import secrets
import threading

from tritonforge.errors import ConfigError

MODEL_CONTROL_KEY_ENV = "TRITONFORGE_MODEL_CONTROL_KEY"
"""Environment variable holding the model-control key a server expects and clients send."""

HEADER = "tritonforge-model-control-key"
"""HTTP header that carries the key; over gRPC Triton expects it with the `triton-grpc-protocol-` prefix."""

GRPC_HEADER = "triton-grpc-protocol-" + HEADER
"""gRPC metadata key Triton 2.51+ checks for a restricted protocol (src/grpc/grpc_server.h, the prefix is fixed)."""

RESTRICTED = "model-repository"
"""Triton's category for load/unload/index. Model config and health stay open: every client reads them."""

_VALID = re.compile(r"[A-Za-z0-9_\-]{16,256}")
_REGISTRY: dict[str, ModelControlKey] = {}
_REGISTRY_LOCK = threading.Lock()


class ModelControlKey:
    """A model-control key whose value never shows in repr, str or logs.

    Raises:
        ConfigError: the value is shorter than 16 characters or holds characters outside A-Z a-z 0-9 _ -
            (Triton's flag parser splits on ':' and '=', and a header value must be one plain token).
    """

    __slots__ = ("_value",)

    def __init__(self, value: str, *, source: str = "the model-control key") -> None:
        if not _VALID.fullmatch(value):
            raise ConfigError(
                f"{source} ({len(value)} characters) must be 16-256 of A-Z a-z 0-9 _ -; make one with "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        self._value = value

    @classmethod
    def generate(cls) -> ModelControlKey:
        """Return a fresh random key (256 bits)."""
        return cls(secrets.token_urlsafe(32))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ModelControlKey | None:
        """Return the key in $TRITONFORGE_MODEL_CONTROL_KEY, or None when it is unset or empty."""
        value = (os.environ if environ is None else environ).get(MODEL_CONTROL_KEY_ENV, "").strip()
        return cls(value, source=f"${MODEL_CONTROL_KEY_ENV}") if value else None

    def reveal(self) -> str:
        """The key itself: for writing it to a private file or a header, never for printing."""
        return self._value

    def grpc_headers(self) -> dict[str, str]:
        """Metadata for tritonclient.grpc calls (`headers=`)."""
        return {GRPC_HEADER: self._value}

    def http_headers(self) -> dict[str, str]:
        """Headers for tritonclient.http calls or any HTTP client."""
        return {HEADER: self._value}

    def server_args(self) -> list[str]:
        """The tritonserver flags that restrict model control to callers holding this key (HTTP and gRPC)."""
        return [
            f"--grpc-restricted-protocol={RESTRICTED}:{HEADER}={self._value}",
            f"--http-restricted-api={RESTRICTED}:{HEADER}={self._value}",
        ]

    def __repr__(self) -> str:
        return "ModelControlKey(<hidden>)"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModelControlKey) and secrets.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash((ModelControlKey, self._value))


def register(addresses: list[str], key: ModelControlKey) -> None:
    """Remember the key of a server this process started, under each address clients may use for it."""
    with _REGISTRY_LOCK:
        for address in addresses:
            _REGISTRY[_normalise(address)] = key


def unregister(addresses: list[str]) -> None:
    """Forget a stopped server's key."""
    with _REGISTRY_LOCK:
        for address in addresses:
            _REGISTRY.pop(_normalise(address), None)


def key_for(url: str) -> ModelControlKey | None:
    """The key for the server at `url`: the one this process started there, else $TRITONFORGE_MODEL_CONTROL_KEY."""
    with _REGISTRY_LOCK:
        known = _REGISTRY.get(_normalise(url))
    return known if known is not None else ModelControlKey.from_env()


def grpc_headers_for(url: str) -> dict[str, str]:
    """Metadata (gRPC) that authorises model control on the server at `url` (empty when no key is known)."""
    key = key_for(url)
    return key.grpc_headers() if key is not None else {}


def http_headers_for(url: str) -> dict[str, str]:
    """HTTP headers that authorise model control on the server at `url` (empty when no key is known)."""
    key = key_for(url)
    return key.http_headers() if key is not None else {}


def _normalise(url: str) -> str:
    """'http://localhost:8000/' and '127.0.0.1:8000' name the same server."""
    address = url.split("://", 1)[-1].rstrip("/")
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if host in {"localhost", "0.0.0.0", "::1", "::"}:
        host = "127.0.0.1"
    return f"{host}:{port}"
