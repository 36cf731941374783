"""How ``t5electra serve`` starts, deploys and stops: its Ray, its Serve
application, and the signals that end them.

Ray puts every process it starts (GCS, raylet, workers, replicas) in the
process group of the process that called ``ray.init``. A supervisor that
stops a service by signalling its process group (systemd's default
``KillMode=control-group``, ``kill -TERM -PGID``, a container runtime) then
kills the raylet at once, and the command hangs until its driver gives up on
the cluster. So the command supervises: the server runs in a child process in
a session of its own, with Ray beneath it, and the command relays the first
SIGINT or SIGTERM, wherever it came from, as a request to drain; a second one
stops everything at once. The child also drains when the command dies
(Linux's parent-death signal), so an orphaned server never lingers.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any, TypeVar

import psutil

from t5electra.deployments.names import MODELS
from t5electra.deployments.settings import Settings
from t5electra.server.domain import ModelDescription

from .ray_auth import present_cluster_token

SERVER_CHILD = "T5ELECTRA_SERVER_CHILD"
"""Set in the child's environment: it runs the server instead of supervising."""

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1


def run(argv: list[str], settings: Settings, address: str | None, say: Callable[[str], None]) -> int:
    """What ``t5electra serve`` does once its settings are known.

    With ``address``: deploys onto that cluster and returns, the application
    keeps running there. Without: supervises a server child (``argv`` is the
    command line it re-runs), and in that child starts Ray here, serves until
    a stop signal, then drains."""
    if not address and not is_server_child():
        return supervise(argv, settings, say)
    stop = None if address else StopRequest()
    if address:
        present_cluster_token()
    started = time.monotonic()
    cluster = start(settings, address)
    handles = HandleLoop()
    if stop is not None:
        stop.install()
    say(f"t5electra serving on 0.0.0.0:{settings.port} (gRPC, reflection on) after {time.monotonic() - started:.1f}s")
    models = handles.run(served_models(settings.app_name))
    for label, model in zip(("T5 model:     ", "ELECTRA model:"), models, strict=True):
        say(f"  {label} {model.name} ({model.dtype} on {model.device})")
    say(f"  Ray cluster:   {cluster}")
    if stop is None:
        say(f"  deployed onto the Ray cluster at {address}; it keeps running after this command")
        return 0
    say(f"  metrics:       http://127.0.0.1:{settings.metrics_port}/metrics (Prometheus)")
    say("Ctrl-C or SIGTERM stops it.")
    stop.wait()
    drain_and_stop(settings.app_name, handles, say)
    return 0


def supervise(argv: list[str], settings: Settings, say: Callable[[str], None]) -> int:
    """Runs ``t5electra <argv>`` as the server child and waits for it.

    The first stop signal asks the child to drain (``drain_budget_s``); a
    second one, or a drain that overruns, kills the child's whole session.
    Exit code: the child's (0 after a clean drain), 130 when it was killed."""
    child = subprocess.Popen(
        [sys.executable, "-m", "t5electra.tools.cli", *argv],
        env={**os.environ, SERVER_CHILD: "1"},
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    stops: list[float] = []

    def on_signal(number: int, frame: FrameType | None) -> None:
        stops.append(time.monotonic())
        if len(stops) == 1:
            # SIGINT, not SIGTERM: ray.init replaces the child's SIGTERM
            # handler with one that exits at once, so a stop that arrived
            # while the models load would skip the drain.
            child.send_signal(signal.SIGINT)
        else:
            say("stopping at once")
            _kill_session(child.pid)

    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, on_signal)
    code = None
    while code is None:
        try:
            code = child.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            if stops and time.monotonic() - stops[0] > drain_budget_s(settings):
                say(f"the drain took longer than {drain_budget_s(settings):.0f}s; stopping at once")
                _kill_session(child.pid)
    _kill_session(child.pid)  # whatever of the session outlived the child
    if code == -signal.SIGKILL:
        return 130
    return 128 - code if code < 0 else code  # a shell's convention for a child a signal ended


def drain_budget_s(settings: Settings) -> float:
    """How long a stop may take: the slowest deployment's graceful shutdown,
    plus time for Serve's controller and Ray to stop."""
    slowest = max(settings.t5.graceful_shutdown_timeout_s, settings.electra.graceful_shutdown_timeout_s)
    return max(slowest, settings.ingress.graceful_shutdown_timeout_s) + 15.0


def _die_with_parent() -> None:
    """In the child, before exec: SIGINT (a drain) when the command dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGINT)


def _kill_session(pid: int) -> None:
    """SIGKILL to the child's process group and to every process beneath it:
    Ray's workers run in process groups of their own."""
    try:
        beneath = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        beneath = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for process in beneath:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def is_server_child() -> bool:
    return os.environ.get(SERVER_CHILD) == "1"


def start(settings: Settings, address: str | None) -> str:
    """Starts Ray here (``address`` None) or joins the cluster at
    ``address``, starts Serve's proxies and deploys the application; returns
    the cluster's GCS address."""
    import ray
    from ray import serve

    from t5electra.deployments.app import build_app, configure_ray_environment, grpc_options

    from . import cluster

    configure_ray_environment(settings)
    if address:
        cluster.connect(address)
    else:
        # No dashboard: it costs seconds and memory on a small machine; start
        # Ray yourself (`ray start --head`) and pass --address to have one.
        ray.init(
            namespace="t5electra",
            logging_level=logging.WARNING,
            include_dashboard=False,
            log_to_driver=False,
            _metrics_export_port=settings.metrics_port,
        )
    serve.start(
        proxy_location=settings.proxy_location,
        grpc_options=grpc_options(settings.port),
        http_options={"host": "127.0.0.1", "port": settings.http_port},
    )
    serve.run(build_app(settings), name=settings.app_name, route_prefix=settings.route_prefix)
    # A ray:// client's runtime context has no GCS address; the address given is the answer then.
    return getattr(ray.get_runtime_context(), "gcs_address", None) or address


class HandleLoop:
    """One event loop, on a thread of its own, for every deployment handle
    this process makes. The request-path switches this process set for Ray
    (``ray_serve_env``) run a handle's router on the loop that made it, and
    Serve's shutdown later stops each cached handle's router on that same
    loop: it must still be running then, so it lives as long as the process."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="serve-handles", daemon=True).start()

    def run(self, work: Coroutine[Any, Any, T], timeout_s: float = 120.0) -> T:
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(work, timeout_s), self._loop).result()


async def served_models(app_name: str) -> list[ModelDescription]:
    """What the running replicas say they serve (T5, then ELECTRA): the
    precision and device they resolved from ``auto``, not the settings."""
    from ray import serve

    return [await serve.get_deployment_handle(deployment, app_name).describe.remote() for deployment in MODELS]


class StopRequest:
    """Set by SIGINT or SIGTERM in the server child."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.install()

    def install(self) -> None:
        """Takes SIGINT and SIGTERM (again): ``ray.init`` installs a handler
        of its own for SIGTERM, which ends the process with a stack trace."""
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, lambda *_: self._event.set())

    def wait(self) -> None:
        self._event.wait()


def drain_and_stop(app_name: str, handles: HandleLoop, say: Callable[[str], None]) -> None:
    """Deletes the application (Serve stops routing to its replicas, health
    answers NOT_SERVING, and each replica finishes its requests within its
    ``graceful_shutdown_timeout_s``), then stops Serve and Ray."""
    import ray
    from ray import serve

    started = time.monotonic()
    say("draining...")
    serve.delete(app_name)
    handles.run(serve.shutdown_async())
    ray.shutdown()
    say(f"stopped after {time.monotonic() - started:.1f}s")
