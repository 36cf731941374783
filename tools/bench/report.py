"""The benchmark's figures as a table, the targets they are judged by, and a plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from t5electra.tools.load.report import shown

from . import cpu, head_to_head, peers
from .breakdown import cpu_rows, hop_rows
from .figures import REFERENCE_CONCURRENCY, TARGETS


def verdict(name: str, rpc: str, value: float | None) -> str:
    target = TARGETS.get((name, rpc))
    if target is None or value is None:
        return ""
    comparison, threshold = target
    met = value >= threshold if comparison == ">=" else value <= threshold
    return f"target {comparison} {threshold:g}: {'met' if met else 'MISSED'}"


def mixed_rows(size: dict[str, Any]) -> list[list[str]]:
    """Per scheduler: tokens/s mixed and all-long, R1, first piece p50, p50
    of short and long requests, R2, and the T5 replica's peak memory."""
    rows = []
    for scheduler, phase in size.get("mixed", {}).items():
        mixed = phase["mixed"]
        short, long = mixed.get("groups") or ({}, {})
        ratios = size["scheduling"]
        rows.append(
            [
                scheduler,
                shown(mixed.get("tokens_per_s"), ".0f"),
                shown(phase["all_long"].get("tokens_per_s"), ".0f"),
                shown(ratios.get(f"r1_{scheduler}"), ".2f"),
                shown(mixed.get("ttft_ms", {}).get("p50"), ".0f"),
                shown(short.get("latency_ms", {}).get("p50"), ".0f"),
                shown(long.get("latency_ms", {}).get("p50"), ".0f"),
                shown(ratios.get(f"r2_{scheduler}"), ".3f"),
                shown(phase.get("replica_peak_rss_mb"), ".0f"),
            ]
        )
    return rows


MIXED_HEADER = [
    "T5 scheduler",
    "mixed tok/s",
    "all-48 tok/s",
    "R1",
    "first piece p50 ms",
    "4-token p50 ms",
    "48-token p50 ms",
    "R2",
    "replica peak RSS MiB",
]

PEERS_HEADER = [
    "precision",
    "served T5 tok/s",
    "served detect texts/s",
    "c=1 Generate p50 ms",
    "T5 replica MiB",
    "ELECTRA replica MiB",
    "engine T5 tok/s b16",
    "engine ELECTRA texts/s b16",
]


