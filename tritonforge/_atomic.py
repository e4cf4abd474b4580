"""Atomic file writes: a reader sees the old file or the new one, never half of either.

    atomic_write_text(model_dir / "config.pbtxt", text)
    with atomic_output(path) as tmp:
        torch.onnx.export(model, args, tmp)

The temporary file lives in the destination's own folder, so the final `os.replace` is a rename on one file system.
`tempfile` creates files 0600 and folders 0700; what is published here is made readable to all (0644/0755, or an
existing file's own mode), because a model repository is read by a tritonserver that may run as another user.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o644
DIR_MODE = 0o755


def staging_dir(parent: Path, prefix: str) -> Path:
    """Create a fresh hidden folder in `parent` (mode 0755) to assemble something before renaming it into place."""
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(folder, DIR_MODE)
    return folder


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
        mode = path.stat().st_mode & 0o7777 if path.exists() else FILE_MODE
        os.chmod(tmp, mode)
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
