"""Builds the Serve application from settings.

``build`` is the import path for Ray's own CLI (``serve run``/``serve deploy``
with the YAMLs in this folder, whose ``args`` are the settings);
``build_app`` is what ``t5electra serve`` and the tests call with a
:class:`Settings` already assembled.
"""

from __future__ import annotations

import os
from typing import Any

from ray.serve import Application
from ray.serve.config import gRPCOptions

from t5electra.server.settings import ModelDeployment, Settings

from .ingress import Ingress
from .models import Detector, TextGenerator

GRPC_SERVICER_FUNCTIONS = [
    "t5electra.deployments.servicers.add_text_generation",
    "t5electra.deployments.servicers.add_replacement_detection",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
]


def limit_proxy_messages(settings: Settings) -> None:
    """Ray's gRPC proxy accepts messages of up to 2 GiB unless
    RAY_SERVE_GRPC_MAX_MESSAGE_SIZE says otherwise; the proxy reads it from
    its own environment. A Ray started by this process inherits it; on a
    cluster started elsewhere it must be set on the nodes (see README)."""
    os.environ["RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"] = str(settings.limits.max_request_bytes)


def grpc_options(port: int) -> gRPCOptions:
    return gRPCOptions(port=port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS)


def _model_options(settings: ModelDeployment) -> dict[str, Any]:
    return {
        "autoscaling_config": settings.autoscaling.to_serve(),
        "max_ongoing_requests": settings.max_ongoing_requests,
        "max_queued_requests": settings.max_queued_requests,
        "ray_actor_options": settings.ray_actor_options(),
        "logging_config": {"enable_access_log": False},
        **settings.placement_options(),
    }


def build_app(settings: Settings) -> Application:
    t5 = TextGenerator.options(**_model_options(settings.t5)).bind(settings.t5, settings.limits)
    electra = Detector.options(**_model_options(settings.electra)).bind(settings.electra, settings.limits)
    ingress = settings.ingress
    return Ingress.options(
        autoscaling_config=ingress.autoscaling(),
        max_ongoing_requests=ingress.max_ongoing_requests,
        max_queued_requests=ingress.max_queued_requests,
        ray_actor_options=ingress.ray_actor_options(),
        logging_config={"enable_access_log": False},
        **ingress.placement_options(),
    ).bind(t5, electra, settings)


def build(args: dict[str, Any]) -> Application:
    """Entry point for ``serve run``/``serve deploy``: ``args`` are the YAML's
    application args; environment variables override them."""
    return build_app(Settings.load(yaml_args=args))
