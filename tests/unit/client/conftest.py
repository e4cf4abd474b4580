"""Fixtures for the client tests: a fake tritonclient transport and a clean TRITONFORGE_CLIENT_* environment."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest
from client_fakes import AsyncFakeTriton, FakeTriton

from tritonforge.client import ClientSettings


@pytest.fixture
def fake() -> FakeTriton:
    return FakeTriton()


@pytest.fixture
def factory(fake: FakeTriton) -> Callable[[ClientSettings], FakeTriton]:
    def build(settings: ClientSettings) -> FakeTriton:
        fake.settings = settings
        return fake

    return build


@pytest.fixture
def async_factory(fake: FakeTriton) -> Callable[[ClientSettings], AsyncFakeTriton]:
    def build(settings: ClientSettings) -> AsyncFakeTriton:
        fake.settings = settings
        return AsyncFakeTriton(fake)

    return build


@pytest.fixture(autouse=True)
def _clean_client_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read TRITONFORGE_CLIENT_* variables; a developer's shell must not change test outcomes."""
    for name in list(os.environ):
        if name.startswith("TRITONFORGE_CLIENT_"):
            monkeypatch.delenv(name)
