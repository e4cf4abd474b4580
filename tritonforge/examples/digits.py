"""The `digits` example: a small CNN trained on scikit-learn's bundled 8x8 digits, exported into a Triton repository.

    result = build_digits(repository=Path("model_repository"))
    print(result.test_accuracy, result.exported.version)

The data ships inside scikit-learn (`load_digits`, no download). Pixels are scaled from 0..16 to 0..1 and the images
are shaped N x 1 x 8 x 8 float32, which is what the served model expects. Training is seeded and takes a few seconds.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from tritonforge.errors import ConversionError

if TYPE_CHECKING:
    import torch

    from tritonforge.converters.export import ExportedVersion

_LOGGER = logging.getLogger(__name__)

MODEL_NAME = "digits"
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
MIN_TEST_ACCURACY = 0.97


@dataclass(frozen=True)
class DigitsSplit:
    """The digits data set, split once with a fixed seed (stratified, 25% held out)."""

    x_train: NDArray[np.float32]
    y_train: NDArray[np.int64]
    x_test: NDArray[np.float32]
    y_test: NDArray[np.int64]


@dataclass(frozen=True)
class DigitsBuild:
    """What building the example produced."""

    exported: ExportedVersion
    weights_path: Path
    test_accuracy: float
    torch_test_logits: NDArray[np.float32]
    train_seconds: float


def load_split(*, seed: int = 0, test_fraction: float = 0.25) -> DigitsSplit:
    """Load scikit-learn's digits and split them into train and held-out test sets."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype(np.int64), test_size=test_fraction, random_state=seed, stratify=digits.target
    )
    return DigitsSplit(x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


def build_model() -> torch.nn.Module:
    """Return an untrained digits CNN (the `tritonforge export` factory: `tritonforge.examples.digits:build_model`).

    An `nn.Sequential` whose forward() names its one parameter `image`, the served input's name: the exporter binds
    inputs to forward()'s parameters by name. State-dict keys ("0.weight") and node names ("/0/Conv") are
    nn.Sequential's own.
    """
    from torch import nn

    class DigitsCNN(nn.Sequential):
        def forward(self, image: torch.Tensor) -> torch.Tensor:
            output: torch.Tensor = super().forward(image)  # type: ignore[no-untyped-call]
            return output

    return DigitsCNN(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(1),  # keeps the batch axis dynamic in the exported graph
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def train(split: DigitsSplit, *, epochs: int = 30, seed: int = 0, batch_size: int = 64) -> torch.nn.Module:
    """Train the CNN with Adam on the training split; deterministic for a given seed."""
    import torch

    torch.manual_seed(seed)
    model = build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = torch.from_numpy(split.x_train), torch.from_numpy(split.y_train)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        for idx in torch.split(torch.randperm(len(x), generator=generator), batch_size):
            optimizer.zero_grad()
            loss_fn(model(x[idx]), y[idx]).backward()
            optimizer.step()
    return model.eval()


def predict_logits(model: torch.nn.Module, images: NDArray[np.float32]) -> NDArray[np.float32]:
    """Run the torch model on images (N x 1 x 8 x 8 float32) and return its logits."""
    import torch

    with torch.inference_mode():
        logits: NDArray[np.float32] = model(torch.from_numpy(images)).numpy()
    return logits


def build_digits(
    *,
    repository: Path,
    weights_dir: Path | None = None,
    seed: int = 0,
    epochs: int = 30,
    max_batch_size: int = 64,
    max_queue_delay_us: int = 100,
    overwrite_version: int | None = None,
) -> DigitsBuild:
    """Train the digits CNN, check its held-out accuracy and export it as the next version of `digits`.

    Args:
        repository: the Triton model repository to write into.
        weights_dir: where to save the trained state_dict (default: `<repository>/../build/`).
        seed: seed for the split and training.
        epochs: training epochs.
        max_batch_size: the served model's max_batch_size.
        max_queue_delay_us: dynamic batching queue delay.
        overwrite_version: replace this version instead of adding the next one.

    Returns:
        The exported version, the weights file and the accuracy figures.

    Raises:
        ConversionError: the trained model misses the accuracy floor (the export is not written).
    """
    import torch

    from tritonforge.converters.export import export_to_repository
    from tritonforge.converters.specs import TensorSpec

    split = load_split(seed=seed)
    started = time.perf_counter()
    model = train(split, epochs=epochs, seed=seed)
    train_seconds = time.perf_counter() - started
    logits = predict_logits(model, split.x_test)
    accuracy = float((logits.argmax(axis=1) == split.y_test).mean())
    _LOGGER.info("digits CNN trained in %.1fs, test accuracy %.4f", train_seconds, accuracy)
    if accuracy < MIN_TEST_ACCURACY:
        raise ConversionError(f"digits test accuracy {accuracy:.4f} is below {MIN_TEST_ACCURACY}; not exporting")
    weights_path = (weights_dir or repository.resolve().parent / "build") / "digits_cnn.pt"
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), weights_path)
    exported = export_to_repository(
        model=model,
        inputs=[TensorSpec(name=INPUT_NAME, shape=(1, 8, 8), dtype="float32")],
        output_names=[OUTPUT_NAME],
        repository=repository,
        model_name=MODEL_NAME,
        source=f"tritonforge.examples.digits:build_model (weights {weights_path.name}, seed {seed}, {epochs} epochs)",
        max_batch_size=max_batch_size,
        max_queue_delay_us=max_queue_delay_us,
        version=overwrite_version,
        overwrite=overwrite_version is not None,
    )
    return DigitsBuild(
        exported=exported,
        weights_path=weights_path,
        test_accuracy=accuracy,
        torch_test_logits=logits,
        train_seconds=train_seconds,
    )
