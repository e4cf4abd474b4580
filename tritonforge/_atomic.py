"""Atomic file and folder writes: a reader sees the old file or the new one, never half of either.

    atomic_write_text(model_dir / "config.pbtxt", text)
    with atomic_output(path) as tmp:
        torch.onnx.export(model, args, tmp)
    with published_dir(stage, model_dir / "3"):      # one rename; the old "3" (if any) is now at `stage`
        atomic_write_text(model_dir / "config.pbtxt", text)   # a failure here puts the old "3" back

The temporary file lives in the destination's own folder, so the final `os.replace` is a rename on one file system.
Contents are fsynced before the rename and the folder after it, so a crash (power loss included) leaves either the
old or the new version under its own name. A folder that replaces another is swapped in with ONE rename
(Linux `renameat2(RENAME_EXCHANGE)`): there is no moment in which the old version lives only in a hidden folder.
`tempfile` creates files 0600 and folders 0700; what is published here is made readable to all (0644/0755, or an
existing file's own mode), because a model repository is read by a tritonserver that may run as another user.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

FILE_MODE = 0o644
DIR_MODE = 0o755
_AT_FDCWD = -100  # from <fcntl.h>
_RENAME_NOREPLACE = 1  # from <linux/fs.h>
_RENAME_EXCHANGE = 2


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
        fsync_path(tmp)
        os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's contents (a folder: its entries) to disk."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """Fsync every file and folder under `root` (folders after their contents), so a rename publishes data on disk."""
    for folder, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            path = Path(folder, name)
            if not path.is_symlink():
                fsync_path(path)
        fsync_path(Path(folder))


@contextlib.contextmanager
def published_dir(stage: Path, target: Path, *, replace: bool = True) -> Iterator[None]:
    """Publish the folder `stage` as `target` in one rename, run the block, and undo the rename if the block fails.

    An existing `target` is exchanged with `stage` atomically, so afterwards `stage` holds the old content (the caller
    removes it once done, e.g. in a `finally`). Without `replace`, an existing `target` raises FileExistsError, even
    one that another writer created a moment ago.

    Args:
        stage: a fully written folder beside `target` (same file system).
        target: the name to publish it under.
        replace: whether an existing `target` may be replaced.

    Raises:
        FileExistsError: `target` exists and replace is False.
    """
    fsync_tree(stage)
    exchanged = _rename_dir(stage, target, exchange=replace and target.exists())
    fsync_path(target.parent)
    try:
        yield
    except BaseException:
        _rename_dir(target, stage, exchange=exchanged)  # the old target back in place, the new one back at `stage`
        fsync_path(target.parent)
        raise


def _rename_dir(source: Path, target: Path, *, exchange: bool) -> bool:
    """Rename `source` to `target`: exchanged with it if `exchange`, else never over an existing one.

    Returns whether the two were exchanged. Where renameat2 is missing (not Linux, or a file system without it),
    falls back to two renames, which leave a short window with the old folder under a hidden name.
    """
    flags = _RENAME_EXCHANGE if exchange else _RENAME_NOREPLACE
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.renameat2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags) == 0:
            return exchange
        code = ctypes.get_errno()
        if code not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(code, os.strerror(code), str(source), None, str(target))
        _LOGGER.debug("renameat2 not supported for %s (%s); using two renames", target, os.strerror(code))
    if not exchange:
        if target.exists():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target))
        os.rename(source, target)
        return False
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.aside-", dir=target.parent))
    aside.rmdir()
    os.rename(target, aside)
    os.rename(source, target)
    os.rename(aside, source)
    return True


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` atomically (temp file in the same folder, fsync, then rename).

    Args:
        path: the file to create or replace; its folder must exist.
        text: the full new content, written as UTF-8.
    """
    with atomic_output(path) as tmp:  # fsyncs the file before the rename and the folder after it
        tmp.write_text(text, encoding="utf-8")
