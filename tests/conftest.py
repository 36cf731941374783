"""Shared fixtures: the embedded checkpoints loaded once, and one real Ray
Serve application for the whole session (Ray takes seconds to start on two
cores, so every integration test shares it)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
import torch

from t5electra.server.detector import ReplacementDetector
from t5electra.server.generator import T5Generator
from t5electra.server.settings import TINY_ELECTRA, TINY_T5

# Two cores: keep torch from oversubscribing them when Ray replicas run too.
torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def generator() -> T5Generator:
    return T5Generator(TINY_T5)


@pytest.fixture(scope="session")
def detector() -> ReplacementDetector:
    return ReplacementDetector(TINY_ELECTRA)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def server() -> Iterator[object]:
    """The session's Ray Serve application (``serving.ServerUnderTest``),
    started by the first test that asks for it."""
    from serving import ServerUnderTest

    with ServerUnderTest.start() as running:
        yield running
