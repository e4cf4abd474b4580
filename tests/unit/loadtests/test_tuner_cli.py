"""`tritonforge tune` argument handling; the tuning itself is replaced by a fake."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from tritonforge.cli import tune as tune_cli
from tritonforge.errors import ConfigError, SLOViolationError
from tritonforge.loadtests import tuner
from tritonforge.loadtests.closed_loop import LoopFigures
from tritonforge.loadtests.tuner_search import Candidate, SearchSpace, search


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command()(tune_cli.tune)
    return app


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Replace tune_model: p99 grows with the queue delay, so the SLO decides whether anything passes."""
    seen: list[dict[str, Any]] = []

    def fake_tune_model(**kwargs: Any) -> tuner.TuneReport:
        seen.append(kwargs)

        def measure(c: Candidate) -> LoopFigures:
            delay = c.max_queue_delay_us or 0
            return LoopFigures(requests_per_s=1000.0 + delay, items_per_s=1000.0 + delay, p50_ms=1.0,
                               p99_ms=2.0 + delay / 100, requests=100, errors=0)  # fmt: skip

        result = search(kwargs["space"], measure, p99_ms=kwargs["p99_ms"], confirm=0)
        return tuner.TuneReport(
            model=kwargs["model"], url="fake", concurrency=kwargs["concurrency"], seconds=kwargs["seconds"],
            warmup_s=0.0, request_batch_size=1, search=result, seconds_per_measurement=0.0, wall_s=0.0,
        )  # fmt: skip

    monkeypatch.setattr(tuner, "tune_model", fake_tune_model)
    return seen


def test_p99_from_the_flag_and_space_overrides(app: typer.Typer, calls: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(
        app,
        ["digits", "--p99-ms", "8", "--max-batch-size", "16", "--max-batch-size", "8", "--delay-us", "off",
         "--delay-us", "500", "--preferred", "off", "--instances", "1", "--no-write", "--concurrency", "4"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    kwargs = calls[0]
    assert kwargs["p99_ms"] == 8.0 and kwargs["write"] is False and kwargs["concurrency"] == 4
    assert kwargs["space"] == SearchSpace(max_batch_sizes=(8, 16), delays_us=(None, 500), preferred=(False,),
                                          instances=(1,))  # fmt: skip
    assert "b8 d500us x1" in result.output or "b16 d500us x1" in result.output


def test_p99_from_the_slo_file(app: typer.Typer, calls: list[dict[str, Any]], tmp_path: Path) -> None:
    slo = tmp_path / "slo.yaml"
    slo.write_text("digits:\n  p99_ms: 12\n  p50_ms: 3\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["digits", "--slo", str(slo)])
    assert result.exit_code == 0, result.output
    assert calls[0]["p99_ms"] == 12.0 and calls[0]["write"] is True and calls[0]["concurrency"] == 16


def test_no_config_meeting_the_slo_exits_1(app: typer.Typer, calls: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(app, ["digits", "--p99-ms", "1"])
    assert isinstance(result.exception, SLOViolationError)
    assert "no config of 'digits' met p99 <= 1 ms" in str(result.exception)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["digits"], "exactly one of --slo FILE or --p99-ms"),
        (["digits", "--p99-ms", "5", "--slo", "slo/digits.yaml"], "exactly one of"),
        (["digits", "--p99-ms", "0"], "--p99-ms must be above 0"),
        (["digits", "--p99-ms", "5", "--delay-us", "soon"], "--delay-us 'soon'"),
        (["digits", "--p99-ms", "5", "--preferred", "maybe"], "--preferred 'maybe'"),
        (["digits", "--p99-ms", "5", "--max-batch-size", "0"], "max_batch_size values must be whole numbers >= 1"),
        (["digits", "--p99-ms", "5", "--inputs", "missing.npz"], "missing.npz do not exist"),
    ],
)
def test_bad_arguments_are_config_errors(
    app: typer.Typer, calls: list[dict[str, Any]], args: list[str], message: str
) -> None:
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, ConfigError), result.output
    assert message in str(result.exception)
    assert not calls


def test_slo_file_without_p99(tmp_path: Path) -> None:
    slo = tmp_path / "slo.yaml"
    slo.write_text("digits:\n  p50_ms: 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="sets no p99_ms for 'digits'"):
        tune_cli.resolve_p99("digits", slo, None)
