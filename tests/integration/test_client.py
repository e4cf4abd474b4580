"""The client library and `tritonforge infer` against the real embedded tritonserver serving `digits`."""

from __future__ import annotations

import asyncio
import collections
import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from tritonforge.cli.infer import infer as infer_command
from tritonforge.client import AsyncTritonClient, ModelState, TensorInfo, TritonClient
from tritonforge.client.grpc_errors import _map_grpc_errors
from tritonforge.converters.triton_config import read_config, write_config
from tritonforge.errors import (
    ClientError,
    InvalidInputError,
    ModelNotReadyError,
    ServerOverloadedError,
    ServerUnavailableError,
)
from tritonforge.serving.launcher import EmbeddedTriton

pytestmark = pytest.mark.integration

MODEL = "digits"
BATCH = 64
CONTROL_HEADER = "triton-grpc-protocol-test-admin-key"
CONTROL_KEY = "k3y-for-the-index-only-0123456789"


@pytest.fixture
def client(triton_server) -> Iterator[TritonClient]:
    with TritonClient(triton_server.grpc_url, timeout_s=30.0) as client:
        client.wait_until_ready(MODEL, timeout_s=60.0)
        yield client


def _good_batch(digits_split) -> np.ndarray:
    return np.ascontiguousarray(digits_split.x_test[:8], dtype=np.float32)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_client_reports_digits_signature_when_model_served(client: TritonClient) -> None:
    assert client.model_inputs(MODEL) == [TensorInfo("image", "FP32", (-1, 1, 8, 8))]
    assert client.model_outputs(MODEL) == [TensorInfo("logits", "FP32", (-1, 10))]
    assert client.max_batch_size(MODEL) == BATCH
    assert client.is_server_ready()


def test_client_matches_torch_logits_when_whole_test_split_sent(client: TritonClient, digits_split) -> None:
    x = digits_split.x_test.astype(np.float32)
    served = np.concatenate(
        [client.infer(MODEL, {"image": x[i : i + BATCH]})["logits"] for i in range(0, len(x), BATCH)]
    )
    assert served.shape == digits_split.torch_logits.shape
    np.testing.assert_array_equal(served.argmax(axis=1), digits_split.torch_logits.argmax(axis=1))
    assert float(np.abs(served - digits_split.torch_logits).max()) < 1e-4


def test_client_accepts_explicit_version_when_version_exists(client: TritonClient, digits_split) -> None:
    batch = _good_batch(digits_split)
    by_version = client.infer(MODEL, {"image": batch}, version="1")["logits"]
    latest = client.infer(MODEL, {"image": batch}, outputs=["logits"])["logits"]
    np.testing.assert_allclose(by_version, latest, atol=1e-6)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (lambda x: {"image": x.astype(np.float64)}, r"expects FP32 with shape \[-1, 1, 8, 8\], got float64"),
        (lambda x: {"image": x.reshape(len(x), 8, 8)}, r"got float32 \[8, 8, 8\]"),
        (lambda x: {"pixels": x}, "has no input 'pixels'"),
        (lambda x: {"image": np.repeat(x, 9, axis=0)}, "over the model's max_batch_size 64"),
    ],
    ids=["wrong-dtype", "wrong-shape", "unknown-input", "batch-too-large"],
)
def test_client_raises_invalid_input_then_still_serves_when_request_is_bad(
    client: TritonClient, digits_split, inputs, message
) -> None:
    batch = _good_batch(digits_split)
    with pytest.raises(InvalidInputError, match=message):
        client.infer(MODEL, inputs(batch))
    assert client.infer(MODEL, {"image": batch})["logits"].shape == (len(batch), 10)


def test_client_raises_model_not_ready_then_still_serves_when_model_unknown(client: TritonClient, digits_split) -> None:
    with pytest.raises(ModelNotReadyError, match="model 'no_such_model'"):
        client.infer("no_such_model", {"image": _good_batch(digits_split)})
    with pytest.raises(ModelNotReadyError, match="version 99"):
        client.infer(MODEL, {"image": _good_batch(digits_split)}, version="99")
    assert client.infer(MODEL, {"image": _good_batch(digits_split)})["logits"].shape == (8, 10)


def test_map_grpc_errors_turns_server_invalid_argument_into_invalid_input_when_check_bypassed(
    triton_server, digits_split
) -> None:
    import tritonclient.grpc as grpcclient

    bad = np.zeros((2, 8, 8), np.float32)
    request = grpcclient.InferInput("image", list(bad.shape), "FP32")
    request.set_data_from_numpy(bad)
    with grpcclient.InferenceServerClient(triton_server.grpc_url) as raw:
        with pytest.raises(InvalidInputError, match="unexpected shape"):
            with _map_grpc_errors(url=triton_server.grpc_url, model=MODEL, timeout_s=10.0):
                raw.infer(MODEL, [request], client_timeout=10.0)


