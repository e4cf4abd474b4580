"""Synchronous gRPC client for Triton: checked requests, a deadline on every call, retries only where safe.

    with TritonClient("127.0.0.1:8001", timeout_s=2.0) as client:
        client.wait_until_ready("digits", timeout_s=30.0)
        logits = client.infer("digits", {"image": batch})["logits"]   # batch: float32 [N, 1, 8, 8]
        vectors = client.embed(["How do I reset my password?", ...])  # float32 [N, 384] from the `minilm` ensemble

Failed calls are retried until their deadline where the request did not run (server unreachable or stopping, model
reloading), with jittered backoff and a retry budget shared by the client's calls; a full queue is never retried.
Each infer request tells Triton the time its caller has left, so the server sheds it rather than run it late.
Model control (`load_model`, `unload_model`, `repository_index`) carries `model_control_header` and nothing else does.

Requests are checked against the model's metadata (fetched once per model and version, then cached) before
they are sent, so a wrong name, dtype or shape fails at once with InvalidInputError saying what was expected.
`embed` is the text model's convenience call: strings go as a BYTES tensor [N, 1] through the same checked `infer`
path, split into requests of at most the model's max_batch_size.
Works under gevent (Locust) once `grpc.experimental.gevent.init_gevent()` has run; call `close()` when done.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from tritonforge.client.base import ClientBase, InferOutputs, ModelState, normalize_version, repository_entries
from tritonforge.client.embedding import (
    EMBEDDING_OUTPUT,
    TEXT_INPUT,
    TEXT_MODEL,
    embedding_plan,
    join_embeddings,
    text_batch,
)
from tritonforge.client.retry import Clock, Deadline
from tritonforge.client.settings import ClientSettings
from tritonforge.client.tensors import ModelSignature, TensorInfo
from tritonforge.client.transport import SyncTransportFactory, grpc_transport
from tritonforge.errors import ClientError, InferenceTimeoutError, ServerUnavailableError

if TYPE_CHECKING:
    from tritonforge.monitoring.logger import PredictionLogger

__all__ = ["EMBEDDING_OUTPUT", "TEXT_INPUT", "TEXT_MODEL", "TritonClient"]

_LOGGER = logging.getLogger(__name__)

_T = TypeVar("_T")


class TritonClient(ClientBase):
    """A blocking client for one Triton server; a context manager that closes its channel on exit.

    Args:
        url: the server's gRPC address (`host:port` or `dns:///host:port`); overrides `settings.url`.
        settings: base settings; when None they come from `TRITONFORGE_CLIENT_*` variables and defaults.
        transport_factory: builds the object that carries calls (default: `tritonclient.grpc`); tests pass a fake.
        clock: the monotonic clock deadlines are measured on (tests pass a fake one).
        sleep: how to wait between retries (tests pass one that advances the fake clock).
        rng: the random source of the backoff jitter.
        prediction_log: turns on the prediction log: a PredictionLogger (the caller closes it), or a folder or URL
            for a Parquet log with default settings (closed with the client).
        **overrides: any ClientSettings field, e.g. `timeout_s=2.0, retries=0, headers={...}`.

    Raises:
        ConfigError: a setting is invalid (unknown field, bad URL, missing TLS file).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: ClientSettings | None = None,
        transport_factory: SyncTransportFactory | None = None,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        prediction_log: PredictionLogger | str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(url, settings=settings, clock=clock, rng=rng, prediction_log=prediction_log, **overrides)
        self._sleep = sleep
        self._transport = (transport_factory or grpc_transport)(self.settings)

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the gRPC channel; idempotent. Needed under gevent, where an open channel keeps the process alive."""
        if not self._closed:
            self._closed = True
            self._transport.close()
            self._close_log()

    def _call(self, fn: Callable[[float], _T], *, model: str | None, version: str | None, deadline: Deadline) -> _T:
        """Run `fn(remaining_s)`, retrying what may succeed if sent again (jittered backoff) until the deadline."""
        self._check_open()
        attempt = 0
        last_error: ClientError | None = None
        while True:
            if deadline.expired():  # the last retryable error says more than "out of time"
                raise last_error or self._expired_error(model, deadline)
            try:
                with self._errors(model=model, version=version, deadline=deadline):
                    result = fn(deadline.remaining_s())
            except ClientError as exc:
                delay = self._after_failure(exc, attempt=attempt, deadline=deadline)
                if delay is None:
                    raise
                last_error = exc
                self._sleep(delay)
                attempt += 1
            else:
                self._after_success()
                return result

    def _signature(self, model: str, version: str | None, deadline: Deadline) -> ModelSignature:
        cached = self._cached_signature(model, version)
        if cached is not None:
            return cached
        kwargs = {"headers": self._headers}
        metadata = self._call(
            lambda t: self._transport.get_model_metadata(model, version or "", client_timeout=t, **kwargs),
            model=model,
            version=version,
            deadline=deadline,
        )
        config = self._call(
            lambda t: self._transport.get_model_config(model, version or "", client_timeout=t, **kwargs),
            model=model,
            version=version,
            deadline=deadline,
        )
        return self._store_signature(model, version, metadata, config)

    def infer(
        self,
        model: str,
        inputs: Mapping[str, NDArray[Any]],
        *,
        version: str | None = None,
        timeout_s: float | None = None,
        outputs: Sequence[str] | None = None,
        request_id: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> InferOutputs:
        """Run one inference request.

        Args:
            model: the model's name.
            inputs: one array per input name, batch dimension first when the model batches.
            version: the model version; None lets the server pick (its version policy's latest).
            timeout_s: deadline for the whole call, metadata look-up and retries included (default: settings).
            outputs: the outputs to return; None returns every output.
            request_id: the id Triton and the prediction log get (default: a fresh uuid4 hex).
            attributes: strings the prediction log keeps with the call (segment, group, experiment arm).

        Returns:
            One array per output name (a dict), whose `request_id` is the call's id.

        Raises:
            InvalidInputError: the request does not match the model (checked before sending, or by the server).
            ModelNotReadyError: the model or version is unknown or not loaded.
            ServerUnavailableError: no server answered before the deadline (or the retry budget is spent).
            ServerOverloadedError: the model's queue is full (not retried).
            InferenceTimeoutError: the deadline passed, or the server dropped the request from its queue at it.
            InferenceError: the server failed while running the request.
        """
        version = normalize_version(version)
        call = self._start_call(request_id, attributes)
        try:
            deadline = self._deadline(timeout_s)
            signature = self._signature(model, version, deadline)
            request = self._prepare(model, signature, inputs, outputs)
            result = self._call(
                lambda t: self._transport.infer(
                    model,
                    request.inputs,
                    model_version=version or "",
                    outputs=request.outputs,
                    request_id=call.request_id,
                    headers=self._headers,
                    client_timeout=t,
                    timeout=self._server_timeout_us(t),
                ),
                model=model,
                version=version,
                deadline=deadline,
            )
            arrays = self._arrays(model, result)
        except BaseException as exc:
            self._finish_call(call, model=model, version=version, inputs=inputs, outputs=None, error=exc)
            raise
        self._finish_call(
            call, model=model, version=version, inputs=inputs, outputs=arrays, error=None,
            served_version=self._served_version(result),
        )  # fmt: skip
        return InferOutputs(arrays, call.request_id)

    def embed(
        self,
        texts: Sequence[str],
        *,
        model: str = TEXT_MODEL,
        version: str | None = None,
        timeout_s: float | None = None,
        input_name: str = TEXT_INPUT,
        output_name: str = EMBEDDING_OUTPUT,
        request_id: str | None = None,
        attributes: Mapping[str, str] | None = None,
    ) -> NDArray[np.float32]:
        """Embed texts with a text-embedding model (strings in, one vector per text out).

        Args:
            texts: the texts; more than the model's max_batch_size go as several requests, in order.
            model: the text model, by default the `minilm` ensemble (tokenizer and encoder on the server).
            version: the model version; None lets the server pick.
            timeout_s: deadline for the whole call, every request included (default: settings).
            input_name: the model's BYTES input.
            output_name: the model's embedding output.
            request_id: the request's id (several requests get `<id>-0`, `<id>-1`, ...); default: generated.
            attributes: strings the prediction log keeps with each request.

        Returns:
            float32 [len(texts), D] (D = 384 for all-MiniLM-L6-v2, L2-normalised); [0, D] for no texts.

        Raises:
            InvalidInputError: texts is not a list of strings, or the model is not a text-embedding model.
            ModelNotReadyError, ServerUnavailableError, InferenceTimeoutError, InferenceError: as `infer`.
        """
        batch = text_batch(texts)
        deadline = self._deadline(timeout_s)
        signature = self._signature(model, normalize_version(version), deadline)
        chunks, width = embedding_plan(model, signature, len(batch), input_name=input_name, output_name=output_name)
        parts = []
        for number, chunk in enumerate(chunks):
            chunk_id = request_id if request_id is None or len(chunks) == 1 else f"{request_id}-{number}"
            if deadline.expired():
                raise InferenceTimeoutError(model, deadline.timeout_s)
            try:
                result = self.infer(
                    model, {input_name: batch[chunk]}, version=version, timeout_s=max(deadline.remaining_s(), 1e-3),
                    outputs=[output_name], request_id=chunk_id, attributes=attributes,
                )  # fmt: skip
            except InferenceTimeoutError as exc:  # name the whole call's budget, not what was left of it
                raise InferenceTimeoutError(model, deadline.timeout_s) from exc
            parts.append(result[output_name])
        return join_embeddings(parts, width)

    def model_signature(self, model: str, version: str | None = None) -> ModelSignature:
        """The model's inputs, outputs and max_batch_size (cached after the first call)."""
        version = normalize_version(version)
        return self._signature(model, version, self._deadline(None))

    def model_inputs(self, model: str, version: str | None = None) -> list[TensorInfo]:
        """The model's inputs, batch dimension included as -1 when the model batches."""
        return list(self.model_signature(model, version).inputs)

    def model_outputs(self, model: str, version: str | None = None) -> list[TensorInfo]:
        """The model's outputs, batch dimension included as -1 when the model batches."""
        return list(self.model_signature(model, version).outputs)

    def max_batch_size(self, model: str, version: str | None = None) -> int:
        """The largest batch one request may carry; 0 when the model does not batch."""
        return self.model_signature(model, version).max_batch_size

    def load_model(
        self, model: str, *, config: str | Mapping[str, Any] | None = None, timeout_s: float | None = None
    ) -> None:
        """Load (or reload) a model on a server in explicit model-control mode; returns once it is loaded.

        Args:
            model: the model's name in the server's repository.
            config: a model config in Triton's JSON form (a string or a mapping) to load instead of config.pbtxt.
            timeout_s: deadline of the call (default: settings); loading a large model can take longer than inference.

        Raises:
            ClientError: the server restricts model control and `model_control_header` is missing or wrong.
            InferenceError: the server could not load the model (the message has its reason).
            ServerUnavailableError: no server answered before the deadline.
        """
        text = config if config is None or isinstance(config, str) else json.dumps(config)
        deadline = self._deadline(timeout_s)
        self._call(
            lambda t: self._transport.load_model(model, headers=self._control_headers, config=text, client_timeout=t),
            model=model,
            version=None,
            deadline=deadline,
        )
        self._forget_model(model)

    def unload_model(self, model: str, *, unload_dependents: bool = False, timeout_s: float | None = None) -> None:
        """Unload a model on a server in explicit model-control mode.

        Args:
            model: the model's name.
            unload_dependents: also unload the models it depends on (an ensemble's steps).
            timeout_s: deadline of the call (default: settings).

        Raises:
            ClientError: the server restricts model control and `model_control_header` is missing or wrong.
            InferenceError: the server refused to unload it.
            ServerUnavailableError: no server answered before the deadline.
        """
        deadline = self._deadline(timeout_s)
        self._call(
            lambda t: self._transport.unload_model(
                model, headers=self._control_headers, unload_dependents=unload_dependents, client_timeout=t
            ),
            model=model,
            version=None,
            deadline=deadline,
        )
        self._forget_model(model)

    def repository_index(self, *, timeout_s: float | None = None) -> list[ModelState]:
        """Every model in the server's repository, loaded or not, with its state.

        Args:
            timeout_s: deadline of the call (default: settings).

        Returns:
            One entry per model version the server knows (a model never loaded has version "" and state "").

        Raises:
            ClientError: the server restricts model control and `model_control_header` is missing or wrong.
            ServerUnavailableError: no server answered before the deadline.
        """
        deadline = self._deadline(timeout_s)
        index = self._call(
            lambda t: self._transport.get_model_repository_index(headers=self._control_headers, client_timeout=t),
            model=None,
            version=None,
            deadline=deadline,
        )
        return repository_entries(index)

    def is_server_ready(self) -> bool:
        """Whether the server answers and reports ready; False (not an error) when nothing answers."""
        deadline = self._deadline(None)
        try:
            with self._errors(model=None, version=None, deadline=deadline):
                self._check_open()
                return bool(self._transport.is_server_ready(headers=self._headers, client_timeout=deadline.timeout_s))
        except ServerUnavailableError:
            return False

    def wait_until_ready(self, model: str | None = None, *, timeout_s: float = 30.0) -> None:
        """Block until the server (and `model`, if given) is ready, polling with growing intervals.

        Args:
            model: a model that must also be ready; None waits for the server only.
            timeout_s: how long to wait in all.

        Raises:
            ServerUnavailableError: the server did not answer ready within timeout_s.
            ModelNotReadyError: the server is ready but the model did not become ready within timeout_s.
        """
        deadline = Deadline.after(timeout_s=timeout_s, clock=self._clock)
        server_ready, reason, attempt = False, "", 0
        while not deadline.expired():
            per_call_s = min(deadline.remaining_s(), self.settings.timeout_s)
            try:
                with self._errors(model=None, version=None, deadline=deadline):
                    self._check_open()
                    ready = self._transport.is_server_ready(headers=self._headers, client_timeout=per_call_s)
                    server_ready = bool(ready)
                    model_ready = server_ready and (
                        model is None
                        or bool(self._transport.is_model_ready(model, headers=self._headers, client_timeout=per_call_s))
                    )
                if model_ready:
                    return
                reason = "" if server_ready else "the server answers but is not ready"
            except ServerUnavailableError as exc:
                server_ready, reason = False, str(exc.__cause__ or exc)
            self._sleep(self._poll_interval(attempt, deadline))
            attempt += 1
        raise self._not_ready_error(model, timeout_s, server_ready=server_ready, reason=reason)
