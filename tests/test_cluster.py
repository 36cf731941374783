"""The application on a Ray cluster of separate ``ray start`` nodes on this
machine: deployed by ``t5electra serve --address``, inspected with
``t5electra status``, a node killed under traffic and replaced, a node
drained with Ray's drain API under traffic, the application and Serve
removed with ``t5electra shutdown``; then the shipped CPU config (its ports
moved) deployed, rolled out under traffic and removed by Ray's own ``serve``
CLI, and the GPU configs accepted by Ray's controller (their model replicas
wait for GPUs). The tests run in file order on one cluster, each building on
the state the previous one left, through subprocesses and gRPC only.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from t5electra.clients import NO_RETRY, Client, RetryPolicy, T5ElectraError
from t5electra.deployments.names import INGRESS, MODELS, TEXT_GENERATOR
from t5electra.tools.bench.processes import free_port

from support.cluster import CPU_CONFIG, LocalCluster, deployment, node_id, running_nodes, serve_config, spread
from support.traffic import traffic
from support.waiting import wait_for

pytestmark = pytest.mark.system

APP = "t5electra"
PROMPT, ANSWER = "reverse words: apple river stone", "stone river apple"
# A node's loss reaches callers as UNAVAILABLE for the requests it held;
# the retry budget must outlast Serve noticing the dead replicas.
PATIENT = RetryPolicy(max_attempts=10, initial_backoff_s=0.2, max_backoff_s=2.0)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    # A short path: Ray's socket paths under --temp-dir must fit in 107 bytes.
    with tempfile.TemporaryDirectory(prefix="t5c-", dir="/tmp") as workdir:
        local = LocalCluster(Path(workdir))
        try:
            # The ingress sits with the proxy on the head (a resource only the
            # head has); the models spread, one replica per node.
            local.start_head({"edge": 1})
            local.add_worker("worker-1", {"zone_b": 1})
            local.wait_for(lambda s: sum(n["alive"] for n in s["nodes"]) == 2, "two nodes alive", timeout=120)
            yield local
        finally:
            local.close()


def test_serve_address_deploys_onto_the_cluster_and_spreads_replicas(cluster: LocalCluster) -> None:
    config = serve_config(
        CPU_CONFIG,
        cluster.grpc_port,
        free_port(),
        {
            "t5": {"num_cpus": 0.3, "max_replicas_per_node": 1, "autoscaling": {"min_replicas": 2, "max_replicas": 2}},
            "electra": {
                "num_cpus": 0.3,
                "max_replicas_per_node": 1,
                "autoscaling": {"min_replicas": 2, "max_replicas": 2},
            },
            "ingress": {"resources": {"edge": 0.1}},
        },
    )
    path = cluster.workdir / "spread.yaml"
    path.write_text(yaml.safe_dump(config))

    result = cluster.t5electra("serve", "--address", cluster.address, "--config", str(path))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "it keeps running after this command" in result.stdout

    status = cluster.wait_for(lambda s: spread(s, APP, nodes=2), "spread over two nodes")
    worker = node_id(status, head=False)
    for name in MODELS:
        assert worker in running_nodes(status, APP, name)

    with Client(cluster.grpc_address, retry=PATIENT) as client:
        assert client.health() == "SERVING"
        assert client.generate(PROMPT).text == ANSWER
        assert client.detect_replacements("Return the value of the attribute.").tokens


def _call_both_models(address: str, stop: threading.Event, answers: list[str]) -> None:
    """Generate and DetectReplacements in turn until ``stop``, each answer
    (or status code) appended to ``answers``."""
    with Client(address, retry=PATIENT) as client:
        while not stop.is_set():
            try:
                answers.append(client.generate(PROMPT, timeout=60).text)
                detected = client.detect_replacements("The cat sat on the mat.", timeout=60).tokens
                answers.append("detected" if detected else "")
            except T5ElectraError as error:
                answers.append(error.code.name)


def test_losing_a_node_under_traffic_keeps_serving_and_replicas_come_back(cluster: LocalCluster) -> None:
    status = cluster.status()
    worker_id = node_id(status, head=False)
    worker = next(node for node in cluster.nodes if node.name == "worker-1")
    answers: list[str] = []
    stop = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        callers = [pool.submit(_call_both_models, cluster.grpc_address, stop, answers) for _ in range(2)]
        try:
            wait_for(lambda: len(answers) >= 2, what="answers to the callers before the kill", timeout=120)
            before = len(answers)
            killed = worker.kill()
            killed_at, kill_time = len(answers), time.monotonic()
            after_loss = cluster.wait_for(
                lambda s: not any(n["alive"] for n in s["nodes"] if n["node_id"] == worker_id), "worker seen dead"
            )
            seen_dead, seen_dead_at = time.monotonic() - kill_time, len(answers)
            # Both models answer on after the node was seen dead.
            try:
                wait_for(
                    lambda: {ANSWER, "detected"} <= set(answers[seen_dead_at:]),
                    what="both models answering after the node was seen dead",
                    timeout=120,
                )
            except AssertionError as error:
                raise AssertionError(f"{error}; answers: {Counter(answers)}") from None
        finally:
            stop.set()
        for future in callers:
            future.result(timeout=120)

    tally = Counter(answers)
    assert killed > 0
    assert before > 0 and len(answers) > killed_at, tally
    assert set(tally) == {ANSWER, "detected"}, tally
    for name in MODELS:
        assert worker_id not in running_nodes(after_loss, APP, name)
    with Client(cluster.grpc_address, retry=NO_RETRY) as client:
        assert client.health() == "SERVING"

    # A new node joins; Serve places the missing replicas there.
    joined = time.monotonic()
    cluster.add_worker("worker-2", {"zone_b": 1})
    recovered = cluster.wait_for(lambda s: spread(s, APP, nodes=2), "recovered onto the new node")
    print(
        f"\nnode loss: {killed} processes killed; {len(answers)} answers ({before} before the kill, "
        f"{len(answers) - killed_at} after), all correct; node seen dead after {seen_dead:.1f} s; "
        f"replicas back on the new node {time.monotonic() - joined:.1f} s after it was started"
    )
    new_worker = node_id(recovered, head=False)
    assert new_worker != worker_id
    for name in MODELS:
        assert new_worker in running_nodes(recovered, APP, name)
    with Client(cluster.grpc_address, retry=PATIENT) as client:
        assert client.generate(PROMPT).text == ANSWER


def test_draining_a_node_under_load_loses_nothing(cluster: LocalCluster) -> None:
    """Ray's drain API on the worker that holds a replica of each model, with
    a third node to move to: Serve starts replacements there before the
    draining node's replicas stop."""
    draining = node_id(cluster.status(), head=False)
    node = next(node for node in cluster.nodes if node.name == "worker-2")
    cluster.add_worker("worker-3", {"zone_b": 1})
    cluster.wait_for(lambda s: sum(n["alive"] for n in s["nodes"]) == 3, "three nodes alive", timeout=120)

    def moved(status: dict) -> bool:
        return all(
            len(running_nodes(status, APP, name)) == 2 and draining not in running_nodes(status, APP, name)
            for name in MODELS
        )

    with traffic(cluster.grpc_address) as calls:
        started = time.monotonic()
        drained = cluster.ray_cli(
            "drain-node",
            f"--node-id={draining}",
            "--reason=DRAIN_NODE_REASON_PREEMPTION",
            "--reason-message=planned maintenance",
            "--deadline-remaining-seconds=120",
        )
        assert drained.returncode == 0, drained.stderr[-3000:]
        cluster.wait_for(moved, "replicas moved off the draining node", timeout=240)
        finished = time.monotonic()
        time.sleep(3)
    figures = {"seconds": round(finished - started, 1), **calls.account(started, finished + 3)}
    print(f"\nnode drain: {json.dumps(figures)}")
    calls.check(figures)
    # A preemption drain ends with the provider terminating the node at its
    # deadline. Ray stops a drained node by itself once nothing runs there,
    # but not always: on one CI machine it was alive minutes past the
    # deadline with no replica on it. The test plays the provider (nothing to
    # stop where Ray already has), so the next test reads the cluster
    # without the node.
    left = node.kill()
    cluster.wait_for(
        lambda s: not any(n["alive"] for n in s["nodes"] if n["node_id"] == draining), "drained node stopped"
    )
    print(f"drained node: {left} processes left for the provider to stop")


