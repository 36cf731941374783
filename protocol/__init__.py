"""The wire API's generated code (``v1``), and its names read from the
generated descriptors: the server's method tables, the authorization table
and the clients' retry configuration all take service and RPC names from
here, so none of them is typed by hand anywhere else."""

from __future__ import annotations

from google.protobuf.descriptor import ServiceDescriptor

from .v1 import detection_pb2, generation_pb2, models_pb2


def _service(module: object) -> ServiceDescriptor:
    """The one service a generated ``.proto`` module defines."""
    (service,) = module.DESCRIPTOR.services_by_name.values()  # type: ignore[attr-defined]
    return service


GENERATION = _service(generation_pb2)
DETECTION = _service(detection_pb2)
MODELS = _service(models_pb2)
SERVICES: tuple[ServiceDescriptor, ...] = (GENERATION, DETECTION, MODELS)
SERVICE_NAMES: tuple[str, ...] = tuple(s.full_name for s in SERVICES)
RPC_NAMES: frozenset[str] = frozenset(m.name for s in SERVICES for m in s.methods)
"""Every RPC of the project's services, by method name."""
