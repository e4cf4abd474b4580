"""A fake Triton at the network edge for the client tests: real tritonclient protobuf answers, scripted failures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import InferResult, model_config_pb2, service_pb2
from tritonclient.utils import InferenceServerException

from tritonforge.client import ClientSettings

DIGITS = "digits"
MAX_BATCH = 4


def server_error(code: grpc.StatusCode, message: str = "boom") -> InferenceServerException:
    """The exception tritonclient raises for a failed RPC (status rendered as 'StatusCode.X')."""
    return InferenceServerException(msg=message, status=str(code), debug_details="fake")


class FakeRpcError(grpc.RpcError):
    """A grpc.RpcError carrying a real status code, as grpc raises from a call."""

    def __init__(self, code: grpc.StatusCode, details: str = "rpc failed") -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


# Messages as the embedded tritonserver 2.51 and gRPC core send them (read from real answers).
CONNECT_REFUSED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:8001: "
    "Failed to connect to remote host: Connection refused"
)
SERVER_STOPPING = "Server is stopping to serve requests."
RELOADING = "Request for unknown model: 'digits' has no available versions"
UNKNOWN_MODEL = "Request for unknown model: 'digits' is not found"
QUEUE_FULL = "[request id: <id_unknown>] Exceeds maximum queue size"
SHED = "Request timeout expired"
RESTRICTED = "This protocol is restricted, expecting header 'triton-grpc-protocol-admin-key'"


@dataclass
class FakeClock:
    """A monotonic clock that only moves when the client sleeps (or a test says so)."""

    now: float = 1000.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)


def digits_metadata() -> service_pb2.ModelMetadataResponse:
    return service_pb2.ModelMetadataResponse(
        name=DIGITS,
        versions=["1"],
        platform="onnxruntime_onnx",
        inputs=[service_pb2.ModelMetadataResponse.TensorMetadata(name="image", datatype="FP32", shape=[-1, 1, 8, 8])],
        outputs=[service_pb2.ModelMetadataResponse.TensorMetadata(name="logits", datatype="FP32", shape=[-1, 10])],
    )


def digits_config() -> service_pb2.ModelConfigResponse:
    config = model_config_pb2.ModelConfig(
        name=DIGITS,
        max_batch_size=MAX_BATCH,
        input=[model_config_pb2.ModelInput(name="image", data_type=model_config_pb2.TYPE_FP32, dims=[1, 8, 8])],
        output=[model_config_pb2.ModelOutput(name="logits", data_type=model_config_pb2.TYPE_FP32, dims=[10])],
    )
    return service_pb2.ModelConfigResponse(config=config)


def fake_logits(images: np.ndarray) -> np.ndarray:
    """What the fake 'digits' model answers: row i is sum(image i) * [0..9], so argmax is 9 for positive sums."""
    sums = images.reshape(len(images), -1).sum(axis=1, keepdims=True)
    return (sums * np.arange(10, dtype=np.float32)).astype(np.float32)


@dataclass
class FakeTriton:
    """Stands in for tritonclient.grpc.InferenceServerClient; records each call and its keyword arguments."""

    settings: ClientSettings | None = None
    ready: bool = True
    models: dict[str, tuple[Any, Any]] = field(default_factory=lambda: {DIGITS: (digits_metadata(), digits_config())})
    failures: dict[str, list[BaseException]] = field(default_factory=dict)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    closed: bool = False
    outage: Callable[[str], BaseException | None] | None = None
    index: list[tuple[str, str, str, str]] = field(default_factory=lambda: [(DIGITS, "1", "READY", "")])

    def fail(self, method: str, *errors: BaseException) -> None:
        """Make the next calls of `method` raise these errors, in order, before it answers normally."""
        self.failures.setdefault(method, []).extend(errors)

    def fail_until(self, clock: FakeClock, until: float, make_error: Callable[[], BaseException]) -> None:
        """Make every call fail with a fresh `make_error()` while `clock` reads less than `until` (an outage)."""
        self.outage = lambda method: make_error() if clock() < until else None

    def count(self, method: str) -> int:
        return sum(1 for name, _ in self.calls if name == method)

    def _enter(self, method: str, **kwargs: Any) -> None:
        if self.closed:
            raise ValueError("Cannot invoke RPC on closed channel!")
        self.calls.append((method, kwargs))
        pending = self.failures.get(method)
        if pending:
            raise pending.pop(0)
        failure = self.outage(method) if self.outage is not None else None
        if failure is not None:
            raise failure

    def _model(self, model_name: str, model_version: str) -> tuple[Any, Any]:
        if model_name not in self.models or model_version not in ("", "1"):
            version = f" version {model_version}" if model_version else ""
            raise server_error(
                grpc.StatusCode.NOT_FOUND, f"Request for unknown model: '{model_name}'{version} is not found"
            )
        return self.models[model_name]

    def is_server_ready(self, headers: Any = None, client_timeout: Any = None) -> bool:
        self._enter("is_server_ready", headers=headers, client_timeout=client_timeout)
        return self.ready

    def is_model_ready(
        self, model_name: str, model_version: str = "", headers: Any = None, client_timeout: Any = None
    ) -> bool:
        self._enter("is_model_ready", model_name=model_name, headers=headers, client_timeout=client_timeout)
        return model_name in self.models

    def get_model_metadata(
        self, model_name: str, model_version: str = "", headers: Any = None, client_timeout: Any = None
    ) -> Any:
        self._enter("get_model_metadata", model_name=model_name, headers=headers, client_timeout=client_timeout)
        return self._model(model_name, model_version)[0]

    def get_model_config(
        self, model_name: str, model_version: str = "", headers: Any = None, client_timeout: Any = None
    ) -> Any:
        self._enter("get_model_config", model_name=model_name, headers=headers, client_timeout=client_timeout)
        return self._model(model_name, model_version)[1]

    def infer(self, model_name: str, inputs: Any, **kwargs: Any) -> InferResult:
        self._enter("infer", model_name=model_name, inputs=inputs, **kwargs)
        self._model(model_name, kwargs.get("model_version", ""))
        (image,) = inputs
        # tritonclient keeps the serialized tensor bytes behind _get_content(); its own request builder reads them.
        data = np.frombuffer(image._get_content(), dtype=np.float32).reshape(image.shape())
        logits = fake_logits(data)
        response = service_pb2.ModelInferResponse(
            model_name=model_name,
            model_version="1",
            outputs=[
                service_pb2.ModelInferResponse.InferOutputTensor(
                    name="logits", datatype="FP32", shape=list(logits.shape)
                )
            ],
            raw_output_contents=[logits.tobytes()],
        )
        return InferResult(response)

    def load_model(
        self, model_name: str, headers: Any = None, config: Any = None, files: Any = None, client_timeout: Any = None
    ) -> None:
        self._enter("load_model", model_name=model_name, headers=headers, config=config, client_timeout=client_timeout)

    def unload_model(
        self, model_name: str, headers: Any = None, unload_dependents: bool = False, client_timeout: Any = None
    ) -> None:
        self._enter(
            "unload_model",
            model_name=model_name,
            headers=headers,
            unload_dependents=unload_dependents,
            client_timeout=client_timeout,
        )

    def get_model_repository_index(
        self, headers: Any = None, as_json: bool = False, client_timeout: Any = None
    ) -> service_pb2.RepositoryIndexResponse:
        self._enter("get_model_repository_index", headers=headers, client_timeout=client_timeout)
        Entry = service_pb2.RepositoryIndexResponse.ModelIndex  # noqa: N806
        return service_pb2.RepositoryIndexResponse(
            models=[Entry(name=n, version=v, state=s, reason=r) for n, v, s, r in self.index]
        )

    def close(self) -> None:
        self.closed = True


class AsyncFakeTriton:
    """The asyncio face of FakeTriton (tritonclient.grpc.aio's methods are coroutines)."""

    def __init__(self, fake: FakeTriton) -> None:
        self.fake = fake

    async def is_server_ready(self, **kwargs: Any) -> bool:
        return self.fake.is_server_ready(**kwargs)

    async def is_model_ready(self, model_name: str, *args: Any, **kwargs: Any) -> bool:
        return self.fake.is_model_ready(model_name, *args, **kwargs)

    async def get_model_metadata(self, model_name: str, *args: Any, **kwargs: Any) -> Any:
        return self.fake.get_model_metadata(model_name, *args, **kwargs)

    async def get_model_config(self, model_name: str, *args: Any, **kwargs: Any) -> Any:
        return self.fake.get_model_config(model_name, *args, **kwargs)

    async def infer(self, model_name: str, inputs: Any, **kwargs: Any) -> InferResult:
        return self.fake.infer(model_name, inputs, **kwargs)

    async def load_model(self, model_name: str, **kwargs: Any) -> None:
        self.fake.load_model(model_name, **kwargs)

    async def unload_model(self, model_name: str, **kwargs: Any) -> None:
        self.fake.unload_model(model_name, **kwargs)

    async def get_model_repository_index(self, **kwargs: Any) -> service_pb2.RepositoryIndexResponse:
        return self.fake.get_model_repository_index(**kwargs)

    async def close(self) -> None:
        self.fake.close()


def images(batch: int = 2, dtype: Any = np.float32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.random((batch, 1, 8, 8)).astype(dtype)
