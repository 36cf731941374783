"""The GPU run's script (tools/bench/gpu.py), dry on the CPU: it runs as a
file from the working tree, measures every item it plans for the CPU, and
writes one archive with the figures and the log, as a lent GPU machine would
return it."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from t5electra.tools.bench import gpu

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


def test_the_dry_run_measures_and_archives_within_its_budget(tmp_path: Path) -> None:
    script = ROOT / "tools" / "bench" / "gpu.py"
    done = subprocess.run(
        [sys.executable, str(script), "--out", str(tmp_path), "--dry-run", "--budget-s", "120"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert [p.name for p in tmp_path.iterdir()] == ["gpu-figures.tar.gz"]
    with tarfile.open(tmp_path / "gpu-figures.tar.gz") as archive:
        assert sorted(archive.getnames()) == ["figures.json", "log.txt"]
        figures = json.load(archive.extractfile("figures.json"))  # type: ignore[arg-type]
        log = archive.extractfile("log.txt").read().decode()  # type: ignore[union-attr]
    assert {"torch", "transformers", "python", "device"} <= set(figures["environment"])
    items = figures["items"]
    assert set(items) == {"t5 tiny float32 eager", "electra tiny float32 eager"}
    t5, electra = items["t5 tiny float32 eager"], items["electra tiny float32 eager"]
    assert "error" not in t5 and "error" not in electra, (t5, electra)
    assert t5["b1_tokens"]["per_s"] > 0 and t5["b4_tokens"]["per_s"] > 0 and t5["joins_b4_tokens"]["per_s"] > 0
    assert electra["b4_texts"]["per_s"] > 0
    assert "wrote" in done.stdout and "t5 tiny float32 eager: running" in log


def test_an_item_that_fails_is_recorded_and_the_rest_run(tmp_path: Path) -> None:
    run = gpu.Run(tmp_path, budget_s=60)
    run.item("broken", lambda: {"x": 1 / 0}, needs_s=0)
    run.item("fine", lambda: {"x": 1}, needs_s=0)
    run.item("too long", lambda: {"x": 2}, needs_s=3600)
    items = run.figures["items"]
    assert items["broken"]["error"].startswith("ZeroDivisionError") and items["fine"]["x"] == 1
    assert "skipped" in items["too long"]
