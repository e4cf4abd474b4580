"""`tritonforge monitor serve` in-process: one refresh printed with --once, a server that stops after --run-for, and
one-line errors for bad options."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from test_figures import _log, _repository
from typer.testing import CliRunner

from tritonforge.cli.main import app
from tritonforge.cli.monitor_serve import parse_duration_s


def test_once_prints_the_real_figures_of_every_model_in_the_repository(tmp_path: Path) -> None:
    repo = _repository(tmp_path / "repo")
    _log(tmp_path / "log", shift=1.0)
    result = CliRunner().invoke(app, ["monitor", "serve", "--log", str(tmp_path / "log"), "-r", str(repo), "--once"])
    assert result.exit_code == 0, result.output
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(result.stdout)
        for s in family.samples
    }
    assert samples[("tritonforge_drift_detected", (("group", "x"), ("model", "toy")))] == 1.0
    assert samples[("tritonforge_monitor_window_items", (("model", "toy"),))] == 600


def test_serve_stops_by_itself_after_run_for(tmp_path: Path) -> None:
    repo = _repository(tmp_path / "repo")
    _log(tmp_path / "log", items=40)
    args = ["monitor", "serve", "--log", str(tmp_path / "log"), "-r", str(repo), "--port", "0", "--run-for", "1s"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "monitor metrics: http://127.0.0.1:" in result.output and "monitor stopped" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--interval", "soon"], "--interval 'soon' is not a duration"),
        (["--listen", "localhost"], "not an IPv4 address"),
        (["--window", "yesterday"], "--window 'yesterday'"),
        (["-r", "no-such-repository"], "model repository no-such-repository does not exist"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path: Path, extra: list[str], message: str) -> None:
    repo = _repository(tmp_path / "repo")
    result = CliRunner().invoke(app, ["monitor", "serve", "--log", str(tmp_path), "-r", str(repo), "--once", *extra])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_durations_parse_with_their_units() -> None:
    assert parse_duration_s("60s", "--interval") == 60.0
    assert parse_duration_s("1.5m", "--interval") == 90.0
    assert parse_duration_s("500ms", "--interval") == 0.5
    assert parse_duration_s("2", "--interval") == 2.0
