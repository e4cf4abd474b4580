"""`tritonforge tune` on the real embedded Triton with the digits example: explicit model control, no restarts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tritonforge.cli import tune as tune_cli
from tritonforge.cli.one_line_errors import one_line_errors
from tritonforge.converters.triton_config import read_config
from tritonforge.errors import ConfigError
from tritonforge.loadtests.tuner import ORIGINAL_CONFIG_NAME, canonical_config, tune_model
from tritonforge.loadtests.tuner_search import Candidate, SearchSpace


def _copy(repository: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model_repository"
    shutil.copytree(repository / "digits", target / "digits")
    return target


def test_tuner_writes_the_winner_among_its_candidates_and_keeps_the_first_original(
    digits_repository: Path, tmp_path: Path
) -> None:
    # Which candidate wins depends on the host's speed (the search logic is tested on injected figures in
    # tests/unit/loadtests/test_tuner_search.py); here: the wiring, the files, and what is written where.
    repository = _copy(digits_repository, tmp_path)
    config_path = repository / "digits" / "config.pbtxt"
    weights = sorted(p.relative_to(repository) for p in repository.rglob("*") if not p.name.startswith("config.pbtxt"))
    before_text = config_path.read_text()
    before = read_config(config_path)
    space = SearchSpace(max_batch_sizes=(64,), delays_us=(None, 0), preferred=(False,), instances=(1,))
    candidates = {
        Candidate(max_batch_size=64, max_queue_delay_us=None, preferred=False, instances=1),
        Candidate(max_batch_size=64, max_queue_delay_us=0, preferred=False, instances=1),
    }
    report = tune_model(
        model="digits", repository=repository, p99_ms=60_000.0, out_dir=tmp_path / "out", space=space,
        concurrency=4, seconds=1.0, warmup_s=0.2,
    )  # fmt: skip
    result = report.search
    assert result.baseline is not None and result.baseline.candidate.max_queue_delay_us is None
    assert result.best is not None and result.best.candidate in candidates  # a 60 s p99 is met by both
    assert result.measurements == 4  # two configs, both re-measured in the confirmation round
    # the winner is the canonical config now; only the batching fields changed; weights untouched
    after = read_config(config_path)
    assert after == canonical_config(before, result.best.candidate)
    after.dynamic_batching.CopyFrom(before.dynamic_batching)
    if not before.HasField("dynamic_batching"):
        after.ClearField("dynamic_batching")
    assert after == before
    weights_now = [p for p in repository.rglob("*") if not p.name.startswith("config.pbtxt")]
    assert sorted(p.relative_to(repository) for p in weights_now) == weights
    out = tmp_path / "out"
    assert (out / "config.pbtxt.previous").read_text() == before_text
    assert (repository / "digits" / ORIGINAL_CONFIG_NAME).read_text() == before_text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["label"] == result.best.candidate.label and summary["configs_tried"] == 2
    assert len((out / "trials.csv").read_text().splitlines()) == 3
    assert (out / "pareto.png").stat().st_size > 0

    # A rerun into the same folder is refused before anything starts; into a new one it keeps the first original.
    with pytest.raises(ConfigError, match=r"already holds a tuning run \(summary.json\); pass --overwrite"):
        tune_model(model="digits", repository=repository, p99_ms=60_000.0, out_dir=out, space=space)
    first_winner = config_path.read_text()
    one = SearchSpace(max_batch_sizes=(64,), delays_us=(0,), preferred=(False,), instances=(1,))
    tune_model(
        model="digits", repository=repository, p99_ms=60_000.0, out_dir=tmp_path / "again", space=one,
        concurrency=2, seconds=0.5, warmup_s=0.0,
    )  # fmt: skip
    assert (tmp_path / "again" / "config.pbtxt.previous").read_text() == first_winner
    assert (repository / "digits" / ORIGINAL_CONFIG_NAME).read_text() == before_text


def test_impossible_slo_exits_1_and_leaves_the_config_alone(digits_repository: Path, tmp_path: Path) -> None:
    repository = _copy(digits_repository, tmp_path)
    config_path = repository / "digits" / "config.pbtxt"
    before = config_path.read_bytes()
    app = typer.Typer()
    app.command()(one_line_errors(tune_cli.tune))
    result = CliRunner().invoke(
        app,
        ["digits", "--repository", str(repository), "--p99-ms", "0.001", "--delay-us", "0", "--max-batch-size", "64",
         "--preferred", "off", "--instances", "1", "--seconds", "1", "--warmup-s", "0", "--concurrency", "4",
         "--out", str(tmp_path / "out")],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "SLOViolationError: no config of 'digits' met p99 <= 0.001 ms" in result.output
    assert config_path.read_bytes() == before
    assert not (tmp_path / "out" / "config.pbtxt.previous").exists()
    assert not (repository / "digits" / ORIGINAL_CONFIG_NAME).exists()
    assert (tmp_path / "out" / "trials.csv").is_file()
