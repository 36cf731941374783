"""Shared fixtures: the embedded checkpoints loaded once, and one real Ray
Serve application for the whole session (Ray takes seconds to start on two
cores, so every integration test shares it); and the rule that every test
has a tier (unit, serve or system)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import torch

from t5electra.server.detector import ReplacementDetector
from t5electra.server.embedded import TINY_ELECTRA, TINY_T5
from t5electra.server.generator import T5Generator

# Two cores: keep torch from oversubscribing them when Ray replicas run too.
torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


TIERS = {"unit", "serve", "system"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test belongs to exactly one tier, so that `pytest -m unit` is
    the whole inner loop and nothing slips out of every tier."""
    for item in items:
        tiers = TIERS & {mark.name for mark in item.iter_markers()}
        if len(tiers) != 1:
            raise pytest.UsageError(f"{item.nodeid}: needs exactly one of the markers {sorted(TIERS)}, has {tiers}")


@pytest.fixture(scope="session")
def generator() -> T5Generator:
    return T5Generator(TINY_T5)


@pytest.fixture(scope="session")
def detector() -> ReplacementDetector:
    return ReplacementDetector(TINY_ELECTRA)


@pytest.fixture(scope="session")
def float32_quality(generator: T5Generator, detector: ReplacementDetector) -> object:
    """The embedded checkpoints' held-out quality at float32 (``support.quality.Quality``)."""
    from support.quality import measure

    return measure(generator, detector)


@pytest.fixture(scope="session")
def server() -> Iterator[object]:
    """The session's Ray Serve application (``serving.ServerUnderTest``),
    started by the first test that asks for it."""
    from support.serving import ServerUnderTest

    with ServerUnderTest.start() as running:
        yield running
