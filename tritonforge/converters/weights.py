"""Load a weights file into a model, or refuse in one line that says what the file is and how to fix it.

    model = build_model()
    load_weights(model, Path("build/digits_cnn.pt"))   # a state dict saved with torch.save(model.state_dict(), p)

Files are read with `torch.load(weights_only=True)` (no arbitrary pickles) or, for `.safetensors`, with safetensors.
torch's own errors do not say what went wrong for a user (a text file gives `KeyError: 101`, a truncated file a miniz
error), so the file is looked at first: empty, text, numpy, truncated zip archive; then what it holds: a state dict,
a training checkpoint that wraps one, a pickled module; then whether its keys and shapes fit the model, naming a few
missing and unexpected keys, a common prefix such as DataParallel's `module.`, and each parameter whose shape differs.
"""

from __future__ import annotations

import logging
import pickle
import re
import struct
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tritonforge.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["load_weights"]

_LOGGER = logging.getLogger(__name__)

# Keys under which training loops (Lightning, timm, the PyTorch examples) keep the model's state dict, in the order
# they are tried: a checkpoint with several (e.g. "model" and "ema") is read from the first.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
_SHOWN = 3  # how many keys or parameters a message names
_SAVE_HINT = "save it with torch.save(model.state_dict(), path)"
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
_ZIP_MAGIC = b"PK\x03\x04"
_HEAD_BYTES = 512
_NUMPY_MAGIC = b"\x93NUMPY"


def load_weights(model: torch.nn.Module, path: Path) -> None:
    """Load a state dict from `path` into `model` (strict: every key and shape must match).

    Args:
        model: the freshly built module the weights belong to.
        path: a file written by `torch.save(model.state_dict(), path)`, a training checkpoint that holds such a
            state dict under one of WRAPPER_KEYS, or a `.safetensors` file.

    Raises:
        ConfigError: the file is missing, empty, not a torch checkpoint, truncated, a pickled model rather than a
            state dict, or its keys or shapes do not fit the model; the message names the problem and the fix.
    """
    state = _unwrap(_read(path), path)
    _check_fit(model, state, path)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # a case the checks above do not foresee: keep torch's words, on one line
        raise ConfigError(f"{path} does not fit the model: {' '.join(str(exc).split())[:300]}") from exc


def _read(path: Path) -> Any:
    """Return what the file holds, after ruling out the files torch.load would describe badly."""
    if not path.is_file():
        raise ConfigError(f"weights file {path} does not exist; check the path given to --weights")
    with path.open("rb") as handle:
        head = handle.read(_HEAD_BYTES)
    if not head:
        raise ConfigError(f"weights file {path} is empty; copy it again or re-save it with torch.save")
    if _looks_like_safetensors(head):
        return _read_safetensors(path)
    if head.startswith(_NUMPY_MAGIC):
        raise ConfigError(f"{path} is a numpy array file (.npy), not a state dict; {_SAVE_HINT}")
    if head.startswith(_ZIP_MAGIC):
        _check_zip(path)
    elif _looks_like_text(head):
        first = head.decode("utf-8", errors="replace").strip().splitlines()[0][:60] if head.strip() else ""
        raise ConfigError(f"{path} is a text file ({first!r}...), not a torch checkpoint; {_SAVE_HINT}")
    return _torch_load(path)


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return len(head) == _HEAD_BYTES and exc.start >= len(head) - 3  # a character cut by the window is text
    return True


def _looks_like_safetensors(head: bytes) -> bool:
    # safetensors: an 8-byte little-endian header length, then a JSON header.
    return len(head) > 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 100_000_000


def _read_safetensors(path: Path) -> Any:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:
        raise ConfigError(
            f"{path} is a safetensors file; install safetensors to load it (pip install safetensors)"
        ) from exc
    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError (no common base) for any bad file
        raise ConfigError(
            f"{path} is a damaged safetensors file ({' '.join(str(exc).split())[:120]}); copy it again"
        ) from exc


def _check_zip(path: Path) -> None:
    """A torch checkpoint is a zip archive with `<name>/data.pkl`: say truncated or foreign before torch does."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ConfigError(
            f"{path} is a truncated or corrupt torch checkpoint ({exc}); copy it again from where it was saved"
        ) from exc
    if not any(name.endswith("/data.pkl") or name == "data.pkl" for name in names):
        shown = ", ".join(names[:_SHOWN])
        raise ConfigError(f"{path} is a zip archive ({shown}...) but not a torch checkpoint; {_SAVE_HINT}")


def _torch_load(path: Path) -> Any:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNSUPPORTED_GLOBAL.search(str(exc))
        if found and _cut_name(found.group(1)):
            raise ConfigError(f"{path} is a truncated torch checkpoint; copy it again from where it was saved") from exc
        if found:
            raise ConfigError(
                f"{path} holds a pickled {found.group(1)}, not a weights-only state dict (a pickle can run code, "
                f"so it is not loaded); {_SAVE_HINT}"
            ) from exc
        raise ConfigError(f"{path} is not a torch checkpoint (it does not unpickle as one); {_SAVE_HINT}") from exc
    except (RuntimeError, EOFError, KeyError, ValueError, OSError, IndexError, struct.error) as exc:
        detail = " ".join(str(exc).split())[:120] or type(exc).__name__
        # A legacy-format file cut inside its tensor data ends in EOF, index or struct errors.
        if isinstance(exc, (EOFError, IndexError, struct.error)) or "corrupt" in detail or "zip archive" in detail:
            raise ConfigError(
                f"{path} is a truncated or corrupt torch checkpoint ({detail}); copy it again from where it was saved"
            ) from exc
        raise ConfigError(f"{path} is not a torch checkpoint ({type(exc).__name__}: {detail}); {_SAVE_HINT}") from exc


def _cut_name(name: str) -> bool:
    """Whether a pickled global's name was cut by the end of the file (a legacy-format checkpoint truncated)."""
    import importlib

    module_name, _, attr = name.rpartition(".")
    if not module_name or not attr:
        return True
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return False  # a class of the user's own code that is not importable here: a pickled model, not a cut
    return not hasattr(module, attr)


