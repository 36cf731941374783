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
from t5electra.deployments.names import DETECTOR, TEXT_GENERATOR
from t5electra.protocol.v1 import detection_pb2, detection_pb2_grpc

from support.serving import ServerUnderTest
from support.waiting import wait_for

pytestmark = pytest.mark.serve

# Forced to the longest answer the server allows, so that the held requests
# decode for many steps after the last of them joined the batch.
LONG = {"min_new_tokens": 512, "max_new_tokens": 512}
HELD = 6
# The kill follows a check that the held requests have run fewer than this
# many of their 512 steps: the steps left cover the moment between the two.
KILL_BEFORE_STEP = 256
# Replacing a T5 replica takes a few seconds on two cores (a process start and
# a model load); the retry budget must outlast it.
PATIENT = RetryPolicy(max_attempts=12, initial_backoff_s=0.2, max_backoff_s=2.0)


def _patient_caller(server: ServerUnderTest, stop: threading.Event, results: list[str]) -> None:
    """Generate with retries until ``stop``, each answer or code appended to ``results``."""
    with server.client(retry=PATIENT) as client:
        while not stop.is_set():
            try:
                results.append(client.generate("reverse words: candle forest", timeout=60).text)
            except T5ElectraError as error:
                results.append(error.code.name)


def _health_until_replaced(server: ServerUnderTest) -> list[str]:
    """Health answers, polled until NOT_SERVING was seen and SERVING came back."""
    health: list[str] = []
    with server.client(retry=NO_RETRY) as probe:

        def replaced() -> bool:
            try:
                health.append(probe.health(timeout=5))
            except T5ElectraError as error:  # the proxy may fail a probe while Serve replaces the replica
                health.append(f"error:{error.code.name}")
            return health[-1] == "SERVING" and "NOT_SERVING" in health

        try:
            wait_for(replaced, what="health NOT_SERVING, then SERVING again", timeout=120, poll_s=0.1)
        except AssertionError as error:
            raise AssertionError(f"{error}; last answers: {health[-5:]}") from None
    return health


def test_killed_t5_replica_fails_in_flight_requests_fast_and_is_replaced(server: ServerUnderTest) -> None:
    server.wait_until_idle()
    info = server.t5_info()
    victim, idle_at_step = info["pid"], info["steps"]
    stop = threading.Event()
    patient_results: list[str] = []

    def in_flight() -> str:
        with server.client(retry=NO_RETRY) as client:
            try:
                client.generate("reverse words: apple river stone", timeout=90, **LONG)
                return "OK"
            except T5ElectraError as error:
                return error.code.name

    with ThreadPoolExecutor(HELD + 1) as pool:
        held = [pool.submit(in_flight) for _ in range(HELD)]

        def all_held_decoding() -> bool:
            # Only the held requests are on the idle replica yet: the
            # patient caller starts once they all decode.
            ended = [future.result() for future in held if future.done()]
            assert not ended, f"a long request ended before all {HELD} decoded together: {ended}"
            return server.t5_info()["decoding"] >= HELD

        wait_for(all_held_decoding, what=f"{HELD} long requests decoding in the T5 replica", timeout=120)
        patient = pool.submit(_patient_caller, server, stop, patient_results)
        # Each held request joined at a step after idle_at_step and ends 512
        # steps after it joined: none has ended while fewer have run since.
        ran = server.t5_info()["steps"] - idle_at_step
        assert ran < KILL_BEFORE_STEP and not any(future.done() for future in held), (
            f"the held requests ran {ran} of their {LONG['max_new_tokens']} steps before the kill could come"
        )
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        codes = [future.result(timeout=120) for future in held]
        failed_after = time.monotonic() - killed_at

        health = _health_until_replaced(server)
        answered = len(patient_results)
        wait_for(
            lambda: len(patient_results) > answered,
            what="an answer to the patient caller after the replacement",
            timeout=120,
        )
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
        while time.monotonic() - killed_at < 120:
            answers.append(stub.DetectReplacements(request, timeout=60))
            if server.replica_pids(DETECTOR) and not set(server.replica_pids(DETECTOR)) & set(victims):
                break
    replaced_after = time.monotonic() - killed_at
    assert answers and all(answer.tokens for answer in answers)
    running = server.replica_pids(DETECTOR)
    assert running and not set(running) & set(victims), "a new replica replaced the killed one"
    print(f"\n{len(answers)} calls answered while the replica was replaced in {replaced_after:.1f} s")
