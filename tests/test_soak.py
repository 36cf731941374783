"""The soak command end to end, briefly: its own server, traffic with a
replica kill, a configuration rollout and an overload burst, and an account
in which every request sent was answered."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.system


def test_short_soak_accounts_for_every_request(tmp_path: Path) -> None:
    report_path = tmp_path / "soak.json"
    command = [
        sys.executable,
        "-m",
        "t5electra.tools.cli",
        "soak",
        "--duration",
        "25",
        "--rate",
        "4",
        "--kill-every",
        "8",
        "--burst-every",
        "12",
        "--rollout-every",
        "10",
        "--json",
        str(report_path),
        "--workdir",
        str(tmp_path),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    output = done.stdout[-3000:] + done.stderr[-3000:]
    assert report_path.exists(), output
    report = json.loads(report_path.read_text())
    assert done.returncode == 0, output
    assert report["requests"] == sum(report["by_code"].values()) == report["answered"] + report["lost"]
    assert report["lost"] == 0
    assert report["by_code"].get("OK", 0) > 0
    assert set(report["by_code"]) <= {"OK", "UNAVAILABLE", "RESOURCE_EXHAUSTED"}, report["by_code"]
    assert report["replica_kills"], report["replica_kill_errors"]
    assert report["replicas_restarted"] == len(report["replica_kills"])
    assert report["bursts"] >= 1
    assert report["rollouts"] and all(r["ok"] for r in report["rollouts"]), report["rollouts"]
    assert report["memory_mb"]["start"] > 0 and report["memory_mb"]["end"] > 0
    assert "lost 0" in done.stdout
