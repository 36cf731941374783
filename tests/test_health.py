"""The ingress's readiness, from Serve's status as the controller reports
it (a scripted status here): which readings count as serving."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ray.serve.schema import ApplicationStatus

from t5electra.deployments import health
from t5electra.deployments.names import DETECTOR, TEXT_GENERATOR

pytestmark = pytest.mark.unit

SERVICES = {"generation": TEXT_GENERATOR, "detection": DETECTOR}


def reading(status: ApplicationStatus, **running: int) -> SimpleNamespace:
    deployments = {name: SimpleNamespace(replica_states={"RUNNING": n}) for name, n in running.items()}
    return SimpleNamespace(applications={"app": SimpleNamespace(status=status, deployments=deployments)})


def test_a_deployment_missing_while_rebuilding_keeps_its_count_and_only_then(monkeypatch) -> None:
    readiness = health.Readiness("app", SERVICES)
    readings = iter(
        [
            reading(ApplicationStatus.RUNNING, TextGenerator=1, Detector=1),
            reading(ApplicationStatus.DEPLOYING, Detector=1),  # serve deploy rebuilds TextGenerator
            reading(ApplicationStatus.RUNNING, Detector=1),  # settled without it
            reading(ApplicationStatus.DELETING, TextGenerator=1, Detector=1),
        ]
    )
    monkeypatch.setattr(health.serve, "status", lambda: next(readings))
    answers = [readiness._read() for _ in range(4)]
    assert [a.serving() for a in answers] == [True, True, False, False]
    assert answers[2].serving("detection") and not answers[2].serving("generation")
