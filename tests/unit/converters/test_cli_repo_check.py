from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tritonforge.cli.repo import check
from tritonforge.converters.export import ExportedVersion
from tritonforge.errors import ConfigError


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    app.command("check")(check)
    app.command("other")(lambda: None)
    return app


def test_repo_check_command_prints_ok_and_exits_zero_when_the_repository_is_clean(
    app: typer.Typer, exported: ExportedVersion, repository: Path
) -> None:
    result = CliRunner().invoke(app, ["check", str(repository)])
    assert result.exit_code == 0
    assert result.output.strip() == "OK: 1 models, 1 versions"


def test_repo_check_command_prints_one_line_per_finding_and_exits_one_when_problems_exist(
    app: typer.Typer, exported: ExportedVersion, repository: Path
) -> None:
    exported.onnx_path.unlink()
    (repository / "stray").mkdir()

    result = CliRunner().invoke(app, ["check", str(repository)])

    assert result.exit_code == 1
    assert f"{exported.onnx_path}: model file is missing; re-export" in result.output.splitlines()
    assert f"{repository / 'stray'}: no config.pbtxt; generate one with `tritonforge export`" in result.output
    assert "OK:" not in result.output


def test_repo_check_command_fails_with_config_error_when_the_repository_is_missing(
    app: typer.Typer, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["check", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and isinstance(result.exception, ConfigError)
