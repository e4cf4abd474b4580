from __future__ import annotations

from pathlib import Path

import pytest
from converter_models import snapshot, tiny_cnn, token_pool

from tritonforge.converters.export import ExportedVersion, default_model_name, export_to_repository
from tritonforge.converters.specs import TensorSpec
from tritonforge.errors import ConfigError

IDS = TensorSpec(name="input_ids", shape=(-1,), dtype="int64", axis_names=("seq",), value_range=(0, 99))
MASK = TensorSpec(name="attention_mask", shape=(-1,), dtype="int64", axis_names=("seq",), value_range=(0, 1))


def test_a_version_with_another_signature_is_refused_and_the_repository_is_untouched(
    exported: ExportedVersion, repository: Path
) -> None:
    before = snapshot(repository)
    with pytest.raises(ConfigError) as caught:
        export_to_repository(
            model=token_pool(), inputs=[IDS, MASK], repository=repository, model_name="digits", source="t"
        )

    message = str(caught.value)
    assert "model 'digits'" in message and "has another signature" in message
    assert (
        "inputs ['image'] -> ['input_ids', 'attention_mask']" in message
        and "outputs ['logits'] -> ['output_0']" in message
    )
    assert "clients of 'digits' would break" in message and "--new-signature" in message and "\n" not in message
    assert snapshot(repository) == before


def test_a_changed_max_batch_size_is_a_signature_change(exported: ExportedVersion, repository: Path) -> None:
    image = TensorSpec(name="image", shape=(1, 8, 8), dtype="float32")
    with pytest.raises(ConfigError, match=r"max_batch_size 64 -> 8"):
        export_to_repository(
            model=tiny_cnn(), inputs=[image], output_names=["logits"], repository=repository, model_name="digits",
            source="t", max_batch_size=8,
        )  # fmt: skip


def test_new_signature_writes_the_version_and_records_old_and_new(exported: ExportedVersion, repository: Path) -> None:
    again = export_to_repository(
        model=token_pool(), inputs=[IDS, MASK], repository=repository, model_name="digits", source="t",
        new_signature=True,
    )  # fmt: skip

    change = again.manifest["signature_change"]
    assert again.version == 2 and again.manifest["export"]["new_signature"] is True
    assert [t["name"] for t in change["old"]["inputs"]] == ["image"]
    assert [t["name"] for t in change["new"]["inputs"]] == ["input_ids", "attention_mask"]
    assert "input_ids" in (repository / "digits" / "config.pbtxt").read_text()


def test_the_same_signature_exports_a_new_version_without_a_change_record(
    exported: ExportedVersion, repository: Path
) -> None:
    image = TensorSpec(name="image", shape=(1, 8, 8), dtype="float32")
    again = export_to_repository(
        model=tiny_cnn(), inputs=[image], output_names=["logits"], repository=repository, model_name="digits",
        source="t",
    )  # fmt: skip
    assert again.version == 2 and "signature_change" not in again.manifest


def test_default_model_name_refuses_a_folder_exported_from_another_factory(tmp_path: Path) -> None:
    image = TensorSpec(name="image", shape=(1, 8, 8), dtype="float32")
    repository = tmp_path / "repo"
    assert default_model_name(repository, "pkg.mod:build_a") == "mod"
    export_to_repository(
        model=tiny_cnn(), inputs=[image], repository=repository, model_name="mod", source="pkg.mod:build_a (weights w)"
    )

    assert default_model_name(repository, "pkg.mod:build_a") == "mod"
    with pytest.raises(ConfigError, match=r"exported from pkg.mod:build_a, not pkg.mod:build_b: pass --name"):
        default_model_name(repository, "pkg.mod:build_b")
