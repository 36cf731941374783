"""``t5electra soak``: mixed traffic for a set time against a real
``t5electra serve`` it starts itself, with faults injected on a schedule —
model replicas killed with SIGKILL, overload bursts — and an account of what
happened to every request.

A request is *answered* when it ends with a status, success or error. A
request is *lost* when it was sent and never answered by its deadline
(the client's DEADLINE_EXCEEDED or still pending at the end): the server took
it and dropped it. Refusals (UNAVAILABLE, RESOURCE_EXHAUSTED) are answers; a
client would retry them.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from t5electra.deployments.names import MODELS
from t5electra.tools.load.report import Sample, percentile, shown
from t5electra.tools.load.run import send_one
from t5electra.tools.load.workload import DETECTION_TEXTS, GENERATION_PROMPTS, LoadConfig

from .processes import SERVE_READY, free_port, serving_memory_mb, started_process


@dataclass(frozen=True)
class SoakConfig:
    duration: float = 600.0
    rate: float = 8.0
    burst_every: float = 90.0
    burst_seconds: float = 10.0
    burst_factor: float = 4.0
    kill_every: float = 120.0
    rollout_every: float = 0.0  # 0: no rollouts
    timeout: float = 30.0
    mix: tuple[tuple[str, float], ...] = (("generate", 0.4), ("generate-stream", 0.3), ("detect", 0.3))
    seed: int = 0


@dataclass
class Faults:
    kills: list[dict[str, Any]] = field(default_factory=list)
    kill_errors: list[str] = field(default_factory=list)
    rollouts: list[dict[str, Any]] = field(default_factory=list)
    bursts: list[tuple[float, float]] = field(default_factory=list)

    def in_burst(self, moment: float) -> bool:
        return any(start <= moment < end for start, end in self.bursts)


class ReplicaKiller:
    """Kills a model replica's process on a schedule and waits for Serve to
    start its replacement, from a thread so that traffic never pauses."""

    def __init__(self, app_name: str, every: float, stop: threading.Event, rng: random.Random) -> None:
        self._app, self._every, self._stop, self._rng = app_name, every, stop, rng
        self.faults = Faults()

    def _pid(self, deployment: str) -> int:
        from ray import serve

        return serve.get_deployment_handle(deployment, self._app).info.remote().result(timeout_s=60)["pid"]

    def run(self) -> None:
        """The thread's body; the process must already be connected to Ray."""
        while not self._stop.wait(self._every):
            deployment = self._rng.choice(MODELS)
            try:
                victim = self._pid(deployment)
            except Exception as error:  # reported, and the next kill is tried
                self.faults.kill_errors.append(f"{deployment}: could not find the replica: {error!r}"[:300])
                continue
            killed = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            replaced = None
            while replaced is None and time.monotonic() - killed < 180:
                try:
                    if self._pid(deployment) != victim:
                        replaced = time.monotonic() - killed
                except Exception:  # the handle fails while no replica runs
                    time.sleep(0.5)
            self.faults.kills.append(
                {"deployment": deployment, "pid": victim, "replaced_after_s": replaced and round(replaced, 1)}
            )


class Rollouts:
    """Redeploys the application with a changed configuration on a schedule,
    as an operator does with ``t5electra serve --address``: T5's batch size
    alternates, which replaces every T5 replica and the ingress."""

    def __init__(self, gcs: str, env: dict[str, str], every: float, stop: threading.Event, faults: Faults) -> None:
        self._gcs, self._env, self._every, self._stop, self._faults = gcs, env, every, stop, faults

    def run(self) -> None:
        batch = 16
        while not self._stop.wait(self._every):
            batch = 15 if batch == 16 else 16
            started = time.monotonic()
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "t5electra.tools.cli", "serve", "--address", self._gcs],
                    capture_output=True,
                    text=True,
                    env={**os.environ, **self._env, "T5ELECTRA_T5__MAX_BATCH_SIZE": str(batch)},
                    timeout=300,
                )
                ok, error = done.returncode == 0, done.stderr[-300:] if done.returncode else ""
            except (subprocess.TimeoutExpired, OSError) as failure:
                # Recorded as a failed rollout; the schedule goes on.
                ok, error = False, str(failure)
            self._faults.rollouts.append(
                {
                    "t5_max_batch_size": batch,
                    "seconds": round(time.monotonic() - started, 1),
                    "ok": ok,
                    "error": error,
                }
            )


