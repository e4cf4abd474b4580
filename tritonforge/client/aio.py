"""Asyncio gRPC client for Triton, with the same checks, deadlines, retries and errors as TritonClient.

    async with AsyncTritonClient("127.0.0.1:8001") as client:
        await client.wait_until_ready("digits")
        logits = (await client.infer("digits", {"image": batch}))["logits"]
        vectors = await client.embed(["How do I reset my password?"])   # float32 [1, 384]

The channel is opened on first use, inside the running event loop, because grpc.aio channels belong to the loop
that created them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
from tritonforge.client.transport import AsyncTransport, AsyncTransportFactory, grpc_aio_transport
from tritonforge.errors import ClientError, InferenceTimeoutError, ServerUnavailableError

if TYPE_CHECKING:
    from tritonforge.monitoring.logger import PredictionLogger

__all__ = ["AsyncTritonClient"]

_LOGGER = logging.getLogger(__name__)

_T = TypeVar("_T")


class AsyncTritonClient(ClientBase):
    """An asyncio client for one Triton server; `async with` closes its channel on exit.

    Args:
        url: the server's gRPC address (`host:port` or `dns:///host:port`); overrides `settings.url`.
        settings: base settings; when None they come from `TRITONFORGE_CLIENT_*` variables and defaults.
        transport_factory: builds the object that carries calls (default: `tritonclient.grpc.aio`); tests pass a fake.
        clock: the monotonic clock deadlines are measured on (tests pass a fake one).
        sleep: how to wait between retries (default `asyncio.sleep`; tests pass one that advances the fake clock).
        rng: the random source of the backoff jitter.
        prediction_log: turns on the prediction log: a PredictionLogger (the caller closes it), or a folder or URL
            for a Parquet log with default settings (closed with the client).
        **overrides: any ClientSettings field, e.g. `timeout_s=2.0, retries=0`.

    Raises:
        ConfigError: a setting is invalid (unknown field, bad URL, missing TLS file).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        settings: ClientSettings | None = None,
        transport_factory: AsyncTransportFactory | None = None,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        prediction_log: PredictionLogger | str | os.PathLike[str] | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(url, settings=settings, clock=clock, rng=rng, prediction_log=prediction_log, **overrides)
        self._sleep = sleep
        self._factory = transport_factory or grpc_aio_transport
        self._transport_obj: AsyncTransport | None = None

    async def __aenter__(self) -> AsyncTritonClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def _transport(self) -> AsyncTransport:
        self._check_open()
        if self._transport_obj is None:
            self._transport_obj = self._factory(self.settings)
        return self._transport_obj

    async def close(self) -> None:
        """Close the gRPC channel; idempotent."""
        self._closed = True
        transport, self._transport_obj = self._transport_obj, None
        if transport is not None:
            await transport.close()
        if self._owns_log:  # joining the writer thread would block the loop
            await asyncio.to_thread(self._close_log)

    async def _call(
        self, fn: Callable[[float], Awaitable[_T]], *, model: str | None, version: str | None, deadline: Deadline
    ) -> _T:
        """Await `fn(remaining_s)`, retrying what may succeed if sent again (jittered backoff) until the deadline."""
        self._check_open()
        attempt = 0
        last_error: ClientError | None = None
        while True:
            if deadline.expired():  # the last retryable error says more than "out of time"
                raise last_error or self._expired_error(model, deadline)
            try:
                with self._errors(model=model, version=version, deadline=deadline):
                    result = await fn(deadline.remaining_s())
            except ClientError as exc:
                delay = self._after_failure(exc, attempt=attempt, deadline=deadline)
                if delay is None:
                    raise
                last_error = exc
                await self._sleep(delay)
                attempt += 1
            else:
                self._after_success()
                return result

    async def _signature(self, model: str, version: str | None, deadline: Deadline) -> ModelSignature:
        cached = self._cached_signature(model, version)
        if cached is not None:
            return cached
        kwargs = {"headers": self._headers}
        metadata = await self._call(
            lambda t: self._transport.get_model_metadata(model, version or "", client_timeout=t, **kwargs),
            model=model,
            version=version,
            deadline=deadline,
        )
        config = await self._call(
            lambda t: self._transport.get_model_config(model, version or "", client_timeout=t, **kwargs),
            model=model,
            version=version,
            deadline=deadline,
        )
        return self._store_signature(model, version, metadata, config)

    async def infer(
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
        """Run one inference request; see `TritonClient.infer` for arguments, result and errors."""
        version = normalize_version(version)
        call = self._start_call(request_id, attributes)
        try:
            deadline = self._deadline(timeout_s)
            signature = await self._signature(model, version, deadline)
            request = self._prepare(model, signature, inputs, outputs)
            result = await self._call(
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

    async def embed(
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
        """Embed texts with a text-embedding model; see `TritonClient.embed` for arguments, result and errors."""
        batch = text_batch(texts)
        deadline = self._deadline(timeout_s)
        signature = await self._signature(model, normalize_version(version), deadline)
        chunks, width = embedding_plan(model, signature, len(batch), input_name=input_name, output_name=output_name)
        parts = []
        for number, chunk in enumerate(chunks):
            chunk_id = request_id if request_id is None or len(chunks) == 1 else f"{request_id}-{number}"
            if deadline.expired():
                raise InferenceTimeoutError(model, deadline.timeout_s)
            try:
                result = await self.infer(
                    model, {input_name: batch[chunk]}, version=version, timeout_s=max(deadline.remaining_s(), 1e-3),
                    outputs=[output_name], request_id=chunk_id, attributes=attributes,
                )  # fmt: skip
            except InferenceTimeoutError as exc:  # name the whole call's budget, not what was left of it
                raise InferenceTimeoutError(model, deadline.timeout_s) from exc
            parts.append(result[output_name])
        return join_embeddings(parts, width)

    async def model_signature(self, model: str, version: str | None = None) -> ModelSignature:
        """The model's inputs, outputs and max_batch_size (cached after the first call)."""
        return await self._signature(model, normalize_version(version), self._deadline(None))

    async def model_inputs(self, model: str, version: str | None = None) -> list[TensorInfo]:
        """The model's inputs, batch dimension included as -1 when the model batches."""
        return list((await self.model_signature(model, version)).inputs)

    async def model_outputs(self, model: str, version: str | None = None) -> list[TensorInfo]:
        """The model's outputs, batch dimension included as -1 when the model batches."""
        return list((await self.model_signature(model, version)).outputs)

    async def max_batch_size(self, model: str, version: str | None = None) -> int:
        """The largest batch one request may carry; 0 when the model does not batch."""
        return (await self.model_signature(model, version)).max_batch_size

    async def load_model(
        self, model: str, *, config: str | Mapping[str, Any] | None = None, timeout_s: float | None = None
    ) -> None:
        """Load (or reload) a model; see `TritonClient.load_model` for arguments and errors."""
        text = config if config is None or isinstance(config, str) else json.dumps(config)
        await self._call(
            lambda t: self._transport.load_model(model, headers=self._control_headers, config=text, client_timeout=t),
            model=model,
            version=None,
            deadline=self._deadline(timeout_s),
        )
        self._forget_model(model)

    async def unload_model(
        self, model: str, *, unload_dependents: bool = False, timeout_s: float | None = None
    ) -> None:
        """Unload a model; see `TritonClient.unload_model` for arguments and errors."""
        await self._call(
            lambda t: self._transport.unload_model(
                model, headers=self._control_headers, unload_dependents=unload_dependents, client_timeout=t
            ),
            model=model,
            version=None,
            deadline=self._deadline(timeout_s),
        )
        self._forget_model(model)

    async def repository_index(self, *, timeout_s: float | None = None) -> list[ModelState]:
        """Every model in the server's repository with its state; see `TritonClient.repository_index`."""
        index = await self._call(
            lambda t: self._transport.get_model_repository_index(headers=self._control_headers, client_timeout=t),
            model=None,
            version=None,
            deadline=self._deadline(timeout_s),
        )
        return repository_entries(index)

    async def is_server_ready(self) -> bool:
        """Whether the server answers and reports ready; False (not an error) when nothing answers."""
        deadline = self._deadline(None)
        try:
            with self._errors(model=None, version=None, deadline=deadline):
                ready = await self._transport.is_server_ready(headers=self._headers, client_timeout=deadline.timeout_s)
                return bool(ready)
        except ServerUnavailableError:
            return False

    async def wait_until_ready(self, model: str | None = None, *, timeout_s: float = 30.0) -> None:
        """Wait until the server (and `model`, if given) is ready; see `TritonClient.wait_until_ready`."""
        deadline = Deadline.after(timeout_s=timeout_s, clock=self._clock)
        server_ready, reason, attempt = False, "", 0
        while not deadline.expired():
            per_call_s = min(deadline.remaining_s(), self.settings.timeout_s)
            try:
                with self._errors(model=None, version=None, deadline=deadline):
                    transport = self._transport
                    ready = await transport.is_server_ready(headers=self._headers, client_timeout=per_call_s)
                    server_ready = bool(ready)
                    model_ready = server_ready and (
                        model is None
                        or bool(await transport.is_model_ready(model, headers=self._headers, client_timeout=per_call_s))
                    )
                if model_ready:
                    return
                reason = "" if server_ready else "the server answers but is not ready"
            except ServerUnavailableError as exc:
                server_ready, reason = False, str(exc.__cause__ or exc)
            await self._sleep(self._poll_interval(attempt, deadline))
            attempt += 1
        raise self._not_ready_error(model, timeout_s, server_ready=server_ready, reason=reason)
