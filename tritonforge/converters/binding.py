"""Inputs bound to forward()'s parameters by name; outputs flattened under the names the model gives them.

    bound = bind_by_name(model, ["attention_mask", "input_ids"])  # ConfigError: a name forward() does not take
    outputs = bound(mask, ids)       # model(attention_mask=mask, input_ids=ids), as a flat tuple of tensors
    names, tensors = flatten_outputs(model(**kwargs))   # dict keys, named-tuple fields, ModelOutput fields

The exporter and the parity gate both run the model through `bind_by_name`: the graph's inputs are the bound
module's positional arguments in spec order, and it hands each to forward() under its own name. Spec order can then
never decide which tensor reaches which parameter (the TorchScript exporter binds by position, so specs given as
"attention_mask, input_ids" to forward(input_ids, attention_mask) used to export the mask under the name input_ids).
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tritonforge.errors import ConfigError

if TYPE_CHECKING:
    import torch

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _leaves(value: Any, path: tuple[str | int, ...], out: list[tuple[tuple[str | int, ...], Any]]) -> None:
    import torch

    if isinstance(value, torch.Tensor):
        out.append((path, value))
    elif isinstance(value, Mapping):  # a dict, or a Hugging Face ModelOutput (None fields are not among its items)
        for key, item in value.items():
            if item is not None:
                _leaves(item, (*path, str(key)), out)
    elif isinstance(value, tuple) and hasattr(value, "_fields"):  # a named tuple
        for key in value._fields:
            if getattr(value, key) is not None:
                _leaves(getattr(value, key), (*path, str(key)), out)
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _leaves(item, (*path, i), out)
    else:
        out.append((path, value))


def flatten_outputs(outputs: Any) -> tuple[list[str] | None, list[torch.Tensor]]:
    """Flatten a forward() result to a list of tensors, in the order the wrapper returns them to the exporter.

    Args:
        outputs: a tensor, a tuple/list of tensors, a dict, a named tuple or a Hugging Face ModelOutput (nested
            containers are flattened too).

    Returns:
        (names or None, tensors): names come from dict keys and named-tuple fields (nested parts joined by "_", e.g.
        "hidden_states_0"); None when nothing in the result is named.

    Raises:
        ConfigError: the result is empty or holds something other than tensors.
    """
    import torch

    leaves: list[tuple[tuple[str | int, ...], Any]] = []
    _leaves(outputs, (), leaves)
    bad = [type(v).__name__ for _, v in leaves if not isinstance(v, torch.Tensor)]
    if not leaves or bad:
        raise ConfigError(
            f"forward() returned {type(outputs).__name__}"
            + (f" holding {bad[0]}" if bad else " with no tensors")
            + "; return a tensor, a tuple/list of tensors, a dict of tensors or a named tuple/ModelOutput"
        )
    tensors = [v for _, v in leaves]
    if not any(isinstance(part, str) for path, _ in leaves for part in path):
        return None, tensors
    names = []
    for path, _ in leaves:
        parts = [str(p) for p in path] if isinstance(path[0], str) else [f"output_{path[0]}", *map(str, path[1:])]
        names.append("_".join(parts))
    return names, tensors


def _describe(model: torch.nn.Module, signature: inspect.Signature) -> str:
    params = ", ".join(str(p) for p in signature.parameters.values())
    return f"{type(model).__name__}.forward({params})"


def check_forward_names(model: torch.nn.Module, names: Sequence[str]) -> None:
    """Check that forward() takes each input name as a keyword and that every required parameter has an input.

    Raises:
        ConfigError: a name is not a parameter of forward (and forward has no **kwargs), a required parameter has
            no input, or a parameter named by an input is positional-only; the message names forward's parameters.
    """
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError):  # a forward without a Python signature (compiled): nothing to check by name
        return
    params = list(signature.parameters.values())
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    keywords = {p.name for p in params if p.kind in _NAMED}
    unknown = [n for n in names if n not in keywords and not takes_any]
    if unknown:
        raise ConfigError(
            f"input '{unknown[0]}' is not a parameter of {_describe(model, signature)}; "
            "name each --input after the forward() parameter it feeds"
        )
    required = [
        p.name
        for p in params
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    missing = [n for n in required if n not in names]
    if missing:
        raise ConfigError(
            f"{_describe(model, signature)} needs '{missing[0]}', which has no input; add an --input "
            f"{missing[0]}:SHAPE:DTYPE for it"
        )


def bind_by_name(model: torch.nn.Module, names: Sequence[str]) -> torch.nn.Module:
    """Return `model` as a module whose positional inputs, in the order of `names`, reach forward() by keyword.

    The result is a shallow copy of the model (same submodules and weights) with its own forward, not a wrapper
    around it: the traced graph keeps the model's own node and weight names ("/conv/Conv", "conv.weight"), which
    quantization exclusions and reports refer to.

    Args:
        model: the module; it is not changed.
        names: the input names, in the order the graph takes them; each must be a parameter of forward().

    Returns:
        A module whose forward(*tensors) returns the model's outputs as a flat tuple (see `flatten_outputs`).

    Raises:
        ConfigError: see `check_forward_names`.
    """
    check_forward_names(model, names)
    input_names = tuple(names)
    original = model.forward

    def forward(*args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(flatten_outputs(original(**dict(zip(input_names, args, strict=True))))[1])

    bound = copy.copy(model)
    bound.forward = forward  # an instance attribute: the copy's own forward, the model keeps its own
    return bound
