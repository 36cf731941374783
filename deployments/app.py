"""Builds the Serve application from settings.

``build`` is the import path for Ray's own CLI (``serve run``/``serve deploy``
with the YAMLs in this folder, whose ``args`` are the settings);
``build_app`` is what ``t5electra serve`` and the tests call with a
:class:`Settings` already assembled.
"""

from __future__ import annotations

import os
from typing import Any

from ray import serve
from ray.serve import Application
from ray.serve.config import gRPCOptions

from . import names
from .electra_replica import DetectorDeployment
from .ingress import IngressDeployment
from .settings import Settings
from .t5_replica import TextGeneratorDeployment

GRPC_SERVICER_FUNCTIONS = [
    "t5electra.deployments.servicers.add_text_generation",
    "t5electra.deployments.servicers.add_replacement_detection",
    "t5electra.deployments.servicers.add_models",
    "t5electra.deployments.servicers.add_open_inference",
    "grpc_health.v1.health_pb2_grpc.add_HealthServicer_to_server",
]


def configure_ray_environment(settings: Settings) -> None:
    """Environment that Ray's own processes read, for a Ray this process
    starts. Ray's gRPC proxy accepts messages of up to 2 GiB unless
    RAY_SERVE_GRPC_MAX_MESSAGE_SIZE says otherwise; the proxy and controller
    read Serve's switches from their environment too. On a cluster started
    elsewhere these must be set on the nodes (see docs/cluster.md); the replicas get
    the switches through their runtime environment either way."""
    os.environ["RAY_SERVE_GRPC_MAX_MESSAGE_SIZE"] = str(settings.limits.max_request_bytes)
    os.environ.update(settings.serve_switches())


def grpc_options(port: int) -> gRPCOptions:
    return gRPCOptions(port=port, grpc_servicer_functions=GRPC_SERVICER_FUNCTIONS)


def build_app(settings: Settings) -> Application:
    """The three deployments, each a plain class made a Serve deployment
    here (so that tests construct the classes without Ray); every replica's
    environment carries Serve's switches and the tracing configuration
    (``OTEL_*``), so that a cluster started elsewhere traces as this process
    was told to."""
    env = {**settings.serve_switches(), **settings.tracing.environment(os.environ)}
    t5 = serve.deployment(TextGeneratorDeployment, name=names.TEXT_GENERATOR)
    electra = serve.deployment(DetectorDeployment, name=names.DETECTOR)
    ingress = serve.deployment(IngressDeployment, name=names.INGRESS)
    return ingress.options(**settings.ingress.deployment_options(env)).bind(
        t5.options(**settings.t5.deployment_options(env)).bind(settings.t5, settings.limits),
        electra.options(**settings.electra.deployment_options(env)).bind(settings.electra, settings.limits),
        settings,
    )


def build(args: dict[str, Any]) -> Application:
    """Entry point for ``serve run``/``serve deploy``: ``args`` are the YAML's
    application args; environment variables override them."""
    return build_app(Settings.load(yaml_args=args))
