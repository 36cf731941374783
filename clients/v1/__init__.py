"""The generated stubs of ``t5electra.v1``, as clients have always imported
them (``from t5electra.clients.v1 import generation_pb2``). They live in
``t5electra.protocol.v1``, which the server imports too; these names are
the very same modules, registered under this package as well."""

import sys

from t5electra.protocol.v1 import (
    detection_pb2,
    detection_pb2_grpc,
    generation_pb2,
    generation_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
)

for _module in (detection_pb2, detection_pb2_grpc, generation_pb2, generation_pb2_grpc, models_pb2, models_pb2_grpc):
    sys.modules[f"{__name__}.{_module.__name__.rsplit('.', 1)[1]}"] = _module

__all__ = [
    "detection_pb2",
    "detection_pb2_grpc",
    "generation_pb2",
    "generation_pb2_grpc",
    "models_pb2",
    "models_pb2_grpc",
]
