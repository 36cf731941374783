"""Planned operations under load on one node: a configuration rollout with
``t5electra serve --address`` (every replica replaced) and an autoscaling
scale-down from two ELECTRA replicas to one. Two closed-loop callers run
throughout: one with the Python client's default retries, which must lose
nothing, and one without retries, whose failures must be UNAVAILABLE or
RESOURCE_EXHAUSTED with a retry hint. The figures are printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from t5electra.deployments.names import DETECTOR

from support.cluster import running_nodes
from support.served import serving
from support.traffic import traffic

pytestmark = pytest.mark.system

# Two ELECTRA replicas from the start, allowed down to one by the second
# rollout; Serve pushes load figures every second so the scale-down comes soon.
BASE_ENV = {
    "T5ELECTRA_ELECTRA__AUTOSCALING__MIN_REPLICAS": "2",
    "T5ELECTRA_ELECTRA__AUTOSCALING__MAX_REPLICAS": "2",
    "T5ELECTRA_ELECTRA__NUM_CPUS": "0.3",
    "T5ELECTRA_T5__NUM_CPUS": "0.3",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "1",
}


def t5electra(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "t5electra.tools.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )


def running(gcs: str, deployment: str) -> int:
    status = json.loads(t5electra("status", "--address", gcs, "--json", env={}).stdout)
    return len(running_nodes(status, "t5electra", deployment))


def test_rollout_and_scale_down_under_load_lose_nothing() -> None:
    os.environ.update(BASE_ENV)
    try:
        with serving() as served:
            gcs = next(line.split()[-1] for line in served.output if "Ray cluster:" in line)
            env = {**BASE_ENV, "T5ELECTRA_PORT": served.address.rsplit(":", 1)[1], "T5ELECTRA_T5__MAX_BATCH_SIZE": "12"}
            with traffic(served.address) as calls:
                started = time.monotonic()
                rollout = t5electra("serve", "--address", gcs, env=env)
                rolled = time.monotonic()
                assert rollout.returncode == 0, rollout.stderr[-3000:]
                time.sleep(3)

                scale_down = {
                    "T5ELECTRA_ELECTRA__AUTOSCALING__MIN_REPLICAS": "1",
                    "T5ELECTRA_ELECTRA__AUTOSCALING__DOWNSCALE_DELAY_S": "2",
                    "T5ELECTRA_ELECTRA__AUTOSCALING__LOOK_BACK_PERIOD_S": "2",
                    "T5ELECTRA_ELECTRA__AUTOSCALING__TARGET_ONGOING_REQUESTS": "50",
                }
                scale_started = time.monotonic()
                assert t5electra("serve", "--address", gcs, env={**env, **scale_down}).returncode == 0
                while running(gcs, DETECTOR) > 1 and time.monotonic() - scale_started < 120:
                    time.sleep(1)
                scaled = time.monotonic()
                assert running(gcs, DETECTOR) == 1
                time.sleep(3)
    finally:
        for key in BASE_ENV:
            os.environ.pop(key, None)

    figures = {
        "rollout (t5electra serve --address)": {
            "seconds": round(rolled - started, 1),
            **calls.account(started, rolled + 3),
        },
        "scale-down 2 -> 1": {"seconds": round(scaled - scale_started, 1), **calls.account(scale_started, scaled + 3)},
    }
    print("\n" + json.dumps(figures))
    for scenario in figures.values():
        calls.check(scenario)
