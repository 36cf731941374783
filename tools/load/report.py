"""What a load run measured: every finished request (:class:`Sample`) and
the figures made from them (:class:`LoadReport`), as a table, JSON or a
plot. Conventions are the load tester's (see ``run.py``)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .workload import LoadConfig


@dataclass(frozen=True)
class Sample:
    """One finished request: when it was sent and done (seconds since the
    start of the run), its status, and for streams the time to the first
    message (first token) and the gaps between pieces of text."""

    sent: float
    done: float
    code: str
    ttft: float | None = None
    gaps: tuple[float, ...] = ()
    batch_size: int | None = None
    tokens_out: int = 0
    group: int = 0
    server_ms: dict[str, float] = field(default_factory=dict)

    @property
    def latency(self) -> float:
        return self.done - self.sent

    def hops_ms(self) -> dict[str, float] | None:
        """This request's time per hop, from the server's ``server-timing``
        trailer and the latency seen here; None without that trailer."""
        s = self.server_ms
        if not {"ingress", "model-call", "replica", "queue", "inference"} <= s.keys():
            return None
        return {
            "proxy": self.latency * 1000 - s["ingress"],
            "ingress": s["ingress"] - s["model-call"],
            "model call": s["model-call"] - s["replica"],
            "replica": s["replica"] - s["queue"] - s["inference"],
            "queue": s["queue"],
            "engine": s["inference"],
        }


HOPS_EXPLAINED = {
    "proxy": "client and Ray's gRPC proxy, to the ingress and back",
    "ingress": "auth, conversion, metrics and log line",
    "model call": "Ray's router and the call to the model replica and back",
    "replica": "tokenizing and answering inside the model replica",
    "queue": "waiting in the replica for a batch (T5: a step to join)",
    "engine": "the model's work for this request, shared with its batch",
}


def server_timing(header: str | None) -> dict[str, float]:
    """``name;dur=1.5, other;dur=2`` as {name: 1.5, other: 2.0}."""
    spans = {}
    for part in (header or "").split(","):
        name, _, rest = part.strip().partition(";dur=")
        if name and rest:
            spans[name] = float(rest)
    return spans


REFUSALS = ("RESOURCE_EXHAUSTED", "UNAVAILABLE")
"""Codes a server answers with when it refuses work it cannot take now."""

MISSING = "–"
"""How tables show a figure that could not be measured (None in the JSON)."""


def shown(value: float | None, spec: str = ".1f") -> str:
    """``value`` formatted with ``spec``, or :data:`MISSING` for None."""
    return MISSING if value is None else format(value, spec)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]); None for no values: a
    percentile of nothing is not zero, it is missing."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return ordered[rank - 1]


def _summary_ms(values: Sequence[float]) -> dict[str, float | None]:
    ms = [v * 1000 for v in values]
    return {
        "min": min(ms, default=None),
        "mean": sum(ms) / len(ms) if ms else None,
        "p50": percentile(ms, 50),
        "p90": percentile(ms, 90),
        "p99": percentile(ms, 99),
        "max": max(ms, default=None),
    }


@dataclass
class LoadReport:
    config: LoadConfig
    samples: list[Sample]
    window: float
    unfinished: int = 0
    # The window reached its cap before enough measured requests completed.
    capped: bool = False
    # The requests that completed inside the window, whenever sent: what
    # rates count. None: the measured samples themselves.
    counted: list[Sample] | None = None

    def _per_second(self, count: float) -> float | None:
        """A rate over the window; None when the window measured nothing."""
        return count / self.window if self.samples and self.window > 0 else None

    @property
    def _in_window(self) -> list[Sample]:
        return self.samples if self.counted is None else self.counted

    def to_json(self) -> dict[str, Any]:
        ok = [s for s in self.samples if s.code == "OK"]
        ok_in_window = [s for s in self._in_window if s.code == "OK"]
        errors = Counter(s.code for s in self.samples if s.code != "OK")
        refused = [s.latency for s in self.samples if s.code in REFUSALS]
        figures: dict[str, Any] = {
            "rpc": self.config.rpc,
            "address": self.config.address,
            "mode": "open" if self.config.rate else "closed",
            "concurrency": self.config.concurrency,
            "rate": self.config.rate,
            "window_s": round(self.window, 3),
            "window_capped": self.capped,
            "requests": len(self.samples),
            "successes": len(ok),
            "errors": dict(sorted(errors.items())),
            "unfinished": self.unfinished,
            "plain": self.config.plain,
            "throughput_rps": self._per_second(len(self._in_window)),
            "goodput_rps": self._per_second(len(ok_in_window)),
            "latency_ms": _summary_ms([s.latency for s in ok]),
            "refusal_ms": _summary_ms(refused),
        }
        if self.config.rate and figures["goodput_rps"] is not None:
            figures["goodput_of_rate"] = figures["goodput_rps"] / self.config.rate
        if self.config.rpc != "detect":
            figures["tokens_per_s"] = self._per_second(sum(s.tokens_out for s in ok_in_window))
        batch_sizes = [s.batch_size for s in ok if s.batch_size]
        if batch_sizes:
            figures["batch_size"] = {"mean": sum(batch_sizes) / len(batch_sizes), "max": max(batch_sizes)}
        if self.config.rpc == "generate-stream":
            figures["ttft_ms"] = _summary_ms([s.ttft for s in ok if s.ttft is not None])
            figures["inter_piece_ms"] = _summary_ms([g for s in ok for g in s.gaps])
        hops = [h for s in ok if self.config.rpc != "generate-stream" and (h := s.hops_ms()) is not None]
        if hops:
            figures["hops_ms"] = {name: sum(h[name] for h in hops) / len(hops) for name in HOPS_EXPLAINED}
        if self.config.mix:
            figures["groups"] = [self._group(i, ok) for i in range(len(self.config.mix))]
        return figures

    def _group(self, index: int, ok: list[Sample]) -> dict[str, Any]:
        mine = [s for s in ok if s.group == index]
        counted = [s for s in self._in_window if s.code == "OK" and s.group == index]
        group: dict[str, Any] = {
            "params": self.config.mix[index],
            "successes": len(mine),
            "tokens_per_s": self._per_second(sum(s.tokens_out for s in counted)) if counted else None,
            "latency_ms": _summary_ms([s.latency for s in mine]),
        }
        if self.config.rpc == "generate-stream":
            group["ttft_ms"] = _summary_ms([s.ttft for s in mine if s.ttft is not None])
        return group

    def table(self) -> str:
        figures = self.to_json()
        lines = [
            f"{figures['rpc']} against {figures['address']} ({figures['mode']} loop, "
            + (f"rate {figures['rate']:.4g}/s" if figures["rate"] else f"concurrency {figures['concurrency']}")
            + f", {figures['window_s']:.1f}s measured)",
            f"  requests      {figures['requests']:>8}   successes {figures['successes']}",
            f"  throughput    {shown(figures['throughput_rps']):>8} req/s"
            + (f", {shown(figures['tokens_per_s'], '.0f')} tokens/s out" if "tokens_per_s" in figures else ""),
            f"  goodput       {shown(figures['goodput_rps']):>8} req/s answered within the deadline"
            + (f" ({shown(figures['goodput_of_rate'], '.2f')} of the rate)" if "goodput_of_rate" in figures else ""),
        ]
        if figures["window_capped"]:
            lines.append(
                f"  window cut at {self.config.max_window_factor:g}x the duration before "
                f"{self.config.wanted_successes()} measured requests succeeded"
            )
        for code, count in figures["errors"].items():
            lines.append(f"  error {code:<22} {count}")
        if figures["unfinished"]:
            lines.append(f"  unfinished at the end: {figures['unfinished']}")
        header = f"  {'':<14}{'min':>9}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}"
        lines.append(header)
        rows = [("latency ms", figures["latency_ms"])]
        if figures["refusal_ms"]["max"] is not None:
            rows.append(("refused in ms", figures["refusal_ms"]))
        if "ttft_ms" in figures:
            rows += [("ttft ms", figures["ttft_ms"]), ("inter-piece ms", figures["inter_piece_ms"])]
        for name, stats in rows:
            lines.append(
                f"  {name:<14}" + "".join(f"{shown(stats[k]):>9}" for k in ("min", "p50", "p90", "p99", "max"))
            )
        if "batch_size" in figures:
            lines.append(
                f"  batch size    mean {figures['batch_size']['mean']:.1f}, max {figures['batch_size']['max']}"
            )
        if "hops_ms" in figures:
            lines.append("  mean ms per hop  " + ", ".join(f"{k} {v:.1f}" for k, v in figures["hops_ms"].items()))
        for group in figures.get("groups", []):
            ttft = f", ttft p50 {shown(group['ttft_ms']['p50'])} ms" if "ttft_ms" in group else ""
            lines.append(
                f"  {json.dumps(group['params'])}: {group['successes']} ok, {shown(group['tokens_per_s'], '.0f')} "
                f"tokens/s, p50 {shown(group['latency_ms']['p50'])} ms{ttft}"
            )
        return "\n".join(lines)

    def plot(self, path: Path) -> None:
        """Latency histogram and throughput over time, side by side."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        ok = [s for s in self.samples if s.code == "OK"]
        figure, (latency, throughput) = plt.subplots(1, 2, figsize=(11, 4))
        latency.hist([s.latency * 1000 for s in ok], bins=40, color="#4477aa")
        latency.set_xlabel("latency (ms)")
        latency.set_ylabel("requests")
        latency.set_title(f"{self.config.rpc}: latency of {len(ok)} successful requests")
        start = min((s.done for s in self.samples), default=0.0)
        seconds = Counter(int(s.done - start) for s in self.samples)
        errors = Counter(int(s.done - start) for s in self.samples if s.code != "OK")
        xs = list(range(max(seconds, default=0) + 1))
        throughput.plot(xs, [seconds.get(x, 0) for x in xs], label="completed/s", color="#4477aa")
        throughput.plot(xs, [errors.get(x, 0) for x in xs], label="errors/s", color="#cc6677")
        throughput.set_xlabel("second of the measured window")
        throughput.set_ylabel("requests per second")
        throughput.legend()
        throughput.set_title("throughput over time")
        figure.tight_layout()
        figure.savefig(path, dpi=100)
        plt.close(figure)


def write_json(report: LoadReport, path: Path) -> None:
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n")
