"""Triton python-backend model: UTF-8 strings in, BERT token ids and attention mask out (Hugging Face `tokenizers`).

The first step of the `minilm` text ensemble (tritonforge/examples/minilm.py writes it into a repository):

    <repository>/minilm_tokenizer/config.pbtxt   backend: "python"; input TEXT (TYPE_STRING, dims [1]);
                                                 outputs input_ids, attention_mask (TYPE_INT64, dims [-1]);
                                                 parameters { tokenizer_file, max_length, padding }
    <repository>/minilm_tokenizer/1/model.py       this file
    <repository>/minilm_tokenizer/1/tokenizer.json the model's own tokenizer, so the repository is self-contained

Texts are truncated to `max_length` word pieces ([CLS] and [SEP] included, as sentence-transformers does) and padded
to the longest text, never to a fixed length. `padding` says the longest of what: "request" (the default) pads each
request on its own (each response is its own tensor, so a short request never pays for a long neighbour); "batch" pads
every request that Triton's dynamic batcher handed over together to the longest among them, and equal shapes then let
the encoder's dynamic batcher run those requests as one batch (Triton batches variable-size inputs only when their
shapes match). Measured on 2 CPU cores (benchmarks/tokenizer_share.py): "batch" merged 1.4-2 requests per encoder run
at 4-8 concurrent clients, but the extra padding ate the gain; no consistent latency difference either way.

This file runs inside the python backend's stub, with only numpy and `tokenizers` besides Triton's own utilities:
tritonforge need not be installed on a production server.

A bad request fails alone: each request's TEXT is checked ([n, 1] with n >= 1, UTF-8) and encoded apart from the
others' failures, and every error response gets its own TritonError (the stub frees a TritonError's shared-memory copy
when the same object is sent again, which aborted the whole server). A corrupt BYTES length prefix never reaches this
file: the python backend's C++ side rejects it while copying the batch into shared memory and fails every request of
that batch with its error (python backend 24.10, python_be.cc SaveRequestsToSharedMemory), leaking the response
factories of the requests before it, so the model never unloads; only a tokenizer without dynamic batching keeps that
failure to the one request (tests/integration/test_fuzz_served.py).
"""

import json
import os
from typing import Any

import numpy as np
import numpy.typing as npt
import triton_python_backend_utils as pb_utils
from tokenizers import Tokenizer

OUTPUT_NAMES = ("input_ids", "attention_mask")
PADDING_SCOPES = ("request", "batch")


def load_tokenizer(path: str, max_length: int) -> Tokenizer:
    """Open tokenizer.json with truncation to `max_length` and padding to the longest text (its own pad token)."""
    tokenizer = Tokenizer.from_file(path)
    tokenizer.enable_truncation(max_length=max_length)
    padding = dict(tokenizer.padding or {})
    padding.pop("length", None)  # no fixed length: pad to the longest text of each call
    tokenizer.enable_padding(**padding)
    return tokenizer


def decode_texts(array: npt.NDArray[Any]) -> list[str]:
    """Turn the TEXT tensor (an object array of bytes, [n, 1]) into n Python strings."""
    texts: list[str] = []
    for index, item in enumerate(array.reshape(-1)):
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"TEXT item {index} is not valid UTF-8 ({exc.reason}); send UTF-8 encoded text"
                ) from exc
        texts.append(str(item))
    return texts