async def _traffic(address: str, config: SoakConfig, faults: Faults) -> list[Sample]:
    """Open-loop Poisson arrivals at ``rate``, ``burst_factor`` times that
    during bursts; every request gets ``timeout`` as its deadline."""
    from t5electra.clients.aio import AsyncClient
    from t5electra.clients.options import NO_RETRY

    rng = random.Random(config.seed)
    rpcs, weights = zip(*config.mix, strict=True)
    samples: list[Sample] = []
    pending: set[asyncio.Task] = set()
    async with AsyncClient(address, timeout=config.timeout, retry=NO_RETRY) as client:
        origin = time.perf_counter()
        in_burst_until = 0.0
        next_burst = config.burst_every

        async def one(rpc: str) -> None:
            load = LoadConfig(address, rpc=rpc, timeout=config.timeout)  # type: ignore[arg-type]
            text = rng.choice(DETECTION_TEXTS if rpc == "detect" else GENERATION_PROMPTS)
            samples.append(await send_one(client, load, text, origin))

        while (now := time.perf_counter() - origin) < config.duration:
            if now >= next_burst:
                in_burst_until, next_burst = now + config.burst_seconds, next_burst + config.burst_every
                faults.bursts.append((now, in_burst_until))
            rate = config.rate * (config.burst_factor if now < in_burst_until else 1.0)
            task = asyncio.create_task(one(rng.choices(rpcs, weights)[0]))
            pending.add(task)
            task.add_done_callback(pending.discard)
            await asyncio.sleep(rng.expovariate(rate))
        if pending:
            _, unfinished = await asyncio.wait(set(pending), timeout=config.timeout + 10)
            for task in unfinished:
                task.cancel()
                samples.append(Sample(0.0, 0.0, "NEVER_ANSWERED"))
    return samples


def run(config: SoakConfig, workdir: Path, say=print) -> dict[str, Any]:
    """Starts a server, soaks it, stops it; returns the account as a dict."""
    # The server's local Ray enables token authentication (Ray's default for
    # a new cluster, unless RAY_AUTH_MODE, which this process then shares,
    # says otherwise); joining it, this process must present the token, and
    # Ray reads the mode when it is imported. Once this process leaves the
    # cluster, Serve's handle threads must not start a Ray of their own.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ["RAY_ENABLE_AUTO_CONNECT"] = "0"
    # The replica killer calls handles from a plain thread, which needs
    # Serve's router in a loop of its own, whatever switches this process
    # inherited from a server's environment (the server sets its own).
    os.environ["RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP"] = "1"
    import ray

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {
        "T5ELECTRA_PORT": str(port),
        "T5ELECTRA_HTTP_PORT": str(free_port()),
        "T5ELECTRA_METRICS_PORT": str(free_port()),
    }
    command = [sys.executable, "-m", "t5electra.tools.cli", "serve"]
    log = workdir / "serve.log"
    with started_process("t5electra serve", command, SERVE_READY, log, env) as server:
        gcs = next(line.split()[-1] for line in log.read_text().splitlines() if "Ray cluster:" in line)
        say(f"server up after {server.seconds:.1f} s; soaking for {config.duration:.0f} s at {config.rate}/s")
        memory_start = serving_memory_mb(server.pid)
        ray.init(address=gcs, namespace="t5electra", logging_level="ERROR", log_to_driver=False)
        stop = threading.Event()
        killer = ReplicaKiller("t5electra", config.kill_every, stop, random.Random(config.seed))
        threads = [threading.Thread(target=killer.run, daemon=True)]
        if config.rollout_every:
            rollouts = Rollouts(gcs, env, config.rollout_every, stop, killer.faults)
            threads.append(threading.Thread(target=rollouts.run, daemon=True))
        for thread in threads:
            thread.start()
        try:
            samples = asyncio.run(_traffic(f"127.0.0.1:{port}", config, killer.faults))
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=300)
            ray.shutdown()
        memory_end = serving_memory_mb(server.pid)
    return _account(config, samples, killer.faults, (memory_start, memory_end))


