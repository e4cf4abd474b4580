"""all-MiniLM-L6-v2 built into a repository and served as the `minilm` ensemble on the real embedded tritonserver.

One build and one server start for the module; sentence-transformers' own `encode()` is the yardstick.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from tritonforge.client import TritonClient
from tritonforge.errors import ClientError, InvalidInputError
from tritonforge.examples import minilm
from tritonforge.examples.text_corpus import evaluation_sentences
from tritonforge.serving.launcher import EmbeddedTriton

LONG_TEXT = " ".join(["The quick brown fox jumps over the lazy dog near the river bank."] * 60)  # ~780 pieces


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def build(minilm_build: minilm.MiniLMBuild) -> minilm.MiniLMBuild:
    return minilm_build


@pytest.fixture(scope="module")
def server(build: minilm.MiniLMBuild, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTriton]:
    log_path = tmp_path_factory.mktemp("minilm-server") / "tritonserver.log"
    triton = EmbeddedTriton(repository=build.repository, log_path=log_path, startup_timeout_s=120)
    triton.start()
    try:
        yield triton
    finally:
        triton.stop()


@pytest.fixture
def client(server: EmbeddedTriton) -> Iterator[TritonClient]:
    with TritonClient(server.grpc_url, timeout_s=60.0) as triton_client:
        triton_client.wait_until_ready(minilm.MODEL_NAME, timeout_s=60.0)
        yield triton_client


def test_onnx_encoder_matches_sentence_transformers_encode(build: minilm.MiniLMBuild, reference_model: Any) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(build.encoder.onnx_path), providers=["CPUExecutionProvider"])
    for sentences in (evaluation_sentences(n=96, seed=0), ["", LONG_TEXT]):  # short ones apart: padding costs
        feeds = minilm.tokenize(sentences)

        onnx_vectors = session.run(None, feeds)[0]
        reference = minilm.reference_embeddings(sentences, reference_model)

        assert onnx_vectors.shape == (len(sentences), minilm.EMBEDDING_DIM)
        assert _cosines(onnx_vectors, reference).min() >= 0.9999
        st_ids = reference_model.tokenize(sentences)["input_ids"].numpy()  # the reference's tokenizer, truncation
        np.testing.assert_array_equal(st_ids, feeds["input_ids"])
    assert build.encoder.manifest["export"]["parity_inputs"] == "caller's sample()"
    assert build.onnx_bytes == build.encoder.onnx_path.stat().st_size > 50_000_000


def test_embed_matches_sentence_transformers_on_real_sentences(client: TritonClient, reference_model: Any) -> None:
    sentences = evaluation_sentences(n=150, seed=0)  # over max_batch_size 64: three requests

    served = client.embed(sentences)

    reference = minilm.reference_embeddings(sentences, reference_model)
    assert served.shape == (150, minilm.EMBEDDING_DIM) and served.dtype == np.float32
    assert _cosines(served, reference).min() >= 0.999
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


def test_embed_of_very_different_lengths_in_one_batch_equals_each_text_alone(client: TritonClient) -> None:
    texts = ["Hi.", LONG_TEXT, "", "A medium sentence about tokenizers and padding in one batch."]

    together = client.embed(texts)
    alone = np.concatenate([client.embed([text]) for text in texts])

    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_embed_handles_the_empty_string_and_truncates_long_text(client: TritonClient, reference_model: Any) -> None:
    texts = ["", LONG_TEXT, LONG_TEXT + " And a different ending that lies far beyond the truncation point."]

    served = client.embed(texts)

    assert np.isfinite(served).all()
    assert _cosines(served, minilm.reference_embeddings(texts, reference_model)).min() >= 0.999
    np.testing.assert_allclose(served[1], served[2], atol=1e-6)  # both cut at 256 word pieces


def test_concurrent_requests_of_different_lengths_get_their_own_answers(client: TritonClient) -> None:
    texts = evaluation_sentences(n=24, seed=5) + [LONG_TEXT]
    expected = {text: client.embed([text])[0] for text in texts}
    failures: list[str] = []

    def worker(offset: int, url: str) -> None:
        with TritonClient(url, timeout_s=60.0) as own:
            for i in range(offset, len(texts), 4):
                got = own.embed([texts[i]])[0]
                if not np.allclose(got, expected[texts[i]], atol=1e-5):
                    failures.append(texts[i])

    threads = [threading.Thread(target=worker, args=(k, client.url)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []


def test_bad_requests_get_clear_errors_and_the_server_stays_up(client: TritonClient, server: EmbeddedTriton) -> None:
    with pytest.raises(InvalidInputError, match="input 'TEXT' of model 'minilm' expects BYTES"):
        client.infer(minilm.MODEL_NAME, {"TEXT": np.zeros((1, 1), dtype=np.float32)})

    raw = grpcclient.InferenceServerClient(server.grpc_url)  # past the client's own checks: the server must refuse
    try:
        wrong = grpcclient.InferInput("TEXT", [1, 1], "FP32")
        wrong.set_data_from_numpy(np.zeros((1, 1), dtype=np.float32))
        with pytest.raises(InferenceServerException, match="(?i)TEXT.*(data ?type|FP32)"):
            raw.infer(minilm.MODEL_NAME, [wrong])
    finally:
        raw.close()

    not_utf8 = np.array([[b"\xff\xfe broken"]], dtype=object)
    with pytest.raises(ClientError, match="not valid UTF-8"):
        client.infer(minilm.MODEL_NAME, {"TEXT": not_utf8})

    assert server.is_running()
    assert client.embed(["Still serving after bad requests."]).shape == (1, minilm.EMBEDDING_DIM)
