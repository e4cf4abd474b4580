"""The model zoo: tiny, randomly initialised configs of real architectures that nobody in this project wrote.

    for entry in ZOO:
        model = entry.build()                              # an nn.Module in eval mode, seeded weights
        specs = entry.specs()                              # the `--input` texts, parsed by tritonforge
        feeds = entry.feeds(rng, batch=3, sizes={"seq": 17})  # real-shaped inputs by input name

Each factory also works as a CLI spec (`zoo_models:build_bert` with tests/integration on PYTHONPATH). The Hugging
Face models come from their config classes (nothing is downloaded) and return `ModelOutput`s; the tabular model
returns a named tuple with a float and an int64 output. Inputs are declared as a user would on the command line:
named dynamic axes (`seq`, `height`, `width`), value ranges for integer inputs, and for DistilBERT in an order that
is not forward()'s, so only binding by name gives the right answers. Shared by tests/integration/test_model_zoo.py
and benchmarks/zoo.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from tritonforge.converters.specs import TensorSpec, parse_tensor_spec

Feeds = dict[str, npt.NDArray[Any]]
VOCAB = 100
LSTM_VOCAB = 50
CATEGORIES = 7
INIT_RANGE = 0.3
"""Weights drawn wider than the 0.02 of the configs' defaults, so logits are O(1) and a wrong graph shows."""


def _seeded(build: Callable[[], nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return build().eval()


def build_resnet() -> nn.Module:
    """transformers' ResNet for image classification, two tiny stages (about 1,800 parameters)."""
    from transformers import ResNetConfig, ResNetForImageClassification

    config = ResNetConfig(num_channels=3, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=3)
    return _seeded(lambda: ResNetForImageClassification(config))


def build_vit() -> nn.Module:
    """transformers' ViT for image classification: 16x16 images, 8x8 patches, one layer (about 5,500 parameters)."""
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=16, patch_size=8, num_channels=3, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=3, initializer_range=INIT_RANGE,
    )  # fmt: skip
    return _seeded(lambda: ViTForImageClassification(config))


def build_bert() -> nn.Module:
    """transformers' BERT for sequence classification, one layer (about 5,200 parameters)."""
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, num_labels=3, initializer_range=INIT_RANGE,
    )  # fmt: skip
    return _seeded(lambda: BertForSequenceClassification(config))