def peers_rows(size: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
    """The served system and this project's engines per precision, then the
    peers in-process; empty where the phase did not run."""
    phase = size.get("peers") or {}
    if "served" not in phase:
        return [], []
    race = phase["head_to_head"]
    rows = []
    for precision, figures in phase["served"].items():
        engine = {
            e["model"]: e["median"]
            for e in race["entries"]
            if e["contestant"] == f"engine {precision}" and e["batch_size"] == peers.PEER_BATCH
        }
        memory = figures.get("replica_peak_rss_mb", {})
        rows.append(
            [
                precision,
                shown(figures["generate"].get("tokens_per_s"), ".0f"),
                shown(figures["detect"].get("throughput_rps"), ".1f"),
                shown(figures["generate_c1"]["latency_ms"].get("p50"), ".1f"),
                *(shown(value, ".0f") for value in memory.values()),
                shown(engine.get("t5"), ".0f"),
                shown(engine.get("electra"), ".1f"),
            ]
        )
    return rows, head_to_head.rows(race)


def _peer_ratio_rows(size: dict[str, Any]) -> list[tuple[str, str, float | None]]:
    ratios = (size.get("peers") or {}).get("ratios", {})
    return [(precision, name, value) for precision, values in ratios.items() for name, value in values.items()]


def _ratio_rows(size: dict[str, Any]) -> list[tuple[str, str, float | None]]:
    """Every ratio of a size, the scheduler's and the peers' last: (rpc or precision, name, value)."""
    rows = [(rpc, name, value) for rpc, values in sorted(size["ratios"].items()) for name, value in values.items()]
    return rows + list(_scheduling_lines(size)) + _peer_ratio_rows(size)


def _scheduling_lines(size: dict[str, Any]) -> list[tuple[str, str, float | None]]:
    return [("generate-stream", name, value) for name, value in size.get("scheduling", {}).items()]


def _peers_caption(size: dict[str, Any]) -> str:
    workload = size["peers"]["workload"]
    return (
        f"peers, one workload: Generate c={workload['concurrency']} on one prompt with {workload['new_tokens']} new "
        f"tokens forced, DetectReplacements c={workload['concurrency']} on {len(workload['sentences'])} sentences"
    )


def _race_caption(size: dict[str, Any]) -> str:
    race = size["peers"]["head_to_head"]
    return (
        f"engines and peers in-process, {race['threads']} thread, median of {race['rounds']} alternating rounds of "
        f"at least {race['min_batches']} batches each; {cpu.line(race['cpu'])}"
    )


def _text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)) for r in [header, *rows]]


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def table(bench: dict[str, Any]) -> str:
    m = bench["machine"]
    lines = [
        f"machine: {m['cpu']} ({m['cpu_count']} cores), gpu: {m['gpu'] or 'none'}, "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
    ]
    for size in bench["sizes"]:
        lines += [
            "",
            f"== {size['size']}: {size['models']['weights']} "
            f"(served start-up {size['served_startup_s']:.1f} s, max_new_tokens {bench['config']['max_new_tokens']}, "
            f"torch threads {bench['config']['torch_threads']}, dtype {bench['config'].get('dtype', 'auto')})",
            f"{'rpc':<16}{'system':<9}{'conc/batch':>10}{'req/s':>9}{'tok/s':>8}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'ttft p50':>9}{'batch':>7}{'errors':>7}",
        ]
        for rpc in bench["config"]["rpcs"]:
            rows = [("served", p, p["concurrency"]) for p in size["served"] if p["rpc"] == rpc]
            rows += [("plain", p, p["concurrency"]) for p in size["plain"] if p["rpc"] == rpc]
            rows += [("engine", p, p["batch_size"]) for p in size["engine"] if p["rpc"] == rpc]
            for system, point, level in rows:
                tokens = shown(point["tokens_per_s"], ".0f") if "tokens_per_s" in point else "-"
                ttft = shown(point["ttft_ms"]["p50"]) if "ttft_ms" in point else "-"
                batch = shown(point["batch_size"]["mean"]) if isinstance(point.get("batch_size"), dict) else "-"
                errors = sum(point["errors"].values()) if "errors" in point else 0
                lines.append(
                    f"{rpc:<16}{system:<9}{level:>10}{shown(point['throughput_rps']):>9}{tokens:>8}"
                    f"{shown(point['latency_ms']['p50']):>9}{shown(point['latency_ms']['p99']):>9}{ttft:>9}{batch:>7}"
                    f"{errors:>7}"
                )
        if size.get("mixed"):
            lines += ["", "mixed lengths: GenerateStream, concurrency 16, 4 or 48 new tokens in turn"]
            lines += _text_table(MIXED_HEADER, mixed_rows(size))
        header, rows = hop_rows(size)
        if rows:
            lines += ["", "mean ms per hop", *_text_table(header, rows)]
        header, rows = cpu_rows(size)
        if rows:
            lines += ["", f"server CPU ms per request at c={REFERENCE_CONCURRENCY}", *_text_table(header, rows)]
        served_rows, peer_rows = peers_rows(size)
        if served_rows:
            lines += ["", _peers_caption(size), *_text_table(PEERS_HEADER, served_rows)]
            lines += ["", _race_caption(size), *_text_table(head_to_head.HEADER, peer_rows)]
        elif "skipped" in (size.get("peers") or {}):
            lines += ["", f"peers phase skipped: {size['peers']['skipped']}"]
        lines.append("ratios:")
        for rpc, name, value in _ratio_rows(size):
            lines.append(f"  {rpc:<16}{name:<24}{shown(value, '.3g'):>8}  {verdict(name, rpc, value)}")
    return "\n".join(lines)


def _plotted(value: float | None) -> float:
    """A missing figure is a gap in a plotted line."""
    return float("nan") if value is None else value