def test_async_client_gives_same_answer_when_same_batch_sent(client: TritonClient, triton_server, digits_split) -> None:
    batch = _good_batch(digits_split)
    expected = client.infer(MODEL, {"image": batch})["logits"]

    async def run() -> np.ndarray:
        async with AsyncTritonClient(triton_server.grpc_url, timeout_s=30.0) as aclient:
            await aclient.wait_until_ready(MODEL, timeout_s=30.0)
            assert await aclient.max_batch_size(MODEL) == BATCH
            results = await asyncio.gather(*(aclient.infer(MODEL, {"image": batch}) for _ in range(4)))
            with pytest.raises(InvalidInputError):
                await aclient.infer(MODEL, {"image": batch.astype(np.float64)})
            return results[-1]["logits"]

    np.testing.assert_allclose(asyncio.run(run()), expected, atol=1e-6)


@pytest.mark.timeout(60)
def test_wait_until_ready_raises_server_unavailable_when_port_has_no_server() -> None:
    url = f"127.0.0.1:{_free_port()}"
    with TritonClient(url, timeout_s=1.0) as client:
        with pytest.raises(ServerUnavailableError, match="not ready within 2 s") as info:
            client.wait_until_ready(MODEL, timeout_s=2.0)
        assert info.value.url == url
        assert client.is_server_ready() is False


def test_infer_cli_prints_table_and_json_when_server_answers(triton_server, digits_split, tmp_path) -> None:
    batch = _good_batch(digits_split)[:3]
    np.save(tmp_path / "batch.npy", batch)
    (tmp_path / "one.json").write_text(json.dumps(batch[0].tolist()))
    app = typer.Typer()
    app.command("infer")(infer_command)
    app.command("other")(lambda: None)
    runner = CliRunner()
    common = ["infer", "--url", triton_server.grpc_url, "--model", MODEL]

    table = runner.invoke(app, [*common, "--input", str(tmp_path / "batch.npy")])
    assert table.exit_code == 0, table.output
    assert "logits: float32 [3, 10]" in table.output
    expected = digits_split.torch_logits[:3].argmax(axis=1)
    rows = [line.split() for line in table.output.splitlines()[2:5]]
    assert [int(row[1]) for row in rows] == expected.tolist()

    as_json = runner.invoke(
        app, [*common, "--input", f"image={tmp_path / 'one.json'}", "--add-batch-dim", "-f", "json"]
    )
    assert as_json.exit_code == 0, as_json.output
    document = json.loads(as_json.output)
    assert document["outputs"]["logits"]["shape"] == [1, 10]
    assert int(np.argmax(document["outputs"]["logits"]["data"][0])) == int(expected[0])


@pytest.fixture(scope="module")
def guarded_server(digits_repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTriton]:
    """digits with a queue of one request, and the repository index behind Triton's restricted protocol."""
    repository = tmp_path_factory.mktemp("guarded") / "model_repository"
    shutil.copytree(digits_repository, repository)
    config = read_config(repository / MODEL / "config.pbtxt")
    config.dynamic_batching.default_queue_policy.max_queue_size = 1
    write_config(config, repository / MODEL / "config.pbtxt")
    restricted = f"--grpc-restricted-protocol=model-repository:{CONTROL_HEADER.removeprefix('triton-grpc-protocol-')}"
    server = EmbeddedTriton(
        repository=repository,
        log_path=repository.parent / "tritonserver.log",
        extra_args=(f"{restricted}={CONTROL_KEY}",),
        startup_timeout_s=120,
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_client_raises_overloaded_without_retrying_when_queue_full(guarded_server, digits_split) -> None:
    batch = np.ascontiguousarray(np.repeat(digits_split.x_test[:1], BATCH, axis=0), dtype=np.float32)

    async def run() -> collections.Counter[str]:
        outcomes: collections.Counter[str] = collections.Counter()
        async with AsyncTritonClient(guarded_server.grpc_url, timeout_s=60.0) as client:
            await client.wait_until_ready(MODEL, timeout_s=60.0)

            async def one() -> None:
                try:
                    await client.infer(MODEL, {"image": batch})
                    outcomes["ok"] += 1
                except ServerOverloadedError as exc:
                    assert "Exceeds maximum queue size" in str(exc)
                    outcomes["overloaded"] += 1

            await asyncio.gather(*(one() for _ in range(100)))
        return outcomes

    outcomes = asyncio.run(run())
    assert outcomes["ok"] >= 1 and outcomes["overloaded"] >= 1
    assert sum(outcomes.values()) == 100  # every request answered, none with another error
    assert guarded_server.is_running()


def test_repository_index_needs_control_header_when_protocol_restricted(guarded_server) -> None:
    with TritonClient(guarded_server.grpc_url, timeout_s=30.0) as client:
        client.wait_until_ready(MODEL, timeout_s=60.0)
        with pytest.raises(ClientError, match="set model_control_header") as info:
            client.repository_index()
        assert CONTROL_HEADER in str(info.value)
        assert client.infer(MODEL, {"image": np.zeros((1, 1, 8, 8), np.float32)})["logits"].shape == (1, 10)
    with TritonClient(guarded_server.grpc_url, model_control_header=(CONTROL_HEADER, CONTROL_KEY)) as client:
        assert client.repository_index() == [ModelState(name=MODEL, version="1", state="READY", reason="")]
