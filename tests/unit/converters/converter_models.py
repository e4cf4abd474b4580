"""Tiny models, ONNX graphs and a tree snapshot for the converter tests (CLI spec: `converter_models:<factory>`)."""

from __future__ import annotations

from pathlib import Path

import onnx
import torch
from onnx import TensorProto, helper
from torch import nn


class TinyCNN(nn.Module):
    """An 8x8 digits-shaped CNN that keeps the batch axis dynamic (flatten(1))."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(image)).flatten(1))


class BakedBatchCNN(TinyCNN):
    """Runs in eager mode at any batch, but tracing turns int(x.size(0)) into a constant Reshape size."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.conv(image))
        return self.head(features.reshape(int(features.size(0)), -1))


class BatchOneCNN(TinyCNN):
    """Only works at batch 1: reshape(1, -1) folds the batch into the features."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(image)).reshape(1, -1))


class TwoHeads(nn.Module):
    """Two inputs of different dtypes, a dict of two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 4)
        self.proj = nn.Linear(3, 4)

    def forward(self, ids: torch.Tensor, features: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = self.embed(ids).mean(1) + self.proj(features)
        return {"scores": pooled, "best": pooled.argmax(1)}


class SvdModel(nn.Module):
    """Uses linalg.svd, which the TorchScript ONNX exporter cannot translate at opset 17."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svd(x)[1]


class TokenPool(nn.Module):
    """A two-input text model: ids and mask play different roles, so binding them by position under swapped names
    gives different outputs on real data (ids in 0..99, a 0/1 mask)."""

    def __init__(self, vocab: int = 100) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 8)
        self.head = nn.Linear(8, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        weights = attention_mask.unsqueeze(-1).to(torch.float32)
        pooled = (self.embed(input_ids) * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return self.head(pooled)


class BakedLength(TokenPool):
    """Eager torch runs at any length, but int(input_ids.shape[1]) becomes a constant in the traced Reshape."""

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.embed(input_ids) * attention_mask.unsqueeze(-1).to(torch.float32)
        flat = hidden.reshape(-1, int(input_ids.shape[1]) * 8)
        return self.head(flat.reshape(flat.size(0), -1, 8).mean(1))


def token_pool() -> nn.Module:
    torch.manual_seed(0)
    return TokenPool()


def baked_length() -> nn.Module:
    torch.manual_seed(0)
    return BakedLength()


def tiny_cnn() -> nn.Module:
    torch.manual_seed(0)
    return TinyCNN()


def baked_batch_cnn() -> nn.Module:
    torch.manual_seed(0)
    return BakedBatchCNN()


def not_a_module() -> str:
    return "not a module"


def identity_onnx(
    path: Path,
    *,
    inputs: list[tuple[str, list[int | str], int]],
    outputs: list[tuple[str, list[int | str], int]] | None = None,
) -> Path:
    """Write an ONNX graph whose outputs are Identity copies of its inputs (str dims are symbolic)."""
    outputs = outputs or [(f"out_{name}", dims, elem) for name, dims, elem in inputs]
    nodes = [
        helper.make_node("Identity", [name], [out_name])
        for (name, _, _), (out_name, _, _) in zip(inputs, outputs, strict=True)
    ]
    graph = helper.make_graph(
        nodes,
        "identity",
        [helper.make_tensor_value_info(name, elem, dims) for name, dims, elem in inputs],
        [helper.make_tensor_value_info(name, elem, dims) for name, dims, elem in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` with its bytes (None for folders): equal snapshots mean an unchanged tree."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


FP32 = TensorProto.FLOAT
INT64 = TensorProto.INT64