def build_distilbert() -> nn.Module:
    """transformers' DistilBERT for sequence classification, one layer (about 5,200 parameters)."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(
        vocab_size=VOCAB, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=64, num_labels=3,
        initializer_range=INIT_RANGE,
    )  # fmt: skip
    return _seeded(lambda: DistilBertForSequenceClassification(config))


class LSTMClassifier(nn.Module):
    """Token ids -> embedding -> LSTM -> the last step's state -> 4 class logits."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(LSTM_VOCAB, 8)
        self.lstm = nn.LSTM(8, 12, batch_first=True)
        self.head = nn.Linear(12, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        steps, _ = self.lstm(self.embed(tokens))
        return self.head(steps[:, -1])


def build_lstm() -> nn.Module:
    """A torch LSTM text classifier with a dynamic sequence axis (about 1,500 parameters)."""
    return _seeded(LSTMClassifier)


class Prediction(NamedTuple):
    """The tabular model's two outputs: a float score per class and the int64 id of the best one."""

    scores: torch.Tensor
    class_id: torch.Tensor


class TabularModel(nn.Module):
    """float32 features + int64 category ids -> (float32 scores [N, 3], int64 class id [N, 1])."""

    def __init__(self) -> None:
        super().__init__()
        self.categories = nn.Embedding(CATEGORIES, 4)
        self.body = nn.Sequential(nn.Linear(6 + 2 * 4, 16), nn.ReLU(), nn.Linear(16, 3))

    def forward(self, features: torch.Tensor, category_ids: torch.Tensor) -> Prediction:
        mixed = torch.cat([features, self.categories(category_ids).flatten(1)], dim=1)
        scores = self.body(mixed)
        return Prediction(scores=scores, class_id=scores.argmax(dim=1, keepdim=True))


def build_tabular() -> nn.Module:
    """A two-input/two-output model with mixed dtypes (about 400 parameters)."""
    return _seeded(TabularModel)


class BakedLengthClassifier(nn.Module):
    """Built to break: a mean over the sequence that divides by a Python int, which tracing bakes in as a constant."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(LSTM_VOCAB, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(tokens).sum(dim=1) / int(tokens.shape[1]))


def build_baked_length() -> nn.Module:
    """Right in eager mode at every length; exported, right only at the length it was traced at."""
    return _seeded(BakedLengthClassifier)


def _images(rng: np.random.Generator, batch: int, height: int, width: int) -> npt.NDArray[np.float32]:
    return rng.standard_normal((batch, 3, height, width)).astype(np.float32)


def _ids_and_mask(rng: np.random.Generator, batch: int, seq: int) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Token ids with [CLS]-like first tokens and right padding: each row has its own length (at least 1)."""
    ids = rng.integers(1, VOCAB, size=(batch, seq), dtype=np.int64)
    lengths = rng.integers(1, seq + 1, size=batch)
    lengths[0] = seq  # one row without padding, the others padded
    mask = (np.arange(seq)[None, :] < lengths[:, None]).astype(np.int64)
    return np.where(mask == 1, ids, 0), mask


def _feeds_resnet(rng: np.random.Generator, batch: int, sizes: Mapping[str, int]) -> Feeds:
    return {"pixel_values": _images(rng, batch, sizes["height"], sizes["width"])}


def _feeds_vit(rng: np.random.Generator, batch: int, sizes: Mapping[str, int]) -> Feeds:
    return {"pixel_values": _images(rng, batch, 16, 16)}


def _feeds_text(rng: np.random.Generator, batch: int, sizes: Mapping[str, int]) -> Feeds:
    ids, mask = _ids_and_mask(rng, batch, sizes["seq"])
    return {"input_ids": ids, "attention_mask": mask}


def _feeds_lstm(rng: np.random.Generator, batch: int, sizes: Mapping[str, int]) -> Feeds:
    return {"tokens": rng.integers(0, LSTM_VOCAB, size=(batch, sizes["seq"]), dtype=np.int64)}


def _feeds_tabular(rng: np.random.Generator, batch: int, sizes: Mapping[str, int]) -> Feeds:
    return {
        "features": rng.standard_normal((batch, 6)).astype(np.float32),
        "category_ids": rng.integers(0, CATEGORIES, size=(batch, 2), dtype=np.int64),
    }


SEQ_SIZES: tuple[dict[str, int], ...] = ({"seq": 1}, {"seq": 5}, {"seq": 17}, {"seq": 40})


@dataclass(frozen=True)
class ZooModel:
    """One zoo entry: how to build it, declare its inputs, and feed it real-shaped data.

    Attributes:
        name: the model's name in the repository.
        build: a factory with no arguments (also a CLI spec, `zoo_models:<build.__name__>`).
        inputs: the `--input` texts, as a user would type them.
        outputs: the output names the served model must have (the model's own names).
        feeds: real-shaped inputs for a batch size and the sizes of the named dynamic axes.
        sizes: the dynamic-axis sizes the served model is checked at ({} for a static model).
        axes: sizes the parity gate tries per dynamic axis (`--axis`); empty for the gate's default.
        output_flags: the `--output` names, for a model that returns an unnamed tensor; None when it names its own.
    """

    name: str
    build: Callable[[], nn.Module]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    feeds: Callable[[np.random.Generator, int, Mapping[str, int]], Feeds]
    sizes: tuple[dict[str, int], ...] = ({},)
    axes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    output_flags: tuple[str, ...] | None = None

    @property
    def factory(self) -> str:
        """The model's CLI spec."""
        return f"zoo_models:{self.build.__name__}"

    def specs(self) -> list[TensorSpec]:
        """The inputs as tritonforge parses them from the command line."""
        return [parse_tensor_spec(text) for text in self.inputs]


ZOO: tuple[ZooModel, ...] = (
    ZooModel(
        name="resnet",
        build=build_resnet,
        inputs=("pixel_values:3xheightxwidth:float32",),
        outputs=("logits",),
        feeds=_feeds_resnet,
        sizes=({"height": 16, "width": 16}, {"height": 9, "width": 23}, {"height": 40, "width": 32}),
        axes={"height": (8, 16, 40), "width": (9, 20, 41)},
    ),
    ZooModel(
        name="vit",
        build=build_vit,
        inputs=("pixel_values:3x16x16:float32",),
        outputs=("logits",),
        feeds=_feeds_vit,
    ),
    ZooModel(
        name="bert",
        build=build_bert,
        inputs=(f"input_ids:seq:int64:0..{VOCAB - 1}", "attention_mask:seq:int64:0..1"),
        outputs=("logits",),
        feeds=_feeds_text,
        sizes=SEQ_SIZES,
        axes={"seq": (1, 7, 64)},
    ),
    ZooModel(  # declared mask first: forward(input_ids, attention_mask) must still get each by name
        name="distilbert",
        build=build_distilbert,
        inputs=("attention_mask:seq:int64:0..1", f"input_ids:seq:int64:0..{VOCAB - 1}"),
        outputs=("logits",),
        feeds=_feeds_text,
        sizes=SEQ_SIZES,
        axes={"seq": (1, 7, 64)},
    ),
    ZooModel(
        name="lstm",
        build=build_lstm,
        inputs=(f"tokens:seq:int64:0..{LSTM_VOCAB - 1}",),
        outputs=("logits",),
        feeds=_feeds_lstm,
        sizes=SEQ_SIZES,
        output_flags=("logits",),  # forward() returns a bare tensor: the user names it with --output
    ),
    ZooModel(
        name="tabular",
        build=build_tabular,
        inputs=("features:6:float32", f"category_ids:2:int64:0..{CATEGORIES - 1}"),
        outputs=("scores", "class_id"),
        feeds=_feeds_tabular,
    ),
)
ZOO_BY_NAME = {entry.name: entry for entry in ZOO}


def torch_outputs(model: nn.Module, feeds: Mapping[str, npt.NDArray[Any]], names: tuple[str, ...]) -> Feeds:
    """torch's answers, inputs passed by keyword and outputs taken by the model's own names."""
    with torch.no_grad():
        result = model(**{name: torch.from_numpy(array) for name, array in feeds.items()})
    if isinstance(result, torch.Tensor):
        (only,) = names
        return {only: result.numpy()}
    by_name = result._asdict() if isinstance(result, tuple) and hasattr(result, "_fields") else dict(result)
    return {name: by_name[name].numpy() for name in names}
