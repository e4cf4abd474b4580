"""The CLI's error contract: a TritonForgeError becomes one line on stderr and exit code 1, never a traceback."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer

from tritonforge.errors import TritonForgeError


def one_line_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a command so that a TritonForgeError prints as `ErrorClass: message` and exits 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TritonForgeError as exc:
            typer.echo(f"{type(exc).__name__}: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper
