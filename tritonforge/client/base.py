"""What the sync and asyncio clients share: settings, the metadata cache, request building and error policy.

    class TritonClient(ClientBase):        # adds the blocking I/O
        ...
    request = self._prepare("digits", signature, {"image": batch}, outputs=None)   # validated, ready to send

Keeping the I/O out of this class lets both clients apply exactly the same checks, cache and error mapping.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonforge.client.grpc_errors import _map_grpc_errors
from tritonforge.client.retry import Deadline, RetryPolicy
from tritonforge.client.settings import ClientSettings, load_settings
from tritonforge.client.tensors import ModelSignature, validate_inputs
from tritonforge.errors import (
    ClientError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotReadyError,
    ServerUnavailableError,
)

__all__ = ["ClientBase", "PreparedRequest"]

_LOGGER = logging.getLogger(__name__)

# Readiness polls start fast (a server that is almost up) and slow down to this interval.
_MAX_POLL_INTERVAL_S = 1.0


@dataclass(frozen=True, kw_only=True)
class PreparedRequest:
    """A validated request in tritonclient's terms.

    Attributes:
        inputs: `InferInput` objects holding the data.
        outputs: `InferRequestedOutput` objects, or None to receive every output.
    """

    inputs: list[Any]
    outputs: list[Any] | None


def normalize_version(version: str | int | None) -> str | None:
    """Triton versions are strings; accept an int too, and treat "" like None (the server's latest)."""
    if version is None:
        return None
    text = str(version).strip()
    return text or None


class ClientBase:
    """Settings, metadata cache and request preparation shared by TritonClient and AsyncTritonClient."""

    def __init__(self, url: str | None = None, *, settings: ClientSettings | None = None, **overrides: Any) -> None:
        self.settings = load_settings(settings, url=url, **overrides)
        self._retry = RetryPolicy(
            retries=self.settings.retries, backoff_s=self.settings.backoff_s, backoff_max_s=self.settings.backoff_max_s
        )
        self._signatures: dict[tuple[str, str], ModelSignature] = {}
        self._closed = False

    @property
    def url(self) -> str:
        """The server's gRPC address."""
        return self.settings.url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(url={self.url!r})"

    @property
    def _headers(self) -> dict[str, str] | None:
        return dict(self.settings.headers) or None

    def _deadline(self, timeout_s: float | None) -> Deadline:
        return Deadline.after(timeout_s=self.settings.timeout_s if timeout_s is None else timeout_s)

    def _check_open(self) -> None:
        if self._closed:
            raise ClientError(f"the client for {self.url} is closed; create a new one")

    def _expired_error(self, model: str | None, deadline: Deadline) -> ClientError:
        if model is None:
            return ServerUnavailableError(self.url, f"no answer within {deadline.timeout_s:g} s")
        return InferenceTimeoutError(model, deadline.timeout_s)

    def _cached_signature(self, model: str, version: str | None) -> ModelSignature | None:
        return self._signatures.get((model, version or ""))

    def _store_signature(self, model: str, version: str | None, metadata: Any, config: Any) -> ModelSignature:
        signature = ModelSignature.from_protos(metadata, config)
        self._signatures[(model, version or "")] = signature
        _LOGGER.debug("cached signature of model %s version %s: %s", model, version or "latest", signature)
        return signature

    def _forget(self, model: str, version: str | None) -> None:
        if self._signatures.pop((model, version or ""), None) is not None:
            _LOGGER.info("dropped cached metadata of model %s version %s", model, version or "latest")

    @contextmanager
    def _errors(self, *, model: str | None, version: str | None, deadline: Deadline) -> Iterator[None]:
        """Map one network call's errors; forget cached metadata the server has just contradicted."""
        try:
            with _map_grpc_errors(url=self.url, model=model, version=version, timeout_s=deadline.timeout_s):
                yield
        except (ModelNotReadyError, InvalidInputError):
            # The model was unloaded, or reloaded with another signature: the next call must re-read metadata.
            if model is not None:
                self._forget(model, version)
            raise

    def _retry_delay(self, exc: ServerUnavailableError, *, attempt: int, deadline: Deadline) -> float | None:
        delay = self._retry.next_delay(attempt=attempt, deadline=deadline)
        if delay is not None:
            _LOGGER.info("server %s unavailable, retry %d in %.3f s: %s", self.url, attempt + 1, delay, exc)
        return delay

    def _poll_interval(self, attempt: int, deadline: Deadline) -> float:
        return min(_MAX_POLL_INTERVAL_S, 0.05 * 2.0**attempt, deadline.remaining_s())

    def _not_ready_error(self, model: str | None, timeout_s: float, *, server_ready: bool, reason: str) -> ClientError:
        detail = f"not ready within {timeout_s:g} s" + (f" ({reason})" if reason else "")
        if not server_ready or model is None:
            return ServerUnavailableError(self.url, detail)
        return ModelNotReadyError(model, None, detail)

    def _prepare(
        self,
        model: str,
        signature: ModelSignature,
        inputs: Mapping[str, NDArray[Any]],
        outputs: Sequence[str] | None,
    ) -> PreparedRequest:
        import tritonclient.grpc as grpcclient

        requested = tuple(outputs) if outputs is not None else None
        validate_inputs(model, signature, inputs, outputs=requested)
        tensors = {tensor.name: tensor for tensor in signature.inputs}
        infer_inputs = []
        for name, array in inputs.items():
            tensor = tensors[name]  # validate_inputs checked every name
            if tensor.datatype == "BYTES" and array.dtype.kind == "U":
                array = array.astype(np.object_)  # tritonclient serializes object/bytes arrays only
            infer_input = grpcclient.InferInput(name, list(array.shape), tensor.datatype)
            with _map_grpc_errors(url=self.url, model=model, timeout_s=self.settings.timeout_s):
                infer_input.set_data_from_numpy(array)
            infer_inputs.append(infer_input)
        requested_outputs = [grpcclient.InferRequestedOutput(name) for name in requested] if requested else None
        return PreparedRequest(inputs=infer_inputs, outputs=requested_outputs)

    def _arrays(self, model: str, result: Any) -> dict[str, NDArray[Any]]:
        with _map_grpc_errors(url=self.url, model=model, timeout_s=self.settings.timeout_s):
            names = [output.name for output in result.get_response().outputs]
            # as_numpy returns read-only views of the response buffer; copies are safe for callers to modify.
            return {name: np.array(result.as_numpy(name)) for name in names}
