"""A Ray cluster of separate nodes on this machine, started with Ray's own
``ray start`` as a user would, for the multi-node tests.

Each node runs in its own session (``start_new_session``), so losing a node
can be played for real: SIGKILL to every process of that session (its
raylet, agents and the replicas it hosts), as when a machine dies. The
pytest process never joins the cluster; it drives it through the
``t5electra`` and ``serve`` commands and calls it over gRPC.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from t5electra.deployments.names import INGRESS, MODELS
from t5electra.tools.bench.processes import free_port

from . import REPOSITORY

BIN = Path(sys.executable).parent
CPU_CONFIG = REPOSITORY / "deployments" / "local-cpu.yaml"


@dataclass
class RayNode:
    name: str
    process: subprocess.Popen
    log: Path

    def processes(self) -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter():
            try:
                if os.getsid(process.pid) == self.process.pid:
                    found.append(process)
            except (ProcessLookupError, psutil.Error):
                continue
        return found

    def kill(self) -> int:
        """SIGKILL to every process of the node; returns how many there were."""
        victims = self.processes()
        for process in victims:
            try:
                process.send_signal(signal.SIGKILL)
            except psutil.Error:
                continue
        psutil.wait_procs(victims, timeout=10)
        return len(victims)


@dataclass
class LocalCluster:
    """A head node with the dashboard (``serve deploy`` talks to it) and any
    number of worker nodes, each with 2 logical CPUs and a custom resource
    naming it. Every port is a free one on this machine."""

    workdir: Path
    gcs_port: int = field(default_factory=free_port)
    dashboard_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    nodes: list[RayNode] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The cluster's own token, so that nothing depends on ~/.ray.
        token = self.workdir / "auth_token"
        token.write_text(secrets.token_hex(32))
        self.env = {
            **os.environ,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
            "RAY_ENABLE_AUTO_CONNECT": "0",
            "RAY_USAGE_STATS_ENABLED": "0",
        }

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def grpc_address(self) -> str:
        """The application's gRPC endpoint, once deployed with ``grpc_port``."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def start_head(self, resources: dict[str, float]) -> RayNode:
        return self._start(
            "head",
            [
                "--head",
                f"--port={self.gcs_port}",
                "--include-dashboard=true",
                "--dashboard-host=127.0.0.1",
                f"--dashboard-port={self.dashboard_port}",
                f"--ray-client-server-port={free_port()}",
            ],
            resources,
        )

    def add_worker(self, name: str, resources: dict[str, float]) -> RayNode:
        return self._start(name, [f"--address={self.address}"], resources)

    def _start(self, name: str, flags: list[str], resources: dict[str, float], timeout: float = 120) -> RayNode:
        log = self.workdir / f"{name}.log"
        command = [
            str(BIN / "ray"),
            "start",
            "--block",
            *flags,
            "--num-cpus=2",
            "--num-gpus=0",
            f"--resources={json.dumps(resources)}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--metrics-export-port={free_port()}",
            f"--temp-dir={self.workdir / 'ray'}",
            "--disable-usage-stats",
        ]
        with log.open("w") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=self.env, start_new_session=True, cwd=self.workdir
            )
        node = RayNode(name, process, log)
        self.nodes.append(node)
        deadline = time.monotonic() + timeout
        while "Ray runtime started" not in log.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ray node {name} did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        return node

    def close(self) -> None:
        for node in reversed(self.nodes):
            node.kill()

    def t5electra(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """The ``t5electra`` command against this cluster. RAY_AUTH_MODE is
        left unset: the command must find the token by itself."""
        env = {k: v for k, v in self.env.items() if k != "RAY_AUTH_MODE"}
        return subprocess.run(
            [str(BIN / "t5electra"), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            cwd=self.workdir,
        )

    def ray_cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """Ray's own ``ray`` command, pointed at the head."""
        return subprocess.run(
            [str(BIN / "ray"), *args, f"--address={self.address}"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            cwd=self.workdir,
        )

    def serve_cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
        """Ray's own ``serve`` command, pointed at the head's dashboard."""
        return subprocess.run(
            [str(BIN / "serve"), *args, f"--address={self.dashboard}"],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            cwd=self.workdir,
        )

    def status(self) -> dict[str, Any]:
        result = self.t5electra("status", "--address", self.address, "--json")
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout)

    def wait_for(self, condition: Callable[[dict[str, Any]], bool], what: str, timeout: float = 300) -> dict:
        """Polls ``t5electra status --json`` until ``condition`` holds. A
        status command that fails (the cluster is losing a node) is polled
        again; the last failure or status is in the timeout's message."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            result = self.t5electra("status", "--address", self.address, "--json")
            if result.returncode == 0:
                status = json.loads(result.stdout)
                if condition(status):
                    return status
                last = json.dumps(status, indent=1)
            else:
                last = f"t5electra status exited {result.returncode}:\n{result.stderr}"
            time.sleep(1)
        raise TimeoutError(f"not {what} after {timeout}s; last seen:\n{last[-4000:]}")


def serve_config(path: Path, grpc_port: int, http_port: int, args: dict[str, Any] | None = None) -> dict:
    """A shipped Serve config with this cluster's ports. All nodes share one
    machine here, so only the head runs a proxy (on separate machines
    every node would, each on the same port); ``args`` replace or extend
    the application's settings, one level deep per section."""
    config = yaml.safe_load(path.read_text())
    config["proxy_location"] = "HeadOnly"
    config["grpc_options"]["port"] = grpc_port
    config["http_options"]["port"] = http_port
    application = config["applications"][0]
    for section, values in (args or {}).items():
        application["args"].setdefault(section, {}).update(values)
    return config


def deployment(status: dict[str, Any], app: str, name: str) -> dict[str, Any] | None:
    for application in status["applications"]:
        if application["name"] == app:
            return next((d for d in application["deployments"] if d["name"] == name), None)
    return None


def running_nodes(status: dict[str, Any], app: str, name: str) -> list[str]:
    """The nodes of the running replicas of a deployment, one entry per replica."""
    found = deployment(status, app, name)
    return [r["node_id"] for r in (found or {}).get("replicas", []) if r["state"] == "RUNNING"]


def spread(status: dict, app: str, nodes: int) -> bool:
    """Both models of ``app`` with two running replicas on ``nodes``
    distinct live nodes, and its ingress running on the head."""
    alive = {n["node_id"] for n in status["nodes"] if n["alive"]}
    head = {n["node_id"] for n in status["nodes"] if n["head"]}
    for name in MODELS:
        placed = running_nodes(status, app, name)
        if len(placed) != 2 or len(set(placed) & alive) != nodes:
            return False
    return bool(running_nodes(status, app, INGRESS)) and set(running_nodes(status, app, INGRESS)) <= head


def node_id(status: dict, head: bool) -> str:
    """The first live node's id, the head's or a worker's."""
    return next(n["node_id"] for n in status["nodes"] if n["alive"] and n["head"] == head)