def test_status_shows_placement_and_shutdown_removes_the_application(cluster: LocalCluster) -> None:
    text = cluster.t5electra("status", "--address", cluster.address)
    assert text.returncode == 0, text.stderr[-3000:]
    # worker-1 was killed, worker-2 drained and stopped.
    assert "2 of 4 nodes alive" in text.stdout
    assert f"application {APP} RUNNING" in text.stdout
    assert "TextGenerator  HEALTHY    2/2 replicas running" in text.stdout
    assert " on head " in text.stdout and " on node-1 " in text.stdout

    missing = cluster.t5electra("shutdown", "--address", cluster.address, "--app", "nope")
    assert missing.returncode == 1 and "no application named 'nope'" in missing.stderr

    removed = cluster.t5electra("shutdown", "--address", cluster.address)
    assert removed.returncode == 0, removed.stderr[-3000:]
    assert f"application deleted: {APP}" in removed.stdout
    status = cluster.wait_for(lambda s: not s["applications"], "application gone", timeout=120)
    assert status["serve_running"]
    with Client(cluster.grpc_address, retry=NO_RETRY) as client, pytest.raises(T5ElectraError):
        client.generate(PROMPT, timeout=10)

    # Serve's proxies keep their ports until Serve itself stops.
    stopped = cluster.t5electra("shutdown", "--address", cluster.address, "--all")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert "Ray Serve shut down" in stopped.stdout
    assert not cluster.status()["serve_running"]


