"""The MiniLM example without the model: evaluation text, tokenization, eval sets, configs, repository entries."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tritonforge.converters.repository import add_version
from tritonforge.converters.specs import TensorSpec
from tritonforge.converters.triton_config import ModelConfigSpec, build_model_config, read_config
from tritonforge.errors import ConfigError
from tritonforge.examples import minilm
from tritonforge.examples.text_corpus import evaluation_sentences, first_sentence, keep_sentence, stdlib_sentences

CLS, SEP = 101, 102


def test_evaluation_sentences_are_a_fixed_seeded_sample_of_distinct_real_sentences() -> None:
    sentences = evaluation_sentences(n=500, seed=0)

    assert len(sentences) == 500 == len(set(sentences))
    assert sentences == evaluation_sentences(n=500, seed=0)
    assert sentences != evaluation_sentences(n=500, seed=1)
    assert all(keep_sentence(s) and s.endswith(".") for s in sentences)
    assert len(stdlib_sentences()) >= 1000  # "thousands of real English sentences"


@pytest.mark.parametrize("n", [0, 10**6])
def test_evaluation_sentences_raise_config_error_when_n_is_out_of_range(n: int) -> None:
    with pytest.raises(ConfigError, match=f"n={n} evaluation sentences"):
        evaluation_sentences(n=n)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("Return the square root of x.\n\nMore text.", "Return the square root of x."),
        ("sqrt(x) -> float\n\nReturn the square\nroot of x. Then more.", "Return the square root of x."),
        ("Split a path, e.g. into parts. Then more.", "Split a path, e.g. into parts."),
        ("No full stop here", None),
    ],
)
def test_first_sentence_takes_the_first_prose_sentence(doc: str, expected: str | None) -> None:
    assert first_sentence(doc) == expected


@pytest.mark.parametrize(
    ("sentence", "kept"),
    [
        ("Return the absolute value of the argument.", True),
        ("Short one.", False),
        ("return the absolute value of the argument.", False),
        ("Return {x: y} for the mapping given here.", False),
        ("Return the café value of the argument here.", False),
    ],
)
def test_keep_sentence_filters_on_length_case_and_plain_letters(sentence: str, kept: bool) -> None:
    assert keep_sentence(sentence) is kept


def test_tokenize_pads_to_the_longest_text_and_truncates_to_the_model_maximum() -> None:
    long_text = "word " * 1000
    batch = minilm.tokenize(["Hello world.", "", long_text])

    assert minilm.max_seq_length() == 256
    assert batch["input_ids"].dtype == np.int64 and batch["input_ids"].shape == (3, 256)
    assert batch["input_ids"][1, :2].tolist() == [CLS, SEP] and batch["attention_mask"][1].sum() == 2
    assert batch["input_ids"][2, -1] == SEP and batch["attention_mask"][2].all()
    assert minilm.tokenize(["Hello world.", "A slightly longer sentence."])["input_ids"].shape[1] < 16


def test_tokenize_raises_config_error_when_given_no_texts() -> None:
    with pytest.raises(ConfigError, match="non-empty list of strings"):
        minilm.tokenize([])


def test_sentence_eval_set_sorts_by_length_and_pads_each_batch_to_its_own_longest() -> None:
    sentences = evaluation_sentences(n=100, seed=3)

    eval_set = minilm.sentence_eval_set(sentences, batch_size=16)

    assert eval_set.num_items == 100 and len(eval_set.batches) == 7
    widths = [batch["input_ids"].shape[1] for batch in eval_set.batches]
    assert widths == sorted(widths) and widths[0] < widths[-1] <= 256
    for batch in eval_set.batches:
        lengths = batch["attention_mask"].sum(axis=1)
        assert lengths.max() == batch["input_ids"].shape[1]  # padded to its own longest, not to a fixed size
        assert np.all(np.diff(lengths) >= 0)
    rows = sorted(
        tuple(ids[mask == 1])
        for b in eval_set.batches
        for ids, mask in zip(b["input_ids"], b["attention_mask"], strict=True)
    )
    alone = sorted(tuple(minilm.tokenize([s])["input_ids"][0]) for s in sentences)
    assert rows == alone
    assert eval_set.sha256() == minilm.sentence_eval_set(sentences, batch_size=16).sha256()
    assert eval_set.sha256() != minilm.sentence_eval_set(sentences, batch_size=8).sha256()


def test_tokenizer_config_declares_strings_in_and_token_tensors_out() -> None:
    config = minilm.tokenizer_config(padding="batch")

    assert config.backend == "python" and config.max_batch_size == minilm.MAX_BATCH_SIZE
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("TEXT", 13, [1])]  # 13: TYPE_STRING
    assert [(t.name, list(t.dims)) for t in config.output] == [("input_ids", [-1]), ("attention_mask", [-1])]
    assert {k: v.string_value for k, v in config.parameters.items()} == {
        "tokenizer_file": "tokenizer.json",
        "max_length": "256",
        "padding": "batch",
    }
    assert config.HasField("dynamic_batching")  # padding across the requests of one batch needs the batcher


def test_tokenizer_config_runs_each_request_alone_with_per_request_padding() -> None:
    # one corrupt BYTES request in a batch fails the whole batch inside Triton 2.51's python backend
    assert not minilm.tokenizer_config(padding="request").HasField("dynamic_batching")


def test_tokenizer_config_raises_config_error_for_an_unknown_padding_scope() -> None:
    with pytest.raises(ConfigError, match="padding 'fixed' must be one of"):
        minilm.tokenizer_config(padding="fixed")


def _write_encoder_config(repository: Path, name: str, *, width: int = 384, max_batch_size: int = 64) -> None:
    spec = ModelConfigSpec(
        name=name,
        max_batch_size=max_batch_size,
        inputs=[TensorSpec(name=n, shape=(-1,), dtype="int64") for n in ("input_ids", "attention_mask")],
        outputs=[TensorSpec(name="embedding", shape=(width,), dtype="float32")],
        max_queue_delay_us=100,
    )
    model_file = repository.parent / "model.onnx"
    model_file.write_bytes(b"stand-in")
    add_version(repository=repository, config=build_model_config(spec), model_file=model_file, manifest={})


def test_write_tokenizer_model_makes_a_self_contained_version_folder(tmp_path: Path) -> None:
    version_dir = minilm.write_tokenizer_model(tmp_path / "repo")

    assert sorted(p.name for p in version_dir.iterdir()) == ["manifest.json", "model.py", "tokenizer.json"]
    assert (version_dir / "model.py").read_bytes() == minilm.TOKENIZER_SOURCE.read_bytes()
    assert (version_dir / "tokenizer.json").read_bytes() == (minilm.model_path() / "tokenizer.json").read_bytes()
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert set(manifest["extra_files"]) == {"tokenizer.json"} and manifest["tokenizer"]["max_length"] == 256


def test_write_text_ensemble_points_at_the_named_encoder_and_takes_its_width(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    minilm.write_tokenizer_model(repository, max_batch_size=32)
    _write_encoder_config(repository, "minilm_encoder_int8", width=8)

    version_dir = minilm.write_text_ensemble(repository, name="minilm_int8", encoder="minilm_encoder_int8")

    config = read_config(repository / "minilm_int8" / "config.pbtxt")
    assert config.platform == "ensemble" and config.max_batch_size == 32  # the smaller step's
    assert [s.model_name for s in config.ensemble_scheduling.step] == ["minilm_tokenizer", "minilm_encoder_int8"]
    assert [(t.name, list(t.dims)) for t in config.output] == [("EMBEDDING", [8])]
    assert [p.name for p in version_dir.iterdir()] == ["manifest.json"]


def test_write_text_ensemble_raises_config_error_when_the_encoder_is_missing(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    minilm.write_tokenizer_model(repository)

    with pytest.raises(ConfigError, match="encoder 'minilm_encoder_int8' is not in .*; write it first"):
        minilm.write_text_ensemble(repository, encoder="minilm_encoder_int8")
    assert not (repository / "minilm").exists()


def test_write_text_ensemble_raises_config_error_when_the_encoder_has_no_fixed_width(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    minilm.write_tokenizer_model(repository)
    _write_encoder_config(repository, "minilm_encoder", width=-1)

    with pytest.raises(ConfigError, match=re.escape("returns [('embedding', [-1])]")):
        minilm.write_text_ensemble(repository)


def test_write_text_ensemble_raises_config_error_when_max_batch_size_exceeds_a_step(tmp_path: Path) -> None:
    repository = tmp_path / "repo"
    minilm.write_tokenizer_model(repository, max_batch_size=8)
    _write_encoder_config(repository, "minilm_encoder")

    with pytest.raises(ConfigError, match="max_batch_size 16 must be between 1 and its steps' smallest, 8"):
        minilm.write_text_ensemble(repository, max_batch_size=16)


def test_build_minilm_refuses_an_existing_version_before_exporting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repository = tmp_path / "repo"
    (repository / "minilm" / "1").mkdir(parents=True)

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("the export must not start")

    monkeypatch.setattr(minilm, "export_encoder", no_export)
    with pytest.raises(ConfigError, match="version 1 of model 'minilm' already exists.*overwrite=True"):
        minilm.build_minilm(repository)
    assert sorted(p.name for p in repository.iterdir()) == ["minilm"]
