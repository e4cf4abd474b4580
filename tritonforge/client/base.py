"""What the sync and asyncio clients share: settings, the metadata cache, request building and error policy.

    class TritonClient(ClientBase):        # adds the blocking I/O
        ...
    request = self._prepare("digits", signature, {"image": batch}, outputs=None)   # validated, ready to send

Keeping the I/O out of this class lets both clients apply exactly the same checks, cache, error mapping, retry
decisions and retry budget.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonforge.client.grpc_errors import _map_grpc_errors
from tritonforge.client.retry import Clock, Deadline, RetryBudget, RetryPolicy, costs_retry_token, is_retryable
from tritonforge.client.settings import ClientSettings, load_settings
from tritonforge.client.tensors import ModelSignature, validate_inputs
from tritonforge.errors import (
    ClientError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotReadyError,
    ServerUnavailableError,
)

__all__ = ["ClientBase", "ModelState", "PreparedRequest"]

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


@dataclass(frozen=True, kw_only=True)
class ModelState:
    """One entry of the server's model repository index.

    Attributes:
        name: the model's name.
        version: the version, or "" for a model the server knows but has not loaded.
        state: Triton's state ("READY", "UNAVAILABLE", "LOADING", "UNLOADING"), or "" for a model never loaded.
        reason: why the model is in that state (e.g. the load error), or "".
    """

    name: str
    version: str
    state: str
    reason: str

    @property
    def ready(self) -> bool:
        """Whether this version serves requests."""
        return self.state == "READY"


def normalize_version(version: str | int | None) -> str | None:
    """Triton versions are strings; accept an int too, and treat "" like None (the server's latest)."""
    if version is None:
        return None
    text = str(version).strip()
    return text or None


class ClientBase:
    """Settings, metadata cache and request preparation shared by TritonClient and AsyncTritonClient."""

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: ClientSettings | None = None,
        clock: Clock = time.monotonic,
        rng: random.Random | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = load_settings(settings, url=url, **overrides)
        self._clock = clock
        self._retry = RetryPolicy(
            retries=self.settings.retries,
            backoff_s=self.settings.backoff_s,
            backoff_max_s=self.settings.backoff_max_s,
            rng=rng or random.Random(),
        )
        # One budget per client: every call (and every thread or task) of this client draws on it.
        self._budget = RetryBudget(
            max_tokens=self.settings.retry_max_tokens, token_ratio=self.settings.retry_token_ratio
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
    def retry_budget(self) -> RetryBudget:
        """The retry budget every call of this client shares."""
        return self._budget

    @property
    def _headers(self) -> dict[str, str] | None:
        return {name: value.get_secret_value() for name, value in self.settings.headers.items()} or None

    @property
    def _control_headers(self) -> dict[str, str] | None:
        """Headers of model-control calls: the common ones plus the restricted-protocol header, sent only here."""
        headers = self._headers or {}
        if self.settings.model_control_header is not None:
            name, value = self.settings.model_control_header
            headers = {**headers, name: value.get_secret_value()}
        return headers or None

    @property
    def _secrets(self) -> tuple[str, ...]:
        values = [value.get_secret_value() for value in self.settings.headers.values()]
        if self.settings.model_control_header is not None:
            values.append(self.settings.model_control_header[1].get_secret_value())
        return tuple(value for value in values if value)

    def _deadline(self, timeout_s: float | None) -> Deadline:
        return Deadline.after(timeout_s=self.settings.timeout_s if timeout_s is None else timeout_s, clock=self._clock)

    def _server_timeout_us(self, remaining_s: float) -> int:
        """The `timeout` Triton gets with an infer request: the time left, less a margin, in microseconds.

        The server rejects a request still queued past this (models whose queue policy has allow_timeout_override),
        so that work nobody waits for is not run, and its answer comes back before the client's own deadline: a
        client that cancels calls at its deadline races the server (tritonserver 2.51 crashed in that race,
        triton-inference-server/server#7368). The margin is at most half the time left, so short deadlines still
        give the server most of theirs.
        """
        margin = min(self.settings.server_timeout_margin_s, remaining_s / 2)
        return max(1, int((remaining_s - margin) * 1_000_000))

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

    def _forget_model(self, model: str) -> None:
        """Drop every cached version of a model that was just loaded or unloaded (its config may have changed)."""
        for name, version in [key for key in self._signatures if key[0] == model]:
            self._forget(name, version)

    def _map(self, *, model: str | None, version: str | None = None, timeout_s: float) -> AbstractContextManager[None]:
        """`_map_grpc_errors` with this client's URL, TLS set-up and secrets."""
        return _map_grpc_errors(
            url=self.url,
            model=model,
            version=version,
            timeout_s=timeout_s,
            tls=self.settings.tls,
            client_certificate=self.settings.certificate_chain is not None,
            secrets=self._secrets,
        )

    @contextmanager
    def _errors(self, *, model: str | None, version: str | None, deadline: Deadline) -> Iterator[None]:
        """Map one network call's errors; forget cached metadata the server has just contradicted."""
        try:
            with self._map(model=model, version=version, timeout_s=deadline.timeout_s):
                yield
        except (ModelNotReadyError, InvalidInputError):
            # The model was unloaded, or reloaded with another signature: the next call must re-read metadata.
            if model is not None:
                self._forget(model, version)
            raise

    def _after_failure(self, exc: ClientError, *, attempt: int, deadline: Deadline) -> float | None:
        """Book a failed attempt in the retry budget; return the wait before retrying, or None to raise `exc`."""
        if costs_retry_token(exc):
            self._budget.record_failure()
        if not is_retryable(exc):
            return None
        if not self._budget.allows_retry():
            _LOGGER.warning(
                "not retrying a call to %s: the retry budget is spent (%r): %s", self.url, self._budget, exc
            )
            return None
        delay = self._retry.next_delay(attempt=attempt, deadline=deadline)
        if delay is not None:
            _LOGGER.info("call to %s failed, retry %d in %.3f s: %s", self.url, attempt + 1, delay, exc)
        return delay

    def _after_success(self) -> None:
        self._budget.record_success()

    def _poll_interval(self, attempt: int, deadline: Deadline) -> float:
        return min(_MAX_POLL_INTERVAL_S, 0.05 * 2.0**attempt, deadline.remaining_s())

    def _not_ready_error(self, model: str | None, timeout_s: float, *, server_ready: bool, reason: str) -> ClientError:
        detail = f"not ready within {timeout_s:g} s" + (f" ({reason})" if reason else "")
        if not server_ready or model is None:
            return ServerUnavailableError(self.url, detail, connected=False)
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
            with self._map(model=model, timeout_s=self.settings.timeout_s):
                infer_input.set_data_from_numpy(array)
            infer_inputs.append(infer_input)
        requested_outputs = [grpcclient.InferRequestedOutput(name) for name in requested] if requested else None
        return PreparedRequest(inputs=infer_inputs, outputs=requested_outputs)

    def _arrays(self, model: str, result: Any) -> dict[str, NDArray[Any]]:
        with self._map(model=model, timeout_s=self.settings.timeout_s):
            names = [output.name for output in result.get_response().outputs]
            # as_numpy returns read-only views of the response buffer; copies are safe for callers to modify.
            return {name: np.array(result.as_numpy(name)) for name in names}


def repository_entries(index: Any) -> list[ModelState]:
    """The entries of a `RepositoryIndexResponse` (tritonclient's answer to get_model_repository_index)."""
    return [
        ModelState(name=str(m.name), version=str(m.version), state=str(m.state), reason=str(m.reason))
        for m in index.models
    ]
