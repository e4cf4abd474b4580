"""Config mutation of the tuner: served JSON -> candidate, and the canonical config.pbtxt rewrite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2

from tritonforge.converters.triton_config import config_to_text, read_config
from tritonforge.loadtests.closed_loop import LoopFigures
from tritonforge.loadtests.tuner import apply_candidate, batch_limit, canonical_config, trials_csv
from tritonforge.loadtests.tuner_search import Candidate, SearchSpace, search

CANONICAL = """
name: "digits"
platform: "onnxruntime_onnx"
version_policy { latest { num_versions: 1 } }
max_batch_size: 64
input { name: "image" data_type: TYPE_FP32 dims: [1, 8, 8] }
output { name: "logits" data_type: TYPE_FP32 dims: [10] }
instance_group { count: 1 kind: KIND_CPU }
dynamic_batching { max_queue_delay_microseconds: 100 priority_levels: 2 default_priority_level: 1 }
parameters { key: "note" value { string_value: "keep me" } }
"""

SERVED = {
    "name": "digits",
    "backend": "python",
    "max_batch_size": 64,
    "input": [{"name": "image", "data_type": "TYPE_FP32", "dims": ["1", "8", "8"]}],
    "output": [{"name": "logits", "data_type": "TYPE_FP32", "dims": ["10"]}],
    "instance_group": [{"name": "digits_0", "kind": "KIND_CPU", "count": 1, "gpus": []}],
    "dynamic_batching": {"max_queue_delay_microseconds": "100", "preserve_ordering": False},
    "parameters": {"onnx_file": {"string_value": "model.onnx"}, "intra_op_num_threads": {"string_value": "0"}},
}

TUNED = Candidate(max_batch_size=32, max_queue_delay_us=2000, preferred=True, instances=2)
NO_BATCHING = Candidate(max_batch_size=16, max_queue_delay_us=None, preferred=False, instances=1)


def _canonical(tmp_path: Path) -> model_config_pb2.ModelConfig:
    path = tmp_path / "config.pbtxt"
    path.write_text(CANONICAL, encoding="utf-8")
    return read_config(path)


def test_served_config_gets_only_the_batching_fields() -> None:
    changed = apply_candidate(SERVED, TUNED)
    assert changed["max_batch_size"] == 32
    assert changed["dynamic_batching"] == {
        "max_queue_delay_microseconds": "2000", "preserve_ordering": False, "preferred_batch_size": [32],
        # no policy was served: the generator's default one, bounded at 4 full batches of the new size
        "default_queue_policy": {
            "default_timeout_microseconds": "1000000", "allow_timeout_override": True, "max_queue_size": 128
        },
    }  # fmt: skip
    assert changed["instance_group"] == [{"name": "digits_0", "kind": "KIND_CPU", "count": 2, "gpus": []}]
    untouched = {k: v for k, v in changed.items() if k not in {"max_batch_size", "dynamic_batching", "instance_group"}}
    assert untouched == {k: v for k, v in SERVED.items() if k in untouched} and untouched.keys() == SERVED.keys() - {
        "max_batch_size", "dynamic_batching", "instance_group"
    }  # fmt: skip
    assert SERVED["instance_group"][0]["count"] == 1  # the served config itself is not modified
    # what load_model(config=json) gets must be a valid ModelConfig
    json_format.Parse(json.dumps(changed), model_config_pb2.ModelConfig())


def test_served_config_without_batching_or_preferred_sizes() -> None:
    changed = apply_candidate(apply_candidate(SERVED, TUNED), NO_BATCHING)
    assert "dynamic_batching" not in changed and changed["max_batch_size"] == 16
    zero = apply_candidate(SERVED, Candidate(max_batch_size=8, max_queue_delay_us=0, preferred=False, instances=1))
    assert zero["dynamic_batching"]["max_queue_delay_microseconds"] == "0"
    assert "preferred_batch_size" not in zero["dynamic_batching"]


def test_canonical_rewrite_keeps_everything_else(tmp_path: Path) -> None:
    original = _canonical(tmp_path)
    tuned = canonical_config(original, TUNED)
    assert tuned.max_batch_size == 32
    assert tuned.dynamic_batching.max_queue_delay_microseconds == 2000
    assert list(tuned.dynamic_batching.preferred_batch_size) == [32]
    assert tuned.dynamic_batching.priority_levels == 2 and tuned.dynamic_batching.default_priority_level == 1
    assert [g.count for g in tuned.instance_group] == [2]
    assert tuned.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    # put the three fields back: the rest is byte-for-byte the original
    restored = model_config_pb2.ModelConfig()
    restored.CopyFrom(tuned)
    restored.max_batch_size = original.max_batch_size
    restored.dynamic_batching.CopyFrom(original.dynamic_batching)
    restored.instance_group[0].count = original.instance_group[0].count
    assert config_to_text(restored) == config_to_text(original)
    assert original.max_batch_size == 64  # the input proto is not modified


def test_canonical_rewrite_at_delay_zero_and_without_batching(tmp_path: Path) -> None:
    original = _canonical(tmp_path)
    zero = canonical_config(original, Candidate(max_batch_size=8, max_queue_delay_us=0, preferred=False, instances=1))
    assert zero.HasField("dynamic_batching") and "dynamic_batching" in config_to_text(zero)
    assert not list(zero.dynamic_batching.preferred_batch_size)
    off = canonical_config(original, NO_BATCHING)
    assert not off.HasField("dynamic_batching") and off.max_batch_size == 16


def test_batch_limit_reads_the_onnx_batch_axis(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    def write(batch: int | str) -> Path:
        model_dir = tmp_path / f"m_{batch}"
        (model_dir / "1").mkdir(parents=True)
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])
        graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y])
        onnx.save(helper.make_model(graph), str(model_dir / "1" / "model.onnx"))
        return model_dir

    config = model_config_pb2.ModelConfig(name="m", platform="onnxruntime_onnx", max_batch_size=8)
    assert batch_limit(write("batch"), config) is None
    assert batch_limit(write(4), config) == 4


def test_trials_csv_has_one_row_per_config() -> None:
    def measure(c: Candidate) -> LoopFigures:
        return LoopFigures(requests_per_s=100.0 * c.max_batch_size, items_per_s=100.0 * c.max_batch_size,
                           p50_ms=1.0, p99_ms=float(c.max_batch_size), requests=10, errors=0)  # fmt: skip

    space = SearchSpace(max_batch_sizes=(8, 16), delays_us=(None, 0), preferred=(False,), instances=(1,))
    result = search(space, measure, p99_ms=10.0, grid=True, confirm=0)
    lines = trials_csv(result).splitlines()
    assert lines[0].startswith("trial,max_batch_size,delay_us,preferred,instances,runs,req_per_s,items_per_s")
    assert len(lines) == 1 + space.size
    assert sum(line.endswith(",True,") for line in lines) == 2  # b8 passes p99 <= 10, b16 does not
    assert result.best is not None and result.best.candidate.max_batch_size == 8


def _write(repository: Path, text: str, name: str) -> None:
    from google.protobuf import text_format

    from tritonforge.converters.triton_config import write_config

    (repository / name).mkdir(parents=True)
    write_config(text_format.Parse(text, model_config_pb2.ModelConfig()), repository / name / "config.pbtxt")


def test_ensembles_calling_the_model_set_the_smallest_max_batch_size(tmp_path: Path) -> None:
    from tritonforge.errors import ConfigError
    from tritonforge.loadtests.tuner import ensemble_floor

    _write(tmp_path, 'name: "enc" platform: "onnxruntime_onnx" max_batch_size: 64', "enc")
    for name, batch in (("text", 32), ("text_big", 48)):
        _write(
            tmp_path,
            f'name: "{name}" platform: "ensemble" max_batch_size: {batch} '
            'ensemble_scheduling { step { model_name: "enc" model_version: -1 } }',
            name,
        )
    _write(
        tmp_path,
        'name: "other" platform: "ensemble" max_batch_size: 128 ensemble_scheduling { step { model_name: "x" } }',
        "other",
    )
    assert ensemble_floor(tmp_path, "enc") == 48
    assert ensemble_floor(tmp_path, "other") is None
    space = SearchSpace(max_batch_sizes=(8, 32, 64)).floored(48)
    assert space.max_batch_sizes == (64,)
    import pytest

    with pytest.raises(ConfigError, match="ensemble that calls the model"):
        SearchSpace(max_batch_sizes=(8, 16)).floored(48)


def _report(best: Candidate, out_dir: Path) -> Any:
    from tritonforge.loadtests.tuner import TuneReport

    def measure(c: Candidate) -> LoopFigures:  # the candidate asked for wins; p99 always meets the SLO
        items = 2000.0 if c == best else 1000.0
        return LoopFigures(requests_per_s=items, items_per_s=items, p50_ms=1.0, p99_ms=2.0, requests=10, errors=0)

    space = SearchSpace(max_batch_sizes=(16, 32), delays_us=(None, 2000), preferred=(False, True), instances=(1, 2))
    result = search(space, measure, p99_ms=10.0, grid=True, confirm=0)
    assert result.best is not None and result.best.candidate == best
    return TuneReport(
        model="digits", url="fake", concurrency=1, seconds=1.0, warmup_s=0.0, request_batch_size=1, search=result,
        seconds_per_measurement=0.0, wall_s=0.0,
    )  # fmt: skip


def test_a_second_tuning_run_keeps_the_first_original_and_its_own_previous_config(tmp_path: Path) -> None:
    from tritonforge.loadtests.tuner import ORIGINAL_CONFIG_NAME, _claim_out_dir, _write_outputs

    canonical_path = tmp_path / "repo" / "digits" / "config.pbtxt"
    canonical_path.parent.mkdir(parents=True)
    canonical_path.write_text(CANONICAL, encoding="utf-8")
    first_text = canonical_path.read_text(encoding="utf-8")

    for out, winner in ((tmp_path / "run1", TUNED), (tmp_path / "run2", NO_BATCHING)):
        _claim_out_dir(out, overwrite=False)
        before = canonical_path.read_text(encoding="utf-8")
        report = _write_outputs(_report(winner, out), out, canonical_path, read_config(canonical_path), write=True)
        assert (out / "config.pbtxt.previous").read_text(encoding="utf-8") == before  # this run's previous
        assert report.files["original_config"] == str(canonical_path.with_name(ORIGINAL_CONFIG_NAME))

    # The original is the config before the FIRST run, not the first run's winner.
    assert canonical_path.with_name(ORIGINAL_CONFIG_NAME).read_text(encoding="utf-8") == first_text
    assert read_config(tmp_path / "run2" / "config.pbtxt.previous").max_batch_size == TUNED.max_batch_size
    assert read_config(canonical_path).max_batch_size == NO_BATCHING.max_batch_size


def test_a_tuning_run_into_a_folder_holding_an_earlier_run_is_refused_unless_overwrite(tmp_path: Path) -> None:
    from tritonforge.errors import ConfigError
    from tritonforge.loadtests.tuner import _claim_out_dir

    out = tmp_path / "tune"
    out.mkdir()
    (out / "trials.csv").write_text("earlier", encoding="utf-8")
    (out / "notes.txt").write_text("mine", encoding="utf-8")

    with pytest.raises(ConfigError, match=r"tune already holds a tuning run \(trials.csv\); pass --overwrite"):
        _claim_out_dir(out, overwrite=False)
    assert (out / "trials.csv").read_text(encoding="utf-8") == "earlier"

    _claim_out_dir(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    _claim_out_dir(tmp_path / "fresh", overwrite=False)
    assert (tmp_path / "fresh").is_dir()


def _served_with_queue(max_queue_size: int) -> dict[str, Any]:
    policy = {"default_timeout_microseconds": "5000", "allow_timeout_override": True, "max_queue_size": max_queue_size}
    return {**SERVED, "dynamic_batching": {**SERVED["dynamic_batching"], "default_queue_policy": policy}}


def test_the_default_queue_bound_follows_max_batch_size_and_a_chosen_one_is_kept() -> None:
    default_bound = apply_candidate(_served_with_queue(4 * 64), TUNED)["dynamic_batching"]["default_queue_policy"]
    chosen_bound = apply_candidate(_served_with_queue(1000), TUNED)["dynamic_batching"]["default_queue_policy"]

    assert default_bound == {
        "default_timeout_microseconds": "5000",
        "allow_timeout_override": True,
        "max_queue_size": 128,
    }
    assert chosen_bound["max_queue_size"] == 1000


def test_canonical_rewrite_adds_or_rescales_the_queue_policy(tmp_path: Path) -> None:
    original = _canonical(tmp_path)  # dynamic batching without a queue policy
    added = canonical_config(original, TUNED).dynamic_batching.default_queue_policy
    assert (added.max_queue_size, added.default_timeout_microseconds, added.allow_timeout_override) == (
        128, 1_000_000, True
    )  # fmt: skip

    original.dynamic_batching.default_queue_policy.max_queue_size = 4 * 64
    original.dynamic_batching.default_queue_policy.default_timeout_microseconds = 5000
    rescaled = canonical_config(original, TUNED).dynamic_batching.default_queue_policy
    assert (rescaled.max_queue_size, rescaled.default_timeout_microseconds) == (128, 5000)
