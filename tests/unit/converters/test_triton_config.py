from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from tritonclient.grpc import model_config_pb2

from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.triton_config import (
    DEFAULT_QUEUE_TIMEOUT_US,
    InstanceKind,
    ModelConfigSpec,
    VersionPolicy,
    VersionPolicyKind,
    build_model_config,
    config_to_text,
    read_config,
    write_config,
)
from tritonforge.errors import ConfigError


@pytest.fixture
def digits_spec() -> ModelConfigSpec:
    return ModelConfigSpec(
        name="digits",
        max_batch_size=64,
        max_queue_delay_us=100,
        inputs=(TensorSpec(name="image", shape=(1, 8, 8), dtype="float32"),),
        outputs=(TensorSpec(name="logits", shape=(10,), dtype="float32"),),
    )


def test_build_model_config_matches_golden_file_when_given_the_digits_spec(
    digits_spec: ModelConfigSpec, golden_digits_config: str
) -> None:
    assert config_to_text(build_model_config(digits_spec)) == golden_digits_config


def test_write_config_round_trips_through_read_config_when_every_option_is_set(tmp_path: Path) -> None:
    spec = ModelConfigSpec(
        name="ranker",
        max_batch_size=32,
        inputs=[
            TensorSpec(name="ids", shape=(-1,), dtype="int64"),
            TensorSpec(name="score_bias", shape=(), dtype="float16"),
        ],
        outputs=[TensorSpec(name="scores", shape=(-1, 4), dtype="float32")],
        max_queue_delay_us=0,
        preferred_batch_sizes=[8, 16],
        instance_count=2,
        instance_kind=InstanceKind.GPU,
        version_policy=VersionPolicy(kind=VersionPolicyKind.SPECIFIC, versions=(1, 3)),
    )
    config = build_model_config(spec)
    path = write_config(config, tmp_path / "config.pbtxt")

    parsed = read_config(path)

    assert parsed == config
    assert parsed.HasField("dynamic_batching")  # delay 0 still enables dynamic batching
    assert list(parsed.dynamic_batching.preferred_batch_size) == [8, 16]
    assert parsed.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert list(parsed.version_policy.specific.versions) == [1, 3]
    assert list(parsed.input[1].dims) == [1] and list(parsed.input[1].reshape.shape) == []
    assert [p.name for p in tmp_path.iterdir()] == ["config.pbtxt"]  # no temporary file left behind


def test_build_model_config_omits_dynamic_batching_when_delay_is_none(digits_spec: ModelConfigSpec) -> None:
    config = build_model_config(dataclasses.replace(digits_spec, max_queue_delay_us=None))
    assert not config.HasField("dynamic_batching")


def test_build_model_config_writes_backend_and_all_policy_when_asked(digits_spec: ModelConfigSpec) -> None:
    spec = dataclasses.replace(
        digits_spec, platform=None, backend="python", version_policy=VersionPolicy(kind=VersionPolicyKind.ALL)
    )
    config = build_model_config(spec)
    assert config.backend == "python" and not config.platform
    assert config.version_policy.WhichOneof("policy_choice") == "all"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "a/b"}, "plain folder name"),
        ({"name": ".hidden"}, "plain folder name"),
        ({"max_batch_size": -1}, "must be >= 0"),
        ({"max_batch_size": 0}, "dynamic batching needs max_batch_size >= 1"),
        ({"max_queue_delay_us": -5}, "max_queue_delay_us -5"),
        ({"preferred_batch_sizes": (128,)}, "between 1 and max_batch_size 64"),
        ({"preferred_batch_sizes": (8,), "max_queue_delay_us": None}, "need dynamic batching"),
        ({"instance_count": 0}, "instance_count 0"),
        ({"max_queue_size": 0}, "max_queue_size 0 must be an int >= 1"),
        ({"queue_timeout_us": -1}, "queue_timeout_us -1 must be an int >= 1"),
        ({"queue_timeout_us": 0}, "Triton reads 0 as unbounded"),
        ({"queue_timeout_us": 1.5}, "must be an int"),
        ({"max_queue_size": 16, "max_queue_delay_us": None}, "max_queue_size need dynamic batching"),
        ({"queue_timeout_us": 5, "max_queue_delay_us": None}, "queue_timeout_us need dynamic batching"),
        ({"backend": "python"}, "exactly one of platform or backend"),
        ({"outputs": ()}, "at least one of its outputs"),
        (
            {"inputs": (TensorSpec(name="x", shape=(1,), dtype="int64"),) * 2},
            r"repeat the name\(s\) \['x'\]",
        ),
    ],
)
def test_model_config_spec_raises_config_error_when_invalid(
    digits_spec: ModelConfigSpec, changes: dict, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(digits_spec, **changes)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_versions": 0}, "num_versions >= 1"),
        ({"kind": VersionPolicyKind.SPECIFIC}, "versions >= 1"),
        ({"kind": VersionPolicyKind.ALL, "versions": (2,)}, "need kind=specific"),
    ],
)
def test_version_policy_raises_config_error_when_inconsistent(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        VersionPolicy(**kwargs)


def test_read_config_names_file_and_line_when_the_text_does_not_parse(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text('name: "digits"\nmax_batch_size: lots\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"{path}:2:\d+: .*Couldn't parse integer"):
        read_config(path)


def test_read_config_raises_config_error_when_the_field_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text('name: "digits"\nmax_batch: 4\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r":2:\d+: .*max_batch"):
        read_config(path)


def test_read_config_raises_config_error_when_the_file_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        read_config(tmp_path / "nope" / "config.pbtxt")


def test_build_model_config_bounds_queue_by_default_when_dynamic_batching(digits_spec: ModelConfigSpec) -> None:
    policy = build_model_config(digits_spec).dynamic_batching.default_queue_policy
    assert policy.timeout_action == model_config_pb2.ModelQueuePolicy.REJECT
    assert policy.default_timeout_microseconds == DEFAULT_QUEUE_TIMEOUT_US == 1_000_000
    assert policy.allow_timeout_override is True  # the client's own deadline wins
    assert policy.max_queue_size == 4 * 64


def test_build_model_config_uses_spec_queue_policy_when_given(digits_spec: ModelConfigSpec, tmp_path: Path) -> None:
    spec = dataclasses.replace(digits_spec, queue_timeout_us=250_000, max_queue_size=32)
    config = build_model_config(spec)
    policy = config.dynamic_batching.default_queue_policy
    assert (policy.default_timeout_microseconds, policy.max_queue_size) == (250_000, 32)
    assert read_config(write_config(config, tmp_path / "config.pbtxt")) == config
    assert spec.queue_policy == (250_000, 32)


def test_build_model_config_writes_no_queue_policy_when_no_dynamic_batching(digits_spec: ModelConfigSpec) -> None:
    spec = dataclasses.replace(digits_spec, max_queue_delay_us=None)
    assert spec.queue_policy is None
    assert not build_model_config(spec).HasField("dynamic_batching")
