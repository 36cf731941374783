"""Where a served request's time and CPU go, as table rows: milliseconds
per hop (from the ``server-timing`` trailer and the client's latency) and
the server's CPU milliseconds per request, by process."""

from __future__ import annotations

from typing import Any

from t5electra.tools.load.report import shown

from .figures import REFERENCE_CONCURRENCY


def hop_rows(size: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Mean milliseconds per hop of served unary calls, a column per (rpc, concurrency)."""
    points = [p for p in size["served"] if "hops_ms" in p and p["concurrency"] in (1, 16)]
    header = ["hop"] + [f"{p['rpc']} c={p['concurrency']}" for p in points]
    if not points:
        return header, []
    names = list(points[0]["hops_ms"])
    rows = [[name] + [shown(p["hops_ms"][name]) for p in points] for name in names]
    rows.append(["client latency (mean)"] + [shown(p["latency_ms"]["mean"]) for p in points])
    return header, rows


def cpu_rows(size: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Per server process (rows, busiest first) and rpc (columns), the CPU
    milliseconds per request at the reference concurrency; the last row
    sums them."""
    points = [p for p in size["served"] if "cpu_ms_per_request" in p and p["concurrency"] == REFERENCE_CONCURRENCY]
    header = ["process"] + [p["rpc"] for p in points]
    if not points:
        return header, []
    roles = sorted({r for p in points for r in p["cpu_ms_per_request"]}, key=lambda r: -_total(points, r))
    rows = [[role] + [shown(p["cpu_ms_per_request"].get(role), ".2f") for p in points] for role in roles]
    rows.append(["all"] + [shown(sum(p["cpu_ms_per_request"].values()), ".2f") for p in points])
    return header, rows


def _total(points: list[dict[str, Any]], role: str) -> float:
    return sum(p["cpu_ms_per_request"].get(role, 0.0) for p in points)