def test_rays_own_serve_deploy_accepts_the_shipped_cpu_config(cluster: LocalCluster) -> None:
    """``local-cpu.yaml`` as shipped, its ports moved to free ones and one
    proxy for the machine: Ray's CLI deploys it, and it answers."""
    port, http_port = free_port(), free_port()
    path = cluster.workdir / "local-cpu.yaml"
    path.write_text(yaml.safe_dump(serve_config(CPU_CONFIG, port, http_port)))
    deployed = cluster.serve_cli("deploy", str(path))
    assert deployed.returncode == 0, deployed.stderr[-3000:]

    status = cluster.wait_for(
        lambda s: (
            all(running_nodes(s, APP, name) for name in (*MODELS, INGRESS))
            and deployment(s, APP, TEXT_GENERATOR)["status"] == "HEALTHY"
        ),
        "deployed by serve deploy",
    )
    with Client(f"127.0.0.1:{port}", retry=PATIENT) as client:
        assert client.generate(PROMPT).text == ANSWER

    # A rollout by Ray's own CLI under load: a changed batch size replaces
    # every T5 replica.
    before = {r["replica_id"] for r in deployment(status, APP, TEXT_GENERATOR)["replicas"]}
    path.write_text(yaml.safe_dump(serve_config(CPU_CONFIG, port, http_port, {"t5": {"max_batch_size": 12}})))

    def rolled(s: dict) -> bool:
        t5 = deployment(s, APP, TEXT_GENERATOR)
        if t5 is None:  # the controller is rebuilding the application
            return False
        running = {r["replica_id"] for r in t5["replicas"] if r["state"] == "RUNNING"}
        return bool(running) and not running & before and len(t5["replicas"]) == len(running)

    with traffic(f"127.0.0.1:{port}") as calls:
        started = time.monotonic()
        assert cluster.serve_cli("deploy", str(path)).returncode == 0
        cluster.wait_for(rolled, "T5 replicas replaced by serve deploy", timeout=240)
        finished = time.monotonic()
        time.sleep(3)
    figures = {"seconds": round(finished - started, 1), **calls.account(started, finished + 3)}
    print(f"\nrollout by serve deploy: {json.dumps(figures)}")
    calls.check(figures)

    stopped = cluster.serve_cli("shutdown", "--yes")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    cluster.wait_for(lambda s: not s["serve_running"], "Serve shut down by Ray's CLI", timeout=120)


@pytest.mark.parametrize("name", ["gpu.yaml", "cluster-gpu.yaml"])
def test_rays_own_serve_deploy_accepts_the_gpu_configs(cluster: LocalCluster, name: str) -> None:
    """Ray's controller builds the application from each GPU config and
    validates every deployment option; with no GPU in this cluster the model
    replicas then wait for one, saying so, while the ingress runs."""
    path = cluster.workdir / name
    path.write_text(yaml.safe_dump(serve_config(CPU_CONFIG.parent / name, free_port(), free_port())))
    deployed = cluster.serve_cli("deploy", str(path))
    assert deployed.returncode == 0, deployed.stderr[-3000:]

    def waiting_for_gpus(status: dict) -> bool:
        models = [deployment(status, APP, name) for name in MODELS]
        return all(m is not None and "GPU" in m["message"] for m in models)

    status = cluster.wait_for(waiting_for_gpus, "model replicas waiting for GPUs", timeout=120)
    (app,) = status["applications"]
    assert app["status"] == "DEPLOYING", app
    assert running_nodes(status, APP, INGRESS)

    stopped = cluster.serve_cli("shutdown", "--yes")
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    cluster.wait_for(lambda s: not s["serve_running"], "Serve shut down", timeout=120)
