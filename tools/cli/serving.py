"""Serving and the cluster: ``serve``, ``status``, ``shutdown``. Ray is
imported only once a command runs, after the cluster's token is in place."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from t5electra.deployments.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve both models over gRPC with Ray Serve",
        description="Starts Ray (or joins --address), Ray Serve's gRPC proxy and the application. "
        "Settings come from defaults < --config YAML < T5ELECTRA_* environment < these flags.",
    )
    serve.add_argument("--port", type=int, help="gRPC port (default 9000)")
    serve.add_argument("--t5-model", metavar="ID_OR_PATH", help="T5-family checkpoint (default: embedded tiny-t5)")
    serve.add_argument(
        "--electra-model", metavar="ID_OR_PATH", help="ELECTRA discriminator (default: embedded tiny-electra)"
    )
    serve.add_argument(
        "--electra-generator",
        metavar="ID_OR_PATH",
        help="ELECTRA generator for DetectReplacements suggestions: a hub id or path, 'embedded' for the "
        "embedded tiny one, or 'none' (suggestions off); default: the embedded one with the embedded "
        "discriminator, none with another",
    )
    serve.add_argument(
        "--front",
        choices=("proxy", "haproxy"),
        help="what answers on the port: Ray Serve's Python gRPC proxy (default) or HAProxy in front of each "
        "ingress replica's own gRPC server (no Python proxy on the request path; docs/operations.md)",
    )
    serve.add_argument("--config", type=Path, help="Serve config YAML (e.g. deployments/gpu.yaml)")
    serve.add_argument(
        "--address",
        help="existing Ray cluster (auto, HOST:PORT of its GCS, or ray://HOST:10001); deploy and return. "
        "The cluster's token is presented when RAY_AUTH_MODE=token, RAY_AUTH_TOKEN or ~/.ray/auth_token says so",
    )
    serve.set_defaults(run=_serve)

    status = commands.add_parser(
        "status",
        help="show a Ray cluster's nodes, applications, deployments and where each replica runs",
        description="Joins the Ray cluster at --address as a driver and prints its nodes (alive or dead, "
        "resources, proxy) and, for every Serve application, each deployment's status and replicas with the "
        "node each runs on. Works against a cluster started by `ray start` and against the Ray of a "
        "running `t5electra serve`.",
    )
    _cluster_flags(status)
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    status.set_defaults(run=_status)

    shutdown = commands.add_parser(
        "shutdown",
        help="remove the application from a Ray cluster",
        description="Deletes the Serve application (replicas finish their requests first, within Serve's "
        "graceful shutdown timeout); --all also stops Ray Serve's controller and proxies. The Ray cluster "
        "itself keeps running.",
    )
    _cluster_flags(shutdown)
    shutdown.add_argument("--app", default="t5electra", help="application name (t5electra)")
    shutdown.add_argument("--all", action="store_true", help="every application and Ray Serve itself")
    shutdown.set_defaults(run=_shutdown)


def _cluster_flags(command: argparse.ArgumentParser) -> None:
    command.add_argument("--address", default="auto", help="Ray cluster (auto, HOST:PORT or ray://HOST:PORT)")


def _serve(args: argparse.Namespace) -> int:
    from t5electra.tools.serving import lifecycle

    overrides: dict[str, Any] = {"port": args.port, "front": args.front}
    if args.t5_model:
        overrides["t5"] = {"model": args.t5_model}
    electra = {"model": args.electra_model, "generator_model": args.electra_generator}
    if any(electra.values()):
        overrides["electra"] = {k: v for k, v in electra.items() if v}
    settings = Settings.load(args.config, **overrides)
    try:
        return lifecycle.run(args.argv, settings, args.address, _say)
    except ConnectionError as error:
        print(f"error: no Ray cluster at {args.address}: {error}", file=sys.stderr)
        return 2


def _say(line: str) -> None:
    print(line, flush=True)


def _join_cluster(address: str) -> bool:
    """Joins the cluster at ``address``; False (and a message) when none answers."""
    from t5electra.tools.serving.ray_auth import present_cluster_token

    present_cluster_token()
    from t5electra.tools.serving import cluster

    try:
        cluster.connect(address)
    except ConnectionError as error:
        print(f"error: no Ray cluster at {address}: {error}", file=sys.stderr)
        return False
    return True


def _status(args: argparse.Namespace) -> int:
    answer = _answer_only_on_stdout() if args.json else sys.stdout
    if not _join_cluster(args.address):
        return 2
    from t5electra.tools.serving import cluster

    status = cluster.read_status(args.address)
    print(json.dumps(status.to_json(), indent=2) if args.json else status.table(), file=answer, flush=True)
    return 0


def _answer_only_on_stdout() -> TextIO:
    """The real stdout, for the answer; everything else written to file
    descriptor 1 from now on, such as what Ray's core prints when a node
    dies or at exit, goes to stderr, so ``--json`` stays one JSON document."""
    sys.stdout.flush()
    answer = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return answer


def _shutdown(args: argparse.Namespace) -> int:
    if not _join_cluster(args.address):
        return 2
    from ray.serve.exceptions import RayServeException

    from t5electra.tools.serving import cluster

    try:
        removed = cluster.shutdown(None if args.all else args.app)
    except (LookupError, RayServeException) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    what = "Ray Serve shut down" if args.all else "application deleted"
    print(f"{what}: {', '.join(removed) or 'no applications were running'}")
    return 0