def _is_state_dict(value: Any) -> bool:
    """String keys, some tensors, and no nested dict (a nested dict means a checkpoint that wraps one)."""
    import torch

    if not isinstance(value, Mapping) or not value or not all(isinstance(k, str) for k in value):
        return False
    values = list(value.values())
    return any(isinstance(v, torch.Tensor) for v in values) and not any(isinstance(v, Mapping) for v in values)


def _unwrap(state: Any, path: Path) -> Mapping[str, Any]:
    """The state dict itself, or the one a training checkpoint wraps."""
    if _is_state_dict(state):
        return state  # type: ignore[no-any-return]
    if not isinstance(state, Mapping):
        raise ConfigError(f"{path} holds a {type(state).__name__}, not a state dict; {_SAVE_HINT}")
    for key in WRAPPER_KEYS:
        if _is_state_dict(state.get(key)):
            _LOGGER.info("%s is a training checkpoint: loading the state dict under %r", path, key)
            return state[key]  # type: ignore[no-any-return]
    keys = ", ".join(repr(k) for k in list(state)[: _SHOWN + 2]) or "none"
    raise ConfigError(
        f"{path} holds a dict with keys {keys} but no state dict of tensors (looked at the dict itself and under "
        f"{', '.join(WRAPPER_KEYS)}); {_SAVE_HINT}"
    )


def _check_fit(model: torch.nn.Module, state: Mapping[str, Any], path: Path) -> None:
    """Refuse keys or shapes that do not match, naming a few of each and a prefix that would fix the keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        prefix = _prefix_fix(expected, state)
        if prefix is not None:
            raise ConfigError(f"{path} does not fit the model: {prefix}")
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) ({_few(unexpected)})")
        raise ConfigError(
            f"{path} does not fit the model: {' and '.join(parts)}; "
            "check that it was saved from the same architecture and settings"
        )
    wrong = [
        f"{k} is {_shape(state[k])} in the file but {_shape(v)} in the model"
        for k, v in expected.items()
        if hasattr(v, "shape") and _shape(state[k]) != _shape(v)
    ]
    if wrong:
        more = f" (and {len(wrong) - _SHOWN} more)" if len(wrong) > _SHOWN else ""
        raise ConfigError(
            f"{path} does not fit the model: {'; '.join(wrong[:_SHOWN])}{more}; "
            "it was saved from a model of other sizes (layers, classes, vocabulary): build the model with those"
        )


def _shape(value: Any) -> str:
    return str(list(value.shape)) if hasattr(value, "shape") else f"a {type(value).__name__}"


def _prefix_fix(expected: Mapping[str, Any], state: Mapping[str, Any]) -> str | None:
    """Name a prefix that every file key has and the model's lack (or the reverse), with the line that fixes it."""
    model_keys, file_keys = set(expected), set(state)
    for longer, shorter, extra in ((file_keys, model_keys, True), (model_keys, file_keys, False)):
        sample = next(iter(sorted(longer)), "")
        for key in sorted(shorter, key=len, reverse=True):
            if sample.endswith(key) and sample != key:
                prefix = sample[: -len(key)]
                if {k[len(prefix) :] for k in longer if k.startswith(prefix)} == shorter and all(
                    k.startswith(prefix) for k in longer
                ):
                    return _prefix_message(prefix, extra=extra)
                break
    return None


def _prefix_message(prefix: str, *, extra: bool) -> str:
    if extra:
        origin = " (saved from a DataParallel/DistributedDataParallel wrapper)" if prefix == "module." else ""
        return (
            f"every key in the file starts with {prefix!r}{origin}; re-save it without the prefix: "
            f"torch.save({{k.removeprefix({prefix!r}): v for k, v in state.items()}}, path)"
        )
    return (
        f"every key of the model starts with {prefix!r} and the file's do not; re-save it with the prefix: "
        f"torch.save({{{prefix!r} + k: v for k, v in state.items()}}, path)"
    )


def _few(keys: Iterable[str]) -> str:
    keys = list(keys)
    return ", ".join(keys[:_SHOWN]) + (", ..." if len(keys) > _SHOWN else "")
