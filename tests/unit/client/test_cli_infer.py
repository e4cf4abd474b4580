from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from tritonforge.cli.infer import infer
from tritonforge.errors import ConfigError, ServerUnavailableError


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("infer")(infer)
    app.command("other")(lambda: None)  # two commands, so typer keeps `infer` as a subcommand
    return app


def test_infer_cli_shows_every_option_when_asked_for_help(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["infer", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in ("--url", "--model", "--version", "--input", "--timeout-s", "--format", "--add-batch-dim"):
        assert option in result.output


def test_infer_cli_raises_config_error_when_input_file_has_wrong_suffix(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["infer", "--model", "digits", "--input", "image=x.csv"])
    assert result.exit_code == 1
    assert isinstance(result.exception, ConfigError)
    assert ".npy or .json" in str(result.exception)


def test_infer_cli_rejects_format_when_unknown(app: typer.Typer) -> None:
    result = CliRunner().invoke(app, ["infer", "--model", "digits", "--input", "x.npy", "--format", "yaml"])
    assert result.exit_code == 2


def test_infer_cli_raises_server_unavailable_when_nothing_listens(app: typer.Typer, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((1, 1, 8, 8), np.float32))
    args = [
        "infer",
        "--url",
        "127.0.0.1:1",
        "--model",
        "digits",
        "--input",
        str(tmp_path / "x.npy"),
        "--timeout-s",
        "2",
    ]
    result = CliRunner().invoke(app, args, env={"TRITONFORGE_CLIENT_RETRIES": "0"})
    assert result.exit_code == 1
    assert isinstance(result.exception, ServerUnavailableError)
    assert "127.0.0.1:1" in str(result.exception)
