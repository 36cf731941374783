"""A model replica killed mid-load, for real (SIGKILL to its process): the
requests it held fail fast with a retryable code, health tells probes, Serve
replaces the replica, and a retrying client carries its caller through."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from t5electra.clients import NO_RETRY, RetryPolicy, T5ElectraError
from t5electra.clients.options import SERVICE_CONFIG
from t5electra.clients.v1 import detection_pb2, detection_pb2_grpc
from t5electra.deployments.names import DETECTOR, TEXT_GENERATOR

from support.serving import ServerUnderTest

pytestmark = pytest.mark.serve

LONG = {"min_new_tokens": 200, "max_new_tokens": 200}
# Replacing a T5 replica takes a few seconds on two cores (a process start and
# a model load); the retry budget must outlast it.
PATIENT = RetryPolicy(max_attempts=12, initial_backoff_s=0.2, max_backoff_s=2.0)


def test_killed_t5_replica_fails_in_flight_requests_fast_and_is_replaced(server: ServerUnderTest) -> None:
    server.wait_until_idle()
    victim = server.t5_info()["pid"]
    stop = threading.Event()
    patient_results: list[str] = []

    def in_flight() -> str:
        with server.client(retry=NO_RETRY) as client:
            try:
                client.generate("reverse words: apple river stone", timeout=90, **LONG)
                return "OK"
            except T5ElectraError as error:
                return error.code.name

    def patient_caller() -> None:
        with server.client(retry=PATIENT) as client:
            while not stop.is_set():
                try:
                    patient_results.append(client.generate("reverse words: candle forest", timeout=60).text)
                except T5ElectraError as error:
                    patient_results.append(error.code.name)

    with ThreadPoolExecutor(7) as pool:
        held = [pool.submit(in_flight) for _ in range(6)]
        patient = pool.submit(patient_caller)
        deadline = time.monotonic() + 30
        while server.t5_info()["decoding"] < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        codes = [future.result(timeout=90) for future in held]
        failed_after = time.monotonic() - killed_at

        health: list[str] = []
        with server.client(retry=NO_RETRY) as probe:
            while time.monotonic() - killed_at < 120:
                health.append(probe.health(timeout=5))
                if health[-1] == "SERVING" and "NOT_SERVING" in health:
                    break
                time.sleep(0.1)
        time.sleep(1)
        stop.set()
        patient.result(timeout=120)

    assert set(codes) == {"UNAVAILABLE"}, codes
    assert failed_after < 30, failed_after
    assert "NOT_SERVING" in health and health[-1] == "SERVING", health[-5:]
    assert server.replicas(TEXT_GENERATOR) == 1
    assert server.t5_info()["pid"] != victim
    assert patient_results and set(patient_results) == {"forest candle"}, set(patient_results)


def test_plain_channel_with_the_published_service_config_rides_over_a_replica_restart(
    server: ServerUnderTest,
) -> None:
    """gRPC's own retries, configured by clients/service_config.json (what a
    Go or Java client is given), and the server's grpc-retry-pushback-ms carry
    every call of a plain channel over the restart of the only ELECTRA replica."""
    options = [("grpc.service_config", SERVICE_CONFIG.read_text()), ("grpc.enable_retries", 1)]
    request = detection_pb2.DetectReplacementsRequest(text="The callable is invoked with a single banana.")
    with grpc.insecure_channel(server.address, options=options) as channel:
        stub = detection_pb2_grpc.ReplacementDetectionStub(channel)
        stub.DetectReplacements(request, timeout=30)
        victims = server.replica_pids(DETECTOR)
        assert victims
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
        killed_at, answers = time.monotonic(), []
        while time.monotonic() - killed_at < 60:
            answers.append(stub.DetectReplacements(request, timeout=60))
            if server.replica_pids(DETECTOR) and not set(server.replica_pids(DETECTOR)) & set(victims):
                break
    replaced_after = time.monotonic() - killed_at
    assert answers and all(answer.tokens for answer in answers)
    running = server.replica_pids(DETECTOR)
    assert running and not set(running) & set(victims), "a new replica replaced the killed one"
    print(f"\n{len(answers)} calls answered while the replica was replaced in {replaced_after:.1f} s")