def encode(tokenizer: Tokenizer, texts: list[str]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Tokenize `texts` into int64 input_ids and attention_mask of shape [len(texts), longest]."""
    if not texts:
        empty = np.zeros((0, 0), dtype=np.int64)
        return empty, empty.copy()
    encodings = tokenizer.encode_batch(texts)
    input_ids = np.array([e.ids for e in encodings], dtype=np.int64).reshape(len(texts), -1)
    attention_mask = np.array([e.attention_mask for e in encodings], dtype=np.int64).reshape(len(texts), -1)
    return input_ids, attention_mask


def check_texts(array: npt.NDArray[Any] | None) -> npt.NDArray[Any]:
    """Return the TEXT tensor if it has the shape the config promises ([n, 1], n >= 1), else raise.

    Triton keeps the batch dimension as a uint32, so a batch of 2**32 (or -2**63) reaches the model as a batch of 0;
    it does refuse batches over max_batch_size itself.
    """
    if array is None:
        raise ValueError("the request has no TEXT input; send TEXT as BYTES [n, 1]")
    if array.ndim != 2 or array.shape[1] != 1:
        raise ValueError(f"TEXT has shape {list(array.shape)}; send BYTES [n, 1]")
    if array.shape[0] < 1:
        raise ValueError(f"TEXT has a batch of {array.shape[0]}; send at least one text")
    return array


class TritonPythonModel:
    """Tokenizer model: one `encode_batch` per request (padding "request") or per execute call (padding "batch")."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the tokenizer from the version folder, configured from the model's parameters."""
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self._tokenizer = load_tokenizer(
            os.path.join(version_dir, params.get("tokenizer_file", "tokenizer.json")), int(params["max_length"])
        )
        self._padding = params.get("padding", "request")
        if self._padding not in PADDING_SCOPES:
            raise ValueError(f"parameter padding={self._padding!r} must be one of {PADDING_SCOPES}")
        self._input_name = config["input"][0]["name"]
        names = tuple(tensor["name"] for tensor in config["output"])
        if sorted(names) != sorted(OUTPUT_NAMES):
            raise ValueError(f"outputs {names} must be {OUTPUT_NAMES}")

    def execute(self, requests: list[Any]) -> list[Any]:
        """Tokenize each request's texts; a request that fails gets its own error and the others their answers."""
        texts: list[list[str]] = []
        errors: list[str | None] = []
        for request in requests:
            try:
                tensor = pb_utils.get_input_tensor_by_name(request, self._input_name)
                array = check_texts(None if tensor is None else tensor.as_numpy())
                texts.append(decode_texts(array))
                errors.append(None)
            except Exception as exc:  # a bad request must never take the model or its neighbours down
                texts.append([])
                errors.append(f"tokenizer: {type(exc).__name__}: {exc}")
        encoded = self._encode(texts, errors)
        responses = []
        for error, arrays in zip(errors, encoded, strict=True):
            # A TritonError of its own for each response: never share one (see the module doc).
            if error is not None:  # the request itself is wrong
                invalid = pb_utils.TritonError(error, pb_utils.TritonError.INVALID_ARG)
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=invalid))
            elif isinstance(arrays, str):  # the tokenizer failed on it
                responses.append(pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(arrays)))
            else:
                pairs = zip(OUTPUT_NAMES, arrays, strict=True)
                tensors = [pb_utils.Tensor(name, np.ascontiguousarray(array)) for name, array in pairs]
                responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return responses

    def _encode(self, texts: list[list[str]], errors: list[str | None]) -> list[Any]:
        """Per request: (input_ids, attention_mask), None where the request already failed, or an error message."""
        if self._padding == "batch":
            merged = self._encode_merged([group for group, error in zip(texts, errors, strict=True) if error is None])
            if merged is not None:
                parts = iter(merged)
                return [None if error else next(parts) for error in errors]
        return [None if error else self._encode_one(group) for group, error in zip(texts, errors, strict=True)]

    def _encode_merged(self, good: list[list[str]]) -> list[Any] | None:
        """Pad every good request to the longest text among them all; None when a request must be encoded alone."""
        if len(good) < 2:
            return None
        try:
            input_ids, attention_mask = encode(self._tokenizer, [text for group in good for text in group])
        except Exception:  # some request is bad: encoding each on its own finds which
            return None
        bounds = np.cumsum([len(group) for group in good])[:-1]
        return list(zip(np.split(input_ids, bounds), np.split(attention_mask, bounds), strict=True))

    def _encode_one(self, texts: list[str]) -> Any:
        try:
            return encode(self._tokenizer, texts)
        except Exception as exc:  # this request alone: its neighbours still get their tokens
            return f"tokenizer: {type(exc).__name__}: {exc}"

    def finalize(self) -> None:
        """Release the tokenizer."""
        del self._tokenizer