def plot(bench: dict[str, Any], path: Path) -> None:
    """Throughput and p99 latency against concurrency, per model size and rpc:
    served and plain as lines, the engine's best batch as a dashed level."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(size, rpc) for size in bench["sizes"] for rpc in bench["config"]["rpcs"]]
    figure, axes = plt.subplots(len(panels), 2, figsize=(11, 3.2 * len(panels)), squeeze=False)
    for (size, rpc), (rate_axis, p99_axis) in zip(panels, axes, strict=True):
        for system, color in (("served", "#4477aa"), ("plain", "#cc6677")):
            points = sorted((p for p in size[system] if p["rpc"] == rpc), key=lambda p: p["concurrency"])
            xs = [p["concurrency"] for p in points]
            rate_axis.plot(xs, [_plotted(p["throughput_rps"]) for p in points], "o-", color=color, label=system)
            p99_axis.plot(xs, [_plotted(p["latency_ms"]["p99"]) for p in points], "o-", color=color, label=system)
        engine = [p for p in size["engine"] if p["rpc"] == rpc]
        if engine:
            best = max(engine, key=lambda p: p["throughput_rps"])
            rate_axis.axhline(
                best["throughput_rps"], linestyle="--", color="#228833", label=f"engine, batch {best['batch_size']}"
            )
        for axis, label in ((rate_axis, "requests/s"), (p99_axis, "p99 latency (ms)")):
            axis.set_xscale("log", base=2)
            axis.set_xlabel("concurrency")
            axis.set_ylabel(label)
            axis.set_title(f"{size['size']}: {rpc}")
            axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def markdown(bench: dict[str, Any], command: str) -> str:
    """The figures as docs/benchmarks.md shows them: per size, throughput and
    latency of each system at each level, then the ratios and targets."""
    m = bench["machine"]
    lines = [
        f"Measured with `{command}` on {m['cpu']} ({m['cpu_count']} cores, GPU: {m['gpu'] or 'none'}), "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if k != "t5-electra-serve")
        + f"; torch threads {bench['config']['torch_threads']}, dtype {bench['config'].get('dtype', 'auto')}, "
        f"max_new_tokens {bench['config']['max_new_tokens']}.",
    ]
    for size in bench["sizes"]:
        lines += [
            "",
            f"**{size['size']}** ({size['models']['weights']}; served start-up {size['served_startup_s']:.1f} s)",
            "",
            "| rpc | system | concurrency / batch | req/s | p50 ms | p99 ms | first piece p50 ms | mean batch |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for rpc in bench["config"]["rpcs"]:
            rows = [("served", p, p["concurrency"]) for p in size["served"] if p["rpc"] == rpc]
            rows += [("plain", p, p["concurrency"]) for p in size["plain"] if p["rpc"] == rpc]
            rows += [("engine", p, p["batch_size"]) for p in size["engine"] if p["rpc"] == rpc]
            for system, point, level in rows:
                ttft = shown(point["ttft_ms"]["p50"]) if "ttft_ms" in point else "-"
                batch = shown(point["batch_size"]["mean"]) if isinstance(point.get("batch_size"), dict) else "-"
                lines.append(
                    f"| {rpc} | {system} | {level} | {shown(point['throughput_rps'])} "
                    f"| {shown(point['latency_ms']['p50'])} | {shown(point['latency_ms']['p99'])} | {ttft} | {batch} |"
                )
        if size.get("mixed"):
            lines += ["", "Mixed lengths (GenerateStream, concurrency 16, 4 or 48 new tokens in turn):", ""]
            lines += _markdown_table(MIXED_HEADER, mixed_rows(size))
        header, rows = hop_rows(size)
        if rows:
            lines += ["", "Mean milliseconds per hop (`server-timing` trailer and client latency):", ""]
            lines += _markdown_table(header, rows)
        header, rows = cpu_rows(size)
        if rows:
            caption = f"Server CPU milliseconds per request at concurrency {REFERENCE_CONCURRENCY}, by process:"
            lines += ["", caption, ""]
            lines += _markdown_table(header, rows)
        served_rows, peer_rows = peers_rows(size)
        if served_rows:
            lines += ["", _peers_caption(size) + ":", "", *_markdown_table(PEERS_HEADER, served_rows)]
            lines += ["", _race_caption(size), "", *_markdown_table(head_to_head.HEADER, peer_rows)]
        lines += ["", "| rpc | ratio | value | target |", "| --- | --- | --- | --- |"]
        for rpc, name, value in _ratio_rows(size):
            lines.append(f"| {rpc} | {name} | {shown(value, '.3g')} | {verdict(name, rpc, value) or '-'} |")
    return "\n".join(lines) + "\n"
