"""The serving-cost bench: the profile reader on made-up stacks, and one
short run against a real ``t5electra serve`` that must account the server's
CPU to its processes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from t5electra.tools.bench.profiles import py_spy, read_folded
from t5electra.tools.bench.serving_cost import main


@pytest.mark.unit
def test_folded_stacks_become_inclusive_shares_per_function(tmp_path: Path) -> None:
    folded = tmp_path / "ingress.folded"
    folded.write_text(
        "thread (1);Thread.run (lib/python3.11/threading.py:10);handle (/x/t5electra/deployments/ingress.py:5) 3\n"
        "thread (1);Thread.run (lib/python3.11/threading.py:10);handle (/x/t5electra/deployments/ingress.py:9);"
        "handle (/x/t5electra/deployments/ingress.py:9) 1\n"
        "thread (2);poll (site-packages/ray/serve/api.py:7) 4\n"
        "a line that is not a stack\n"
    )
    frames = read_folded("ingress", folded)
    assert frames.samples == 8
    shares = dict(frames.inclusive)
    # One function is one entry, whatever its line; a recursive frame counts
    # once; a thread's own frames (Thread.run) are left out.
    assert shares == {
        "handle (deployments/ingress.py)": 0.5,
        "poll (ray/serve/api.py)": 0.5,
    }
    assert frames.lines(1)[0] == "ingress: 8 samples at 200 Hz"


def _py_spy_can_attach() -> bool:
    """Whether py-spy is installed and may read another process here (a
    sibling, as the server's processes are to it): containers without
    CAP_SYS_PTRACE, or with Yama's ptrace scope above 0, forbid it."""
    spy = py_spy()
    if spy is None:
        return False
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as target:
        try:
            time.sleep(0.5)
            return subprocess.run([spy, "dump", "--pid", str(target.pid)], capture_output=True).returncode == 0
        finally:
            target.kill()


_PY_SPY = _py_spy_can_attach()


@pytest.mark.system
def test_a_short_run_accounts_the_servers_cpu_and_profiles_each_process(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Profiles are checked where py-spy may attach (see above); the CPU
    accounting everywhere."""
    figures, profiles = tmp_path / "cost.json", tmp_path / "profiles"
    short = ["--rpcs", "detect", "--duration", "2", "--warmup", "0.5", "--engine-duration", "0.5"]
    main([*short, "--json", str(figures), *(["--profile", str(profiles)] if _PY_SPY else [])])
    (detect,) = json.loads(figures.read_text())
    cpu = detect["cpu_ms_per_request"]
    assert {"proxy", "ingress", "electra replica"} <= {role for role, ms in cpu.items() if ms > 0}, cpu
    assert detect["server_cpu_ms_per_request"] == pytest.approx(sum(cpu.values()))
    assert detect["served"]["c16"]["successes"] > 0 and detect["engine"]["16"]["throughput_rps"] > 0
    assert detect["served_over_engine"] > 0
    if not _PY_SPY:
        return
    printed = capsys.readouterr().out
    for role in ("proxy", "ingress", "electra replica"):
        assert (profiles / "detect" / f"{role}.folded").stat().st_size > 0
        assert f"   {role}: " in printed
    # The replica's profile holds the engine's work; where it ranks among the
    # replica's frames (the printed top 12) depends on the machine.
    replica = dict(read_folded("electra replica", profiles / "detect" / "electra replica.folded").inclusive)
    assert replica.get("ReplacementDetector.detect (server/detector.py)", 0) > 0, sorted(replica)[:40]
