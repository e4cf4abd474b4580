from pathlib import Path

import numpy as np
import pytest

from tritonforge.converters.eval_set import EvalSet
from tritonforge.errors import ConfigError


def test_from_arrays_splits_into_batches_and_keeps_labels():
    images = np.arange(10 * 4, dtype=np.float32).reshape(10, 4)
    data = EvalSet.from_arrays({"image": images}, labels=np.arange(10), batch_size=4)
    assert [len(b["image"]) for b in data.batches] == [4, 4, 2]
    assert data.num_items == 10
    assert data.input_names == ["image"]


def test_hash_changes_with_data_and_is_stable():
    images = np.ones((6, 3), dtype=np.float32)
    first = EvalSet.from_arrays({"image": images}, batch_size=3).sha256()
    assert first == EvalSet.from_arrays({"image": images.copy()}, batch_size=3).sha256()
    changed = images.copy()
    changed[5, 2] = 2.0
    assert EvalSet.from_arrays({"image": changed}, batch_size=3).sha256() != first


def test_wrong_label_count_is_one_clear_error():
    with pytest.raises(ConfigError, match="3 labels for 6 evaluation items"):
        EvalSet.from_arrays({"image": np.ones((6, 3))}, labels=np.arange(3))


def test_batches_must_share_input_names():
    with pytest.raises(ConfigError, match="batch 1 has inputs"):
        EvalSet(batches=({"a": np.ones((2, 1))}, {"b": np.ones((2, 1))}))


def test_npz_round_trip(tmp_path: Path):
    path = tmp_path / "eval.npz"
    np.savez(path, image=np.ones((5, 2), dtype=np.float32), labels=np.arange(5))
    data = EvalSet.from_npz(path, batch_size=2)
    assert data.num_items == 5 and data.labels is not None and list(data.labels) == [0, 1, 2, 3, 4]


def test_missing_npz_names_the_fix(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        EvalSet.from_npz(tmp_path / "nope.npz")
