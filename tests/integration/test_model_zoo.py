"""The model zoo through the whole path: export, parity at every gate size, the real tritonserver, torch's answers.

Every model (zoo_models.py: transformers' ResNet, ViT, BERT and DistilBERT with random weights, a torch LSTM, a
two-input/two-output tabular model with mixed dtypes) is exported by the library as a user would declare it, served
by one embedded tritonserver for the module, and asked over gRPC by input name, at several sizes of each dynamic axis
and at batch 1 and 4; every answer must equal torch's, the model called with keyword arguments.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest
from zoo_models import ZOO, ZOO_BY_NAME, ZooModel, build_baked_length, torch_outputs

from tritonforge.client import TritonClient
from tritonforge.converters.export import ExportedVersion, export_to_repository
from tritonforge.converters.specs import parse_tensor_spec
from tritonforge.converters.triton_config import read_config
from tritonforge.errors import ParityError, TritonForgeError
from tritonforge.serving.launcher import EmbeddedTriton

BATCHES = (1, 4)
NAMES = [entry.name for entry in ZOO]


def export_zoo_model(entry: ZooModel, repository: Path) -> ExportedVersion:
    """Export one zoo model exactly as `tritonforge export <factory> --input ... --axis ...` would."""
    return export_to_repository(
        model=entry.build(),
        inputs=entry.specs(),
        repository=repository,
        model_name=entry.name,
        source=entry.factory,
        axis_sizes=entry.axes or None,
        output_names=entry.output_flags,
    )


@pytest.fixture(scope="module")
def zoo_exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ExportedVersion | TritonForgeError]:
    repository = tmp_path_factory.mktemp("zoo") / "model_repository"
    done: dict[str, ExportedVersion | TritonForgeError] = {}
    for entry in ZOO:  # one failing model must not hide the others' results
        try:
            done[entry.name] = export_zoo_model(entry, repository)
        except TritonForgeError as exc:
            done[entry.name] = exc
    return done


def _exported(zoo_exports: dict[str, ExportedVersion | TritonForgeError], name: str) -> ExportedVersion:
    result = zoo_exports[name]
    if isinstance(result, TritonForgeError):
        pytest.fail(f"export of {name} failed: {type(result).__name__}: {result}")
    return result


@pytest.fixture(scope="module")
def zoo_server(zoo_exports, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedTriton]:
    exported = [r for r in zoo_exports.values() if isinstance(r, ExportedVersion)]
    if not exported:
        pytest.fail("no zoo model exported; nothing to serve")
    log_path = tmp_path_factory.mktemp("zoo_server") / "tritonserver.log"
    server = EmbeddedTriton(repository=exported[0].model_dir.parent, log_path=log_path, startup_timeout_s=120)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("name", NAMES)
def test_parity_gate_passes_at_every_axis_size_and_batch_when_a_zoo_model_is_exported(zoo_exports, name) -> None:
    exported = _exported(zoo_exports, name)
    entry = ZOO_BY_NAME[name]
    report = exported.parity

    assert report.passed
    assert {r.output for r in report.results} == set(entry.outputs)
    batches = {r.batch_size for r in report.results}
    assert 1 in batches and max(batches) > 1
    dynamic = [axis for spec in entry.specs() for axis in spec.dim_axes() if axis is not None]
    planned = {axis: set(sizes) for axis, sizes, _typical in report.axis_sizes}
    assert set(planned) == set(dynamic)
    for output in entry.outputs:  # every planned size was compared, for every output
        rows = [r for r in report.results if r.output == output]
        assert {axis: {dict(r.axes)[axis] for r in rows} for axis in planned} == planned, output
    for axis, sizes in planned.items():
        if axis in entry.axes:
            assert sizes == set(entry.axes[axis]), f"{name}: --axis {axis}={entry.axes[axis]} not what the gate tried"
        else:  # the gate's own choice: the smallest, the traced size and a large one
            assert min(sizes) == 1 and max(sizes) >= 32 and len(sizes) >= 3


@pytest.mark.parametrize("name", NAMES)
def test_config_and_graph_use_the_models_names_and_shared_axes_when_a_zoo_model_is_exported(zoo_exports, name) -> None:
    exported = _exported(zoo_exports, name)
    entry = ZOO_BY_NAME[name]
    specs = entry.specs()
    config = read_config(exported.model_dir / "config.pbtxt")
    graph = onnx.load(str(exported.onnx_path), load_external_data=False).graph

    assert [i.name for i in config.input] == [s.name for s in specs]
    assert [o.name for o in config.output] == list(entry.outputs)
    assert [i.name for i in graph.input] == [s.name for s in specs]
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    for spec in specs:  # the batch axis first, then each named axis under its own name (shared ones coincide)
        assert dims[spec.name][0] == "batch"
        for got, axis, size in zip(dims[spec.name][1:], spec.dim_axes(), spec.shape, strict=True):
            assert got == (axis if axis is not None else size)


@pytest.mark.parametrize("name", NAMES)
def test_served_answers_equal_torch_at_every_size_and_batch_when_a_zoo_model_is_sent_inputs_by_name(
    zoo_exports, zoo_server: EmbeddedTriton, name
) -> None:
    _exported(zoo_exports, name)
    entry = ZOO_BY_NAME[name]
    model = entry.build()
    rng = np.random.default_rng(7)
    worst: dict[str, float] = {}
    with TritonClient(zoo_server.grpc_url, timeout_s=30.0) as client:
        client.wait_until_ready(name, timeout_s=60.0)
        signature = client.model_signature(name)
        assert [i.name for i in signature.inputs] == [s.name for s in entry.specs()]
        assert [o.name for o in signature.outputs] == list(entry.outputs)
        for sizes in entry.sizes:
            for batch in BATCHES:
                feeds = entry.feeds(rng, batch, sizes)
                served = client.infer(name, feeds)
                want = torch_outputs(model, feeds, entry.outputs)
                assert sorted(served) == sorted(want)
                for output, expected in want.items():
                    got = served[output]
                    where = f"{name} output '{output}' at {sizes or 'static shape'}, batch {batch}"
                    assert got.dtype == expected.dtype and got.shape == expected.shape, where
                    if expected.dtype.kind in "iu":
                        np.testing.assert_array_equal(got, expected, err_msg=where)
                    else:
                        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-3, err_msg=where)
                    err = float(np.abs(got.astype(np.float64) - expected.astype(np.float64)).max())
                    worst[output] = max(worst.get(output, 0.0), err)
    assert set(worst) == set(entry.outputs)


def test_export_refuses_and_names_the_axis_when_a_model_bakes_the_sequence_length(tmp_path: Path) -> None:
    repository = tmp_path / "model_repository"

    with pytest.raises(ParityError, match=r"seq") as caught:
        export_to_repository(
            model=build_baked_length(), inputs=[parse_tensor_spec("tokens:seq:int64:0..49")], repository=repository,
            model_name="baked", source="zoo_models:build_baked_length",
        )  # fmt: skip

    assert "\n" not in str(caught.value)
    assert not (repository / "baked").exists()
