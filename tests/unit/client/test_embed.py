from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from client_fakes import DIGITS, AsyncFakeTriton, FakeTriton
from tritonclient.grpc import InferResult, model_config_pb2, service_pb2
from tritonclient.utils import deserialize_bytes_tensor

from tritonforge.client import AsyncTritonClient, ClientSettings, TritonClient
from tritonforge.errors import InferenceTimeoutError, InvalidInputError, ModelNotReadyError

TEXT_MODEL = "minilm"
WIDTH = 3
MAX_BATCH = 4


def fake_embedding(text: str) -> np.ndarray:
    """What the fake text model answers: [characters, spaces, 'e's] of the UTF-8 text, L2-normalised."""
    vector = np.array([len(text), text.count(" "), text.count("e")], dtype=np.float32) + 1.0
    return vector / np.linalg.norm(vector)


def _text_model() -> tuple[Any, Any]:
    tensor = service_pb2.ModelMetadataResponse.TensorMetadata
    metadata = service_pb2.ModelMetadataResponse(
        name=TEXT_MODEL,
        versions=["1"],
        platform="ensemble",
        inputs=[tensor(name="TEXT", datatype="BYTES", shape=[-1, 1])],
        outputs=[tensor(name="EMBEDDING", datatype="FP32", shape=[-1, WIDTH])],
    )
    config = model_config_pb2.ModelConfig(
        name=TEXT_MODEL,
        platform="ensemble",
        max_batch_size=MAX_BATCH,
        input=[model_config_pb2.ModelInput(name="TEXT", data_type=model_config_pb2.TYPE_STRING, dims=[1])],
        output=[model_config_pb2.ModelOutput(name="EMBEDDING", data_type=model_config_pb2.TYPE_FP32, dims=[WIDTH])],
    )
    return metadata, service_pb2.ModelConfigResponse(config=config)


class FakeTextTriton(FakeTriton):
    """FakeTriton that also serves a text model: BYTES [N, 1] in, fake_embedding rows out; records each batch."""

    def __init__(self) -> None:
        super().__init__()
        self.models[TEXT_MODEL] = _text_model()
        self.batches: list[list[str]] = []

    def infer(self, model_name: str, inputs: Any, **kwargs: Any) -> InferResult:
        if model_name != TEXT_MODEL:
            return super().infer(model_name, inputs, **kwargs)
        self._enter("infer", model_name=model_name, inputs=inputs, **kwargs)
        (text,) = inputs
        assert text.datatype() == "BYTES" and text.shape()[1:] == [1]
        texts = [item.decode("utf-8") for item in deserialize_bytes_tensor(text._get_content())]
        self.batches.append(texts)
        vectors = np.stack([fake_embedding(t) for t in texts]).astype(np.float32)
        output = service_pb2.ModelInferResponse.InferOutputTensor
        response = service_pb2.ModelInferResponse(
            model_name=model_name,
            model_version="1",
            outputs=[output(name="EMBEDDING", datatype="FP32", shape=list(vectors.shape))],
            raw_output_contents=[vectors.tobytes()],
        )
        return InferResult(response)


@pytest.fixture
def text_fake() -> FakeTextTriton:
    return FakeTextTriton()


@pytest.fixture
def client(text_fake: FakeTextTriton) -> TritonClient:
    def build(settings: ClientSettings) -> FakeTextTriton:
        return text_fake

    return TritonClient("127.0.0.1:8001", transport_factory=build, retries=0)


def test_embed_returns_one_float32_row_per_text_in_order(client: TritonClient, text_fake: FakeTextTriton) -> None:
    texts = ["Hello there", "", "naïve café"]

    vectors = client.embed(texts)

    assert vectors.dtype == np.float32 and vectors.shape == (3, WIDTH)
    np.testing.assert_allclose(vectors, np.stack([fake_embedding(t) for t in texts]), rtol=1e-6)
    assert text_fake.batches == [texts]
    assert text_fake.calls[-1][1]["outputs"][0].name() == "EMBEDDING"


