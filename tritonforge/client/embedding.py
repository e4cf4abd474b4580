"""Text in, embeddings out: the request and response shapes behind both clients' `embed` call.

    batch = text_batch(["first text", "second"])            # object array of UTF-8 bytes, shape [2, 1]
    slices, width = embedding_plan("minilm", signature, 2, input_name=TEXT_INPUT, output_name=EMBEDDING_OUTPUT)
    vectors = join_embeddings(parts, width)                  # float32 [N, width]

Kept apart from the clients so the sync and asyncio clients share one definition of what a text model looks like.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonforge.client.tensors import ModelSignature
from tritonforge.errors import InvalidInputError

TEXT_MODEL = "minilm"
"""The text-embedding ensemble `embed` calls by default (tritonforge.examples.minilm)."""
TEXT_INPUT = "TEXT"
EMBEDDING_OUTPUT = "EMBEDDING"


def text_batch(texts: Sequence[str]) -> NDArray[np.object_]:
    """Turn texts into the BYTES tensor a text model takes: an object array of UTF-8 bytes, shape [N, 1].

    Raises:
        InvalidInputError: `texts` is one string rather than a list, or holds something other than strings.
    """
    if isinstance(texts, (str, bytes)):
        raise InvalidInputError("embed takes a list of strings, not one string; wrap a single text as [text]")
    items = list(texts)
    encoded = []
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise InvalidInputError(f"text {index} is a {type(text).__name__}; embed takes strings only")
        try:
            encoded.append(text.encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise InvalidInputError(f"text {index} cannot be encoded as UTF-8 ({exc.reason}); fix the string") from exc
    batch = np.empty((len(encoded), 1), dtype=np.object_)
    batch[:, 0] = encoded
    return batch


def embedding_plan(
    model: str, signature: ModelSignature, count: int, *, input_name: str, output_name: str
) -> tuple[list[slice], int]:
    """Check a model can embed text and plan the requests: slices of at most max_batch_size texts, and the width.

    Raises:
        InvalidInputError: the model lacks the text input or a fixed-width embedding output.
    """
    tensor = signature.input(input_name)
    output = signature.output(output_name)
    if tensor is None or tensor.datatype != "BYTES" or output is None or len(output.shape) < 1 or output.shape[-1] < 1:
        raise InvalidInputError(
            f"model '{model}' is not a text-embedding model: embed needs a BYTES input '{input_name}' and an "
            f"output '{output_name}' [N, D]; it has inputs {[t.name for t in signature.inputs]} and outputs "
            f"{[t.name for t in signature.outputs]} (pass input_name/output_name, or call infer)"
        )
    step = signature.max_batch_size or max(count, 1)
    return [slice(start, start + step) for start in range(0, count, step)], int(output.shape[-1])


def join_embeddings(parts: Sequence[NDArray[Any]], width: int) -> NDArray[np.float32]:
    """Stack the per-request embeddings into one float32 [N, width] array."""
    if not parts:
        return np.zeros((0, width), dtype=np.float32)
    return np.concatenate([np.asarray(part, dtype=np.float32).reshape(len(part), width) for part in parts])