def _latency(chosen: list[Sample]) -> dict[str, float | None]:
    values = [s.latency * 1000 for s in chosen]
    p50, p99 = percentile(values, 50), percentile(values, 99)
    return {
        "requests": len(values),
        "p50": None if p50 is None else round(p50, 1),
        "p99": None if p99 is None else round(p99, 1),
    }


def _account(
    config: SoakConfig, samples: list[Sample], faults: Faults, memory_mb: tuple[float, float]
) -> dict[str, Any]:
    """The soak's figures: every request by code, the faults made, latency
    in and out of the bursts that followed them, memory at start and end."""
    codes = Counter(s.code for s in samples)
    lost = codes.get("DEADLINE_EXCEEDED", 0) + codes.get("NEVER_ANSWERED", 0)
    answered_ok = [s for s in samples if s.code == "OK"]
    return {
        "config": asdict(config),
        "requests": len(samples),
        "by_code": dict(sorted(codes.items())),
        "answered": len(samples) - lost,
        "lost": lost,
        "replica_kills": faults.kills,
        "replica_kill_errors": faults.kill_errors,
        "rollouts": faults.rollouts,
        "replicas_restarted": sum(k["replaced_after_s"] is not None for k in faults.kills),
        "bursts": len(faults.bursts),
        "ok_latency_ms": {
            "steady": _latency([s for s in answered_ok if not faults.in_burst(s.sent)]),
            "burst": _latency([s for s in answered_ok if faults.in_burst(s.sent)]),
        },
        "memory_mb": {"start": round(memory_mb[0]), "end": round(memory_mb[1])},
    }


def table(report: dict[str, Any]) -> str:
    lines = [
        f"soak: {report['config']['duration']:.0f} s, {report['requests']} requests, "
        f"{report['bursts']} overload bursts (x{report['config']['burst_factor']:g}), "
        f"{len(report['replica_kills'])} replica kills, {report['replicas_restarted']} replaced",
        "  by status: " + ", ".join(f"{code} {count}" for code, count in report["by_code"].items()),
        f"  answered {report['answered']}, lost {report['lost']} (sent and never answered by the deadline)",
        "  latency of successful requests: "
        + ", ".join(
            f"{phase} p50 {shown(figures['p50'])} ms / p99 {shown(figures['p99'])} ms ({figures['requests']})"
            for phase, figures in report["ok_latency_ms"].items()
        ),
        f"  memory of the serving processes: {report['memory_mb']['start']} MiB at start, "
        f"{report['memory_mb']['end']} MiB at the end",
    ]
    for rollout in report["rollouts"]:
        state = "done" if rollout["ok"] else f"FAILED: {rollout['error']}"
        lines.append(
            f"  rollout to t5.max_batch_size {rollout['t5_max_batch_size']}: {state} in {rollout['seconds']} s"
        )
    for error in report["replica_kill_errors"]:
        lines.append(f"  kill not done: {error}")
    for kill in report["replica_kills"]:
        after = kill["replaced_after_s"]
        lines.append(
            f"  killed {kill['deployment']} (pid {kill['pid']}): "
            + (f"replaced after {after} s" if after is not None else "NOT replaced")
        )
    return "\n".join(lines)
