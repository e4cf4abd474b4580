"""The network edge: the tritonclient objects that carry calls, and the small surface the clients use of them.

    transport = grpc_transport(ClientSettings(url="127.0.0.1:8001", tls=False))
    transport.is_server_ready(headers=None, client_timeout=1.0)

TritonClient and AsyncTritonClient take a `transport_factory`, so tests (or a service with special channel needs)
can swap the real tritonclient for any object with these methods.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from tritonforge.client.settings import ClientSettings, channel_args

__all__ = [
    "AsyncTransport",
    "AsyncTransportFactory",
    "SyncTransport",
    "SyncTransportFactory",
    "grpc_aio_transport",
    "grpc_transport",
]


class SyncTransport(Protocol):
    """The part of `tritonclient.grpc.InferenceServerClient` that TritonClient calls."""

    def is_server_ready(self, headers: Any = ..., client_timeout: Any = ...) -> bool: ...  # noqa: D102

    def is_model_ready(  # noqa: D102
        self, model_name: str, model_version: str = ..., headers: Any = ..., client_timeout: Any = ...
    ) -> bool: ...

    def get_model_metadata(  # noqa: D102
        self, model_name: str, model_version: str = ..., headers: Any = ..., client_timeout: Any = ...
    ) -> Any: ...

    def get_model_config(  # noqa: D102
        self, model_name: str, model_version: str = ..., headers: Any = ..., client_timeout: Any = ...
    ) -> Any: ...

    def infer(self, model_name: str, inputs: Any, **kwargs: Any) -> Any: ...  # noqa: D102

    def load_model(  # noqa: D102
        self, model_name: str, headers: Any = ..., config: Any = ..., files: Any = ..., client_timeout: Any = ...
    ) -> None: ...

    def unload_model(  # noqa: D102
        self, model_name: str, headers: Any = ..., unload_dependents: bool = ..., client_timeout: Any = ...
    ) -> None: ...

    def get_model_repository_index(  # noqa: D102
        self, headers: Any = ..., as_json: bool = ..., client_timeout: Any = ...
    ) -> Any: ...

    def close(self) -> None: ...  # noqa: D102


class AsyncTransport(Protocol):
    """The part of `tritonclient.grpc.aio.InferenceServerClient` that AsyncTritonClient awaits."""

    def is_server_ready(self, headers: Any = ..., client_timeout: Any = ...) -> Awaitable[bool]: ...  # noqa: D102

    def is_model_ready(  # noqa: D102
        self, model_name: str, model_version: str = ..., headers: Any = ..., client_timeout: Any = ...
    ) -> Awaitable[bool]: ...

    def get_model_metadata(  # noqa: D102
        self, model_name: str, model_version: str = ..., headers: Any = ..., client_timeout: Any = ...
    ) -> Awaitable[Any]: ...

    def get_model_config(  # noqa: D102
        self, model_name: str, model_version: str = ..., headers: Any = ..., client_timeout: Any = ...
    ) -> Awaitable[Any]: ...

    def infer(self, model_name: str, inputs: Any, **kwargs: Any) -> Awaitable[Any]: ...  # noqa: D102

    def load_model(  # noqa: D102
        self, model_name: str, headers: Any = ..., config: Any = ..., files: Any = ..., client_timeout: Any = ...
    ) -> Awaitable[None]: ...

    def unload_model(  # noqa: D102
        self, model_name: str, headers: Any = ..., unload_dependents: bool = ..., client_timeout: Any = ...
    ) -> Awaitable[None]: ...

    def get_model_repository_index(  # noqa: D102
        self, headers: Any = ..., as_json: bool = ..., client_timeout: Any = ...
    ) -> Awaitable[Any]: ...

    def close(self) -> Awaitable[None]: ...  # noqa: D102


SyncTransportFactory = Callable[[ClientSettings], SyncTransport]
AsyncTransportFactory = Callable[[ClientSettings], AsyncTransport]


def _tls_kwargs(settings: ClientSettings) -> dict[str, Any]:
    return {
        "ssl": settings.tls,
        "root_certificates": str(settings.root_certificates) if settings.root_certificates else None,
        "private_key": str(settings.private_key) if settings.private_key else None,
        "certificate_chain": str(settings.certificate_chain) if settings.certificate_chain else None,
    }


def grpc_transport(settings: ClientSettings) -> SyncTransport:
    """A `tritonclient.grpc.InferenceServerClient` with the channel these settings describe.

    Args:
        settings: URL, TLS files, keepalive and load-balancing options.

    Returns:
        The tritonclient object; its channel connects lazily, on the first call.
    """
    import tritonclient.grpc as grpcclient

    client: SyncTransport = grpcclient.InferenceServerClient(
        settings.url, channel_args=channel_args(settings), **_tls_kwargs(settings)
    )
    return client


def grpc_aio_transport(settings: ClientSettings) -> AsyncTransport:
    """A `tritonclient.grpc.aio.InferenceServerClient`; build it inside the event loop that will use it.

    Args:
        settings: URL, TLS files, keepalive and load-balancing options.

    Returns:
        The asyncio tritonclient object.
    """
    import tritonclient.grpc.aio as aioclient

    client: AsyncTransport = aioclient.InferenceServerClient(
        settings.url, channel_args=channel_args(settings), **_tls_kwargs(settings)
    )
    return client
