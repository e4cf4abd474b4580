"""Shared test configuration: GPU detection for the gpu marker."""

from __future__ import annotations

import shutil

import pytest


def _has_gpu() -> bool:
    return shutil.which("nvidia-smi") is not None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _has_gpu():
        return
    skip_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU (nvidia-smi not found); run on a GPU node")
    for item in items:
        if item.get_closest_marker("gpu") is not None:  # not `in item.keywords`: that also matches a param id "gpu"
            item.add_marker(skip_gpu)
