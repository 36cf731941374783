"""The checked-in stubs are what the protos generate today."""

from __future__ import annotations

from pathlib import Path

import pytest

import t5electra.protocol.inference
import t5electra.protocol.v1
from t5electra.protocol import codegen

from support import REPOSITORY

pytestmark = pytest.mark.unit

PROTO_ROOT = REPOSITORY / "protos"
INSTALLED_STUBS = Path(t5electra.protocol.v1.__file__).parent


def test_checked_in_stubs_are_current(tmp_path: Path) -> None:
    fresh = codegen.generate(PROTO_ROOT, tmp_path)
    assert fresh, "no stubs generated"
    stale = [p.name for p in fresh if p.read_text() != (INSTALLED_STUBS / p.name).read_text()]
    assert not stale, f"stale stubs {stale}: run `python -m t5electra.protocol.codegen`"
    generated = {p.name for p in fresh}
    checked_in = {p.name for p in INSTALLED_STUBS.glob("*_pb2*.py*")}
    assert checked_in == generated


def test_checked_in_open_inference_stubs_are_current(tmp_path: Path) -> None:
    installed = Path(t5electra.protocol.inference.__file__).parent
    fresh = codegen.generate(PROTO_ROOT, tmp_path, codegen.INFERENCE)
    assert {p.name for p in fresh} == {p.name for p in installed.glob("*_pb2*.py*")}
    stale = [p.name for p in fresh if p.read_text() != (installed / p.name).read_text()]
    assert not stale, f"stale stubs {stale}: run `python -m t5electra.protocol.codegen`"


def test_stubs_import_as_a_subpackage() -> None:
    from t5electra.protocol.v1 import detection_pb2_grpc, generation_pb2, generation_pb2_grpc

    assert generation_pb2.GenerateRequest.__module__ == "t5electra.protocol.v1.generation_pb2"
    assert hasattr(generation_pb2_grpc, "TextGenerationStub")
    assert hasattr(detection_pb2_grpc, "add_ReplacementDetectionServicer_to_server")


def test_clients_keep_importing_the_stubs_from_their_old_home() -> None:
    """Clients written against ``t5electra.clients.v1`` get the very same
    modules the server uses, by attribute and by submodule import."""
    import t5electra.clients.v1.generation_pb2 as by_path
    from t5electra.clients.v1 import detection_pb2_grpc, generation_pb2, generation_pb2_grpc
    from t5electra.protocol.v1 import generation_pb2 as neutral

    assert generation_pb2 is neutral is by_path
    assert hasattr(generation_pb2_grpc, "TextGenerationStub")
    assert hasattr(detection_pb2_grpc, "add_ReplacementDetectionServicer_to_server")
