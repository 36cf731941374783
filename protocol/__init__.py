"""The wire API's generated code (``v1``; ``inference``, the Open Inference
Protocol), and its names read from the generated descriptors: the server's
method tables, the authorization table and the clients' retry configuration
all take service and RPC names from here, so none of them is typed by hand
anywhere else."""

from __future__ import annotations

from google.protobuf.descriptor import ServiceDescriptor

from .inference import open_inference_pb2
from .v1 import detection_pb2, generation_pb2, models_pb2


def _service(module: object) -> ServiceDescriptor:
    """The one service a generated ``.proto`` module defines."""
    (service,) = module.DESCRIPTOR.services_by_name.values()  # type: ignore[attr-defined]
    return service


GENERATION = _service(generation_pb2)
DETECTION = _service(detection_pb2)
MODELS = _service(models_pb2)
INFERENCE = _service(open_inference_pb2)
SERVICES: tuple[ServiceDescriptor, ...] = (GENERATION, DETECTION, MODELS)
"""The project's own services (what its clients call and retry)."""
SERVICE_NAMES: tuple[str, ...] = tuple(s.full_name for s in SERVICES)
RPC_NAMES: frozenset[str] = frozenset(m.name for s in (*SERVICES, INFERENCE) for m in s.methods)
"""Every RPC the server answers besides health, by method name (tokens list these)."""
SERVICE_OF_RPC: dict[str, str] = {m.name: s.full_name for s in (*SERVICES, INFERENCE) for m in s.methods}
"""The full name of the service each RPC belongs to (method names are unique across them)."""
