"""Atomic file writes: a reader sees the old file or the new one, never half of either.

    atomic_write_text(model_dir / "config.pbtxt", text)
    with atomic_output(path) as tmp:
        torch.onnx.export(model, args, tmp)

The temporary file lives in the destination's own folder, so the final `os.replace` is a rename on one file system.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on a clean exit it replaces `path`, on an error it is removed.

    Args:
        path: the file to create or replace; its folder must exist.

    Yields:
        A path in the same folder for the caller to write.
    """
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (temp file in the same folder, fsync, then rename).

    Args:
        path: the file to create or replace; its folder must exist.
        text: the full new content, written as UTF-8.
    """
    with atomic_output(path) as tmp:
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
