"""`tritonforge tune` on the real embedded Triton with the digits example: explicit model control, no restarts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import typer
from typer.testing import CliRunner

from tritonforge.cli import tune as tune_cli
from tritonforge.cli.main import _one_line_errors
from tritonforge.converters.triton_config import read_config
from tritonforge.loadtests.tuner import tune_model
from tritonforge.loadtests.tuner_search import Candidate, SearchSpace


def _copy(repository: Path, tmp_path: Path) -> Path:
    target = tmp_path / "model_repository"
    shutil.copytree(repository / "digits", target / "digits")
    return target


def test_tuner_picks_dynamic_batching_over_one_request_per_execution(digits_repository: Path, tmp_path: Path) -> None:
    # Known outcome at concurrency 16 on the python-backend adapter: batching whatever is queued runs one ORT call
    # for many requests, against one call per request without a dynamic batcher (measured ~1.9x on 2 cores).
    repository = _copy(digits_repository, tmp_path)
    weights = sorted(p.relative_to(repository) for p in repository.rglob("*") if p.name != "config.pbtxt")
    before = read_config(repository / "digits" / "config.pbtxt")
    space = SearchSpace(max_batch_sizes=(64,), delays_us=(None, 0), preferred=(False,), instances=(1,))
    report = tune_model(
        model="digits", repository=repository, p99_ms=200.0, out_dir=tmp_path / "out", space=space,
        concurrency=16, seconds=1.5, warmup_s=0.3,
    )  # fmt: skip
    result = report.search
    assert result.baseline is not None and result.baseline.candidate.max_queue_delay_us is None
    assert result.best is not None
    assert result.best.candidate == Candidate(max_batch_size=64, max_queue_delay_us=0, preferred=False, instances=1)
    assert report.speedup is not None and report.speedup > 1.2
    assert result.measurements == 4  # two configs, both re-measured in the confirmation round
    # the winner is the canonical config now; only the batching fields changed; weights untouched
    after = read_config(repository / "digits" / "config.pbtxt")
    assert after.HasField("dynamic_batching") and after.dynamic_batching.max_queue_delay_microseconds == 0
    after.dynamic_batching.CopyFrom(before.dynamic_batching)
    assert after == before
    assert sorted(p.relative_to(repository) for p in repository.rglob("*") if p.name != "config.pbtxt") == weights
    out = tmp_path / "out"
    assert (out / "config.pbtxt.previous").read_text() != (repository / "digits" / "config.pbtxt").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["label"] == "b64 d0us x1" and summary["configs_tried"] == 2
    assert len((out / "trials.csv").read_text().splitlines()) == 3
    assert (out / "pareto.png").stat().st_size > 0


def test_impossible_slo_exits_1_and_leaves_the_config_alone(digits_repository: Path, tmp_path: Path) -> None:
    repository = _copy(digits_repository, tmp_path)
    config_path = repository / "digits" / "config.pbtxt"
    before = config_path.read_bytes()
    app = typer.Typer()
    app.command()(_one_line_errors(tune_cli.tune))
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
    assert (tmp_path / "out" / "trials.csv").is_file()
