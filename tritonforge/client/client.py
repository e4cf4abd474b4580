"""Synchronous gRPC client for Triton: checked requests, a deadline on every call, retries only where safe.

    with TritonClient("127.0.0.1:8001", timeout_s=2.0) as client:
        client.wait_until_ready("digits", timeout_s=30.0)
        logits = client.infer("digits", {"image": batch})["logits"]   # batch: float32 [N, 1, 8, 8]
        vectors = client.embed(["How do I reset my password?", ...])  # float32 [N, 384] from the `minilm` ensemble

Requests are checked against the model's metadata (fetched once per model and version, then cached) before
they are sent, so a wrong name, dtype or shape fails at once with InvalidInputError saying what was expected.
`embed` is the text model's convenience call: strings go as a BYTES tensor [N, 1] through the same checked `infer`
path, split into requests of at most the model's max_batch_size.
Works under gevent (Locust) once `grpc.experimental.gevent.init_gevent()` has run; call `close()` when done.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from numpy.typing import NDArray

from tritonforge.client.base import ClientBase, normalize_version
from tritonforge.client.embedding import (
    EMBEDDING_OUTPUT,
    TEXT_INPUT,
    TEXT_MODEL,
    embedding_plan,
    join_embeddings,
    text_batch,
)
from tritonforge.client.retry import Deadline
from tritonforge.client.settings import ClientSettings
from tritonforge.client.tensors import ModelSignature, TensorInfo
from tritonforge.client.transport import SyncTransportFactory, grpc_transport
from tritonforge.errors import InferenceTimeoutError, ServerUnavailableError

__all__ = ["EMBEDDING_OUTPUT", "TEXT_INPUT", "TEXT_MODEL", "TritonClient"]

_LOGGER = logging.getLogger(__name__)

_T = TypeVar("_T")


class TritonClient(ClientBase):
    """A blocking client for one Triton server; a context manager that closes its channel on exit.

    Args:
        url: the server's gRPC address (`host:port` or `dns:///host:port`); overrides `settings.url`.
        settings: base settings; when None they come from `TRITONFORGE_CLIENT_*` variables and defaults.
        transport_factory: builds the object that carries calls (default: `tritonclient.grpc`); tests pass a fake.
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
        **overrides: Any,
    ) -> None:
        super().__init__(url, settings=settings, **overrides)
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

    def _call(self, fn: Callable[[float], _T], *, model: str | None, version: str | None, deadline: Deadline) -> _T:
        """Run `fn(remaining_s)`, retrying UNAVAILABLE with jittered backoff within the deadline."""
        self._check_open()
        attempt = 0
        while True:
            if deadline.expired():
                raise self._expired_error(model, deadline)
            try:
                with self._errors(model=model, version=version, deadline=deadline):
                    return fn(deadline.remaining_s())
            except ServerUnavailableError as exc:
                delay = self._retry_delay(exc, attempt=attempt, deadline=deadline)
                if delay is None:
                    raise
                time.sleep(delay)
                attempt += 1

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
    ) -> dict[str, NDArray[Any]]:
        """Run one inference request.

        Args:
            model: the model's name.
            inputs: one array per input name, batch dimension first when the model batches.
            version: the model version; None lets the server pick (its version policy's latest).
            timeout_s: deadline for the whole call, metadata look-up and retries included (default: settings).
            outputs: the outputs to return; None returns every output.

        Returns:
            One array per output name.

        Raises:
            InvalidInputError: the request does not match the model (checked before sending, or by the server).
            ModelNotReadyError: the model or version is unknown or not loaded.
            ServerUnavailableError: no server answered, after the allowed retries.
            InferenceTimeoutError: the deadline passed.
            InferenceError: the server failed while running the request.
        """
        version = normalize_version(version)
        deadline = self._deadline(timeout_s)
        signature = self._signature(model, version, deadline)
        request = self._prepare(model, signature, inputs, outputs)
        result = self._call(
            lambda t: self._transport.infer(
                model,
                request.inputs,
                model_version=version or "",
                outputs=request.outputs,
                headers=self._headers,
                client_timeout=t,
            ),
            model=model,
            version=version,
            deadline=deadline,
        )
        return self._arrays(model, result)

    def embed(
        self,
        texts: Sequence[str],
        *,
        model: str = TEXT_MODEL,
        version: str | None = None,
        timeout_s: float | None = None,
        input_name: str = TEXT_INPUT,
        output_name: str = EMBEDDING_OUTPUT,
    ) -> NDArray[np.float32]:
        """Embed texts with a text-embedding model (strings in, one vector per text out).

        Args:
            texts: the texts; more than the model's max_batch_size go as several requests, in order.
            model: the text model, by default the `minilm` ensemble (tokenizer and encoder on the server).
            version: the model version; None lets the server pick.
            timeout_s: deadline for the whole call, every request included (default: settings).
            input_name: the model's BYTES input.
            output_name: the model's embedding output.

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
        for chunk in chunks:
            if deadline.expired():
                raise InferenceTimeoutError(model, deadline.timeout_s)
            try:
                result = self.infer(
                    model, {input_name: batch[chunk]}, version=version, timeout_s=max(deadline.remaining_s(), 1e-3),
                    outputs=[output_name],
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
        deadline = Deadline.after(timeout_s=timeout_s)
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
            time.sleep(self._poll_interval(attempt, deadline))
            attempt += 1
        raise self._not_ready_error(model, timeout_s, server_ready=server_ready, reason=reason)