def test_embed_splits_texts_over_max_batch_size_into_several_requests(
    client: TritonClient, text_fake: FakeTextTriton
) -> None:
    texts = [f"text number {i}" for i in range(2 * MAX_BATCH + 1)]

    vectors = client.embed(texts, timeout_s=5.0)

    assert [len(batch) for batch in text_fake.batches] == [MAX_BATCH, MAX_BATCH, 1]
    assert [t for batch in text_fake.batches for t in batch] == texts
    np.testing.assert_allclose(vectors, np.stack([fake_embedding(t) for t in texts]), rtol=1e-6)
    infer_timeouts = [kwargs["client_timeout"] for name, kwargs in text_fake.calls if name == "infer"]
    assert all(0 < t <= 5.0 for t in infer_timeouts) and infer_timeouts == sorted(infer_timeouts, reverse=True)


def test_embed_returns_an_empty_matrix_of_the_model_width_for_no_texts(
    client: TritonClient, text_fake: FakeTextTriton
) -> None:
    vectors = client.embed([])

    assert vectors.shape == (0, WIDTH) and vectors.dtype == np.float32
    assert text_fake.count("infer") == 0


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ("one string", "not one string; wrap a single text as"),
        (["ok", 3], "text 1 is a int; embed takes strings only"),
        (["ok", b"bytes"], "text 1 is a bytes"),
        (["\ud800"], "text 0 cannot be encoded as UTF-8"),
    ],
)
def test_embed_raises_invalid_input_without_calling_the_server_when_texts_are_not_strings(
    client: TritonClient, text_fake: FakeTextTriton, texts: Any, message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        client.embed(texts)
    assert text_fake.calls == []


def test_embed_raises_invalid_input_naming_the_model_when_it_is_not_a_text_model(
    client: TritonClient, text_fake: FakeTextTriton
) -> None:
    with pytest.raises(InvalidInputError, match=r"model 'digits' is not a text-embedding model.*inputs \['image'\]"):
        client.embed(["hello"], model=DIGITS)
    assert text_fake.count("infer") == 0


def test_embed_raises_model_not_ready_when_the_model_is_unknown(client: TritonClient) -> None:
    with pytest.raises(ModelNotReadyError, match="'nope'"):
        client.embed(["hello"], model="nope")


def test_embed_raises_timeout_when_the_deadline_passes_between_requests(
    client: TritonClient, text_fake: FakeTextTriton, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_infer = text_fake.infer

    def slow_infer(model_name: str, inputs: Any, **kwargs: Any) -> InferResult:
        import time

        time.sleep(0.06)
        return real_infer(model_name, inputs, **kwargs)

    monkeypatch.setattr(text_fake, "infer", slow_infer)
    with pytest.raises(InferenceTimeoutError, match="'minilm' did not finish within 0.05 s"):
        client.embed(["a"] * (MAX_BATCH + 1), timeout_s=0.05)
    assert len(text_fake.batches) == 1


def test_async_embed_matches_the_sync_client(text_fake: FakeTextTriton) -> None:
    texts = [f"sentence {i} here" for i in range(MAX_BATCH + 2)]

    def build(settings: ClientSettings) -> AsyncFakeTriton:
        return AsyncFakeTriton(text_fake)

    async def run() -> np.ndarray:
        async with AsyncTritonClient("127.0.0.1:8001", transport_factory=build, retries=0) as client:
            return await client.embed(texts)

    vectors = asyncio.run(run())

    assert vectors.shape == (len(texts), WIDTH)
    np.testing.assert_allclose(vectors, np.stack([fake_embedding(t) for t in texts]), rtol=1e-6)
    assert [len(b) for b in text_fake.batches] == [MAX_BATCH, 2]


def test_async_embed_raises_invalid_input_when_given_one_string(text_fake: FakeTextTriton) -> None:
    async def run() -> None:
        async with AsyncTritonClient("127.0.0.1:8001", transport_factory=lambda s: AsyncFakeTriton(text_fake)) as c:
            await c.embed("just one")

    with pytest.raises(InvalidInputError, match="not one string"):
        asyncio.run(run())
