from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from converter_models import BakedBatchCNN, snapshot, tiny_cnn

from tritonforge.converters.export import ExportedVersion, export_to_repository, load_factory
from tritonforge.converters.repository import sha256_file
from tritonforge.converters.specs import TensorSpec
from tritonforge.errors import ConfigError, ParityError


def test_export_to_repository_writes_golden_config_and_version_when_the_gate_passes(
    exported: ExportedVersion, repository: Path, golden_digits_config: str
) -> None:
    assert exported.model_dir == repository / "digits"
    assert exported.version == 1
    assert exported.onnx_path == repository / "digits" / "1" / "model.onnx"
    assert (repository / "digits" / "config.pbtxt").read_text() == golden_digits_config
    assert exported.parity.passed and {r.batch_size for r in exported.parity.results} == {1, 8}
    manifest = json.loads((repository / "digits" / "1" / "manifest.json").read_text())
    assert manifest == exported.manifest
    assert manifest["sha256"] == sha256_file(exported.onnx_path)
    assert manifest["source"] == "converter_models:tiny_cnn"
    assert manifest["export"]["opset"] == 17 and manifest["export"]["max_batch_size"] == 64
    assert manifest["parity"]["passed"] is True and len(manifest["parity"]["results"]) == 2


def test_export_to_repository_adds_the_next_version_when_exported_again(
    exported: ExportedVersion, image_spec: TensorSpec, repository: Path
) -> None:
    again = export_to_repository(
        model=tiny_cnn(),
        inputs=[image_spec],
        output_names=["logits"],
        repository=repository,
        model_name="digits",
        source="inline",
    )
    assert again.version == 2
    assert (repository / "digits" / "1" / "model.onnx").is_file()


def test_export_to_repository_writes_nothing_when_the_batch_is_baked_in(
    exported: ExportedVersion, image_spec: TensorSpec, repository: Path
) -> None:
    before = snapshot(repository)
    with pytest.raises(ParityError, match="baked into the graph"):
        export_to_repository(
            model=BakedBatchCNN(),
            inputs=[image_spec],
            repository=repository,
            model_name="digits",
            source="converter_models:baked_batch_cnn",
        )
    assert snapshot(repository) == before


def test_export_to_repository_creates_no_repository_when_the_first_gate_fails(
    image_spec: TensorSpec, repository: Path
) -> None:
    with pytest.raises(ParityError):
        export_to_repository(
            model=BakedBatchCNN(), inputs=[image_spec], repository=repository, model_name="m", source="test"
        )
    assert not repository.exists()


def test_export_to_repository_refuses_before_exporting_when_the_version_exists(
    exported: ExportedVersion, image_spec: TensorSpec, repository: Path
) -> None:
    class MustNotRun(torch.nn.Module):
        def forward(self, image: torch.Tensor) -> torch.Tensor:
            raise AssertionError("exported although the version exists")

    with pytest.raises(ConfigError, match="already exists"):
        export_to_repository(
            model=MustNotRun(), inputs=[image_spec], repository=repository, model_name="digits", source="x", version=1
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size 0"),
        ({"model_name": "a b"}, "plain folder name"),
        ({"instance_count": 0}, "instance_count 0"),
        ({"max_queue_delay_us": -1}, "max_queue_delay_us -1"),
    ],
)
def test_export_to_repository_raises_config_error_when_settings_are_invalid(
    image_spec: TensorSpec, repository: Path, kwargs: dict, message: str
) -> None:
    args = {"model_name": "m", **kwargs}
    with pytest.raises(ConfigError, match=message):
        export_to_repository(model=torch.nn.Identity(), inputs=[image_spec], repository=repository, source="x", **args)


def test_load_factory_loads_weights_when_given_a_state_dict(tmp_path: Path) -> None:
    trained = load_factory("converter_models:tiny_cnn")
    with torch.no_grad():
        trained.head.bias.fill_(3.0)
    weights = tmp_path / "w.pt"
    torch.save(trained.state_dict(), weights)

    model = load_factory("converter_models:tiny_cnn", weights)

    assert not model.training
    assert torch.equal(model.head.bias, torch.full((10,), 3.0))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("converter_models", "package.module:factory"),
        ("converter_models:tiny_cnn()", "package.module:factory"),
        ("no_such_module_xyz:f", "cannot import 'no_such_module_xyz'"),
        ("converter_models:missing", "has no function 'missing'"),
        ("converter_models:not_a_module", "returned str, not a torch.nn.Module"),
    ],
)
def test_load_factory_raises_config_error_when_the_spec_is_bad(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_factory(spec)


def test_load_factory_raises_config_error_when_weights_do_not_fit(tmp_path: Path) -> None:
    weights = tmp_path / "other.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), weights)
    with pytest.raises(ConfigError, match="does not fit the model"):
        load_factory("converter_models:tiny_cnn", weights)
    with pytest.raises(ConfigError, match="does not exist"):
        load_factory("converter_models:tiny_cnn", tmp_path / "missing.pt")


def test_load_factory_raises_config_error_when_weights_are_a_full_pickle(tmp_path: Path) -> None:
    weights = tmp_path / "pickled.pt"
    torch.save(load_factory("converter_models:tiny_cnn"), weights)  # a whole module: refused by weights_only=True
    with pytest.raises(ConfigError, match="not a weights-only state dict"):
        load_factory("converter_models:tiny_cnn", weights)
