"""What the sync and asyncio clients share: settings, the metadata cache, request building and error policy.

    class TritonClient(ClientBase):        # adds the blocking I/O
        ...
    request = self._prepare("digits", signature, {"image": batch}, outputs=None)   # validated, ready to send

Keeping the I/O out of this class lets both clients apply exactly the same checks, cache, error mapping, retry
decisions and retry budget. The prediction log is shared here too: each inference call is logged once, after its
last attempt, with its final status (`_start_call` / `_finish_call`); logging never raises into the call.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from tritonforge.client.grpc_errors import _map_grpc_errors
from tritonforge.client.retry import Clock, Deadline, RetryBudget, RetryPolicy, costs_retry_token, is_retryable
from tritonforge.client.settings import ClientSettings, load_settings
from tritonforge.client.tensors import ModelSignature, validate_inputs
from tritonforge.errors import (
    ClientError,
    ConfigError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotReadyError,
    ServerUnavailableError,
)

if TYPE_CHECKING:
    from tritonforge.monitoring.logger import PredictionLogger

__all__ = ["CallLog", "ClientBase", "InferOutputs", "ModelState", "PreparedRequest"]

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


class InferOutputs(dict[str, NDArray[Any]]):
    """What `infer` returns: one array per output name (a plain dict to existing callers), and the request id.

    Attributes:
        request_id: the id the request carried to Triton (the caller's, or a generated uuid4 hex); pass it to
            `feedback` when the label arrives.
    """

    request_id: str

    def __init__(self, arrays: Mapping[str, NDArray[Any]], request_id: str) -> None:
        super().__init__(arrays)
        self.request_id = request_id


@dataclass(frozen=True, kw_only=True)
class CallLog:
    """What the prediction log needs from the start of an inference call."""

    request_id: str
    attributes: Mapping[str, str]
    started_at: dt.datetime
    started: float


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
        prediction_log: PredictionLogger | str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> None:
        self.settings = load_settings(settings, url=url, **overrides)
        chosen = prediction_log if prediction_log is not None else self.settings.prediction_log
        self._prediction_log, self._owns_log = _open_prediction_log(chosen)
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
    def prediction_log(self) -> PredictionLogger | None:
        """The logger this client's inference calls go to, or None when logging is off."""
        return self._prediction_log

    def _close_log(self) -> None:
        """Close the logger if this client opened it from a path (a logger passed in belongs to its caller)."""
        if self._owns_log and self._prediction_log is not None:
            self._prediction_log.close()

    def feedback(self, request_id: str, label: Any, *, model: str | None = None) -> None:
        """Store the late label(s) of a logged request (queued for the log's writer; never blocks).

        Args:
            request_id: the `request_id` of the call's result.
            label: the true answer of a one-item request (an int or a str), or a sequence: one label per item.
            model: the model, when the caller knows it (labels are matched by request id either way).

        Raises:
            ConfigError: the client has no prediction log.
        """
        log = self._prediction_log
        if log is None:
            raise ConfigError("feedback needs a prediction log: create the client with prediction_log=PATH or a logger")
        values = list(label) if isinstance(label, (Sequence, np.ndarray)) and not isinstance(label, str) else [label]
        for index, value in enumerate(values):
            log.feedback(str(request_id), value.item() if isinstance(value, np.generic) else value,
                         item_index=index, model=model)  # fmt: skip

    def _start_call(self, request_id: str | None, attributes: Mapping[str, str] | None) -> CallLog:
        """Fix the call's request id (generated unless given) and check its attributes, before any attempt."""
        if request_id is not None and (not isinstance(request_id, str) or not request_id):
            raise InvalidInputError(f"request_id must be a non-empty string, got {request_id!r}")
        if attributes is not None and (
            not isinstance(attributes, Mapping) or not all(isinstance(k, str) for k in attributes)
        ):
            raise InvalidInputError(f"attributes must map names (str) to values (str), got {attributes!r}")
        from tritonforge.monitoring.records import new_request_id, utc_now

        return CallLog(
            request_id=request_id or new_request_id(),
            attributes={k: str(v) for k, v in (attributes or {}).items()},
            started_at=utc_now(),
            started=self._clock(),
        )

    def _finish_call(
        self,
        call: CallLog,
        *,
        model: str,
        version: str | None,
        inputs: Mapping[str, NDArray[Any]],
        outputs: Mapping[str, NDArray[Any]] | None,
        error: BaseException | None,
        served_version: str = "",
    ) -> None:
        """Log a finished call once, with its final status; never raises (a failing log must not fail the call)."""
        log = self._prediction_log
        if log is None:
            return
        try:
            from tritonforge.monitoring.records import PredictionRecord

            signature = self._cached_signature(model, version)
            first = next(iter(inputs.values()), None)
            batches = signature is not None and signature.max_batch_size > 0
            items = int(first.shape[0]) if batches and first is not None and np.ndim(first) else 1
            log.log(
                PredictionRecord(
                    request_id=call.request_id,
                    time=call.started_at,
                    model=model,
                    version=served_version or version or "",
                    latency_s=max(0.0, self._clock() - call.started),
                    status="ok" if error is None else type(error).__name__,
                    items=items,
                    inputs=inputs,
                    outputs=outputs or {},
                    attributes=call.attributes,
                )
            )
        except Exception:  # noqa: BLE001 - the log is best effort by design
            _LOGGER.exception("prediction log: could not log a call of model %s", model)

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

    @staticmethod
    def _served_version(result: Any) -> str:
        """The version that answered, from the response (empty when the response does not say)."""
        try:
            return str(result.get_response().model_version)
        except Exception:  # noqa: BLE001 - only used to label the log
            return ""

    def _arrays(self, model: str, result: Any) -> dict[str, NDArray[Any]]:
        with self._map(model=model, timeout_s=self.settings.timeout_s):
            names = [output.name for output in result.get_response().outputs]
            # as_numpy returns read-only views of the response buffer; copies are safe for callers to modify.
            return {name: np.array(result.as_numpy(name)) for name in names}


def _open_prediction_log(
    log: PredictionLogger | str | os.PathLike[str] | None,
) -> tuple[PredictionLogger | None, bool]:
    """The client's logger, and whether the client opened it (from a path, so it closes it too)."""
    if log is None:
        return None, False
    if isinstance(log, (str, os.PathLike)):
        from tritonforge.monitoring.logger import PredictionLogger
        from tritonforge.monitoring.parquet_sink import ParquetSink

        return PredictionLogger(ParquetSink(log)), True
    if not callable(getattr(log, "log", None)):
        raise ConfigError(f"prediction_log must be a path, a URL or a PredictionLogger, got {type(log).__name__}")
    return log, False


def repository_entries(index: Any) -> list[ModelState]:
    """The entries of a `RepositoryIndexResponse` (tritonclient's answer to get_model_repository_index)."""
    return [
        ModelState(name=str(m.name), version=str(m.version), state=str(m.state), reason=str(m.reason))
        for m in index.models
    ]
