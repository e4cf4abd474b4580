"""`tritonforge model signature` against a server: one line and exit 1 when nothing answers."""

from __future__ import annotations

import socket

from typer.testing import CliRunner

from tritonforge.cli.main import app


def _closed_port() -> int:
    with socket.socket() as sock:  # bound then closed: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_model_signature_cli_fails_in_one_line_when_no_server_answers() -> None:
    url = f"127.0.0.1:{_closed_port()}"

    result = CliRunner().invoke(app, ["model", "signature", "digits", "--url", url, "--timeout-s", "0.3"])

    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ServerUnavailableError: "), result.output
    assert url in lines[0]
