"""This project's engines against the peers (``peers.py``), in-process, one
thread each, on one workload, and fairly: every contestant is loaded and
warmed up with the same number of batches before any is timed, each is timed
over at least ``min_batches`` batches and ``seconds`` a round, the rounds
alternate between contestants (so that a slow minute of a shared machine
falls on all of them), and each figure is the median of the rounds with
their spread. Every contestant does the whole work a caller needs: the
engines prepare (tokenize, validate) and answer, CTranslate2 tokenizes and
detokenizes, ONNX Runtime tokenizes with offsets and returns per-token
probabilities.

``python -m t5electra.tools.bench.head_to_head --sizes small`` prints the
table with the CPU it ran on; the bench's peers phase runs the same race.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import cpu, peers

WARMUP_BATCHES = 3
MIN_BATCHES = 20


@dataclass(frozen=True)
class Contestant:
    """One engine at one batch size; ``work`` runs a batch and returns the
    items it made (tokens for T5, texts for ELECTRA)."""

    name: str
    model: str
    batch_size: int
    work: Callable[[], int]

    @property
    def unit(self) -> str:
        return "tokens_per_s" if self.model == "t5" else "texts_per_s"


def engine_contestants(t5: str, electra: str, precision: str) -> list[Contestant]:
    """This project's engines at ``precision``, at every batch size of the race."""
    from t5electra.server.detector import ReplacementDetector
    from t5electra.server.generator import T5Generator

    name = f"engine {precision}"
    generator = T5Generator(t5, dtype=precision)
    detector = ReplacementDetector(electra, dtype=precision)
    return [
        contestant
        for size in peers.PEER_BATCHES
        for contestant in (generator_contestant(name, generator, size), detector_contestant(name, detector, size))
    ]


def generator_contestant(name: str, generator: Any, size: int) -> Contestant:
    """One batch: ``size`` requests for the peers' prompt, each forced to the peers' length."""
    from t5electra.server.domain import GenerationParameters, GenerationRequest

    forced = GenerationParameters(max_new_tokens=peers.PEER_NEW_TOKENS, min_new_tokens=peers.PEER_NEW_TOKENS)

    def work() -> int:
        batch = [generator.prepare(GenerationRequest(peers.PEER_PROMPT, forced)) for _ in range(size)]
        return sum(result.output_tokens for result in generator.generate(batch))

    return Contestant(name, "t5", size, work)


def detector_contestant(name: str, detector: Any, size: int) -> Contestant:
    """One batch: ``size`` of the race's sentences prepared and scored."""
    from t5electra.server.domain import DetectionRequest

    texts = [peers.PEER_SENTENCES[i % len(peers.PEER_SENTENCES)] for i in range(size)]

    def work() -> int:
        return len(detector.detect([detector.prepare(DetectionRequest(text)) for text in texts]))

    return Contestant(name, "electra", size, work)


def compiled_contestants(t5: str, electra: str, precision: str) -> tuple[list[Contestant], dict[str, float]]:
    """Both engines compiled (``t5.compile``, ``electra.compile``), and each
    one's seconds to compile and warm up."""
    from t5electra.server.detector import ReplacementDetector
    from t5electra.server.generator import T5Generator

    started = time.perf_counter()
    generator = T5Generator(t5, dtype=precision, compile=True)
    generator.warm_up()
    seconds = {"t5": round(time.perf_counter() - started, 1)}
    detector = ReplacementDetector(electra, dtype=precision, compile=True)
    seconds["electra"] = round(detector.warm_up(), 1)
    name = f"engine {precision} compiled"
    return [
        contestant
        for size in peers.PEER_BATCHES
        for contestant in (generator_contestant(name, generator, size), detector_contestant(name, detector, size))
    ], seconds


def peer_contestants(t5: str, electra: str, workdir: Path, threads: int = 1) -> list[Contestant]:
    """CTranslate2 int8 (T5) and ONNX Runtime int8 (ELECTRA) at every batch size of the race."""
    return [
        contestant
        for size in peers.PEER_BATCHES
        for contestant in (
            Contestant("CTranslate2 int8", "t5", size, peers.ctranslate2_t5(t5, workdir, size, threads)),
            Contestant(
                "ONNX Runtime int8", "electra", size, peers.onnxruntime_electra(electra, workdir, size, threads)
            ),
        )
    ]


def _timed(contestant: Contestant, seconds: float, min_batches: int) -> tuple[float, int]:
    items = batches = 0
    started = time.perf_counter()
    while batches < min_batches or time.perf_counter() - started < seconds:
        items += contestant.work()
        batches += 1
    return items / (time.perf_counter() - started), batches


def race(
    contestants: Sequence[Contestant],
    *,
    rounds: int = 3,
    seconds: float = 2.0,
    min_batches: int = MIN_BATCHES,
    say: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Each contestant's median rate over ``rounds`` alternating rounds,
    with the lowest and highest round and the batches timed."""
    for contestant in contestants:
        for _ in range(WARMUP_BATCHES):
            contestant.work()
    rates: list[list[float]] = [[] for _ in contestants]
    batches = [0] * len(contestants)
    for number in range(rounds):
        say(f"head to head: round {number + 1} of {rounds}")
        for index, contestant in enumerate(contestants):
            rate, timed = _timed(contestant, seconds, min_batches)
            rates[index].append(rate)
            batches[index] += timed
    return [
        {
            "contestant": c.name,
            "model": c.model,
            "batch_size": c.batch_size,
            "unit": c.unit,
            "median": statistics.median(r),
            "low": min(r),
            "high": max(r),
            "rounds": r,
            "batches": n,
        }
        for c, r, n in zip(contestants, rates, batches, strict=True)
    ]


def _median(entries: list[dict[str, Any]], contestant: str, model: str, batch: int) -> float | None:
    found = (e for e in entries if e["contestant"] == contestant and e["model"] == model and e["batch_size"] == batch)
    return next((e["median"] for e in found), None)


def ratios(entries: list[dict[str, Any]]) -> dict[str, float | None]:
    """The engines' goals: int8 against the peers at batch 1 and 16, and
    bfloat16 against int8 at batch 16 (None where a side did not run)."""
    from .figures import divide

    out: dict[str, float | None] = {}
    for batch in reversed(peers.PEER_BATCHES):
        out[f"t5_int8_over_ctranslate2_int8_b{batch}"] = divide(
            _median(entries, "engine int8", "t5", batch), _median(entries, "CTranslate2 int8", "t5", batch)
        )
        out[f"electra_int8_over_onnxruntime_int8_b{batch}"] = divide(
            _median(entries, "engine int8", "electra", batch), _median(entries, "ONNX Runtime int8", "electra", batch)
        )
        out[f"t5_int8_compiled_over_ctranslate2_int8_b{batch}"] = divide(
            _median(entries, "engine int8 compiled", "t5", batch), _median(entries, "CTranslate2 int8", "t5", batch)
        )
        out[f"electra_int8_compiled_over_onnxruntime_int8_b{batch}"] = divide(
            _median(entries, "engine int8 compiled", "electra", batch),
            _median(entries, "ONNX Runtime int8", "electra", batch),
        )
    out["t5_bfloat16_over_int8_b16"] = divide(
        _median(entries, "engine bfloat16", "t5", peers.PEER_BATCH),
        _median(entries, "engine int8", "t5", peers.PEER_BATCH),
    )
    return out


def run(
    t5: str,
    electra: str,
    precisions: Sequence[str],
    workdir: Path,
    *,
    rounds: int = 3,
    seconds: float = 2.0,
    min_batches: int = MIN_BATCHES,
    threads: int = 1,
    compile: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The race with every precision's engines and both peers, as JSON;
    with ``compile``, both engines at int8 compiled too."""
    import torch

    torch.set_num_threads(threads)
    contestants = [c for p in precisions for c in engine_contestants(t5, electra, p)]
    compile_s = None
    if compile:
        compiled, compile_s = compiled_contestants(t5, electra, "int8")
        contestants += compiled
    contestants += peer_contestants(t5, electra, workdir, threads)
    entries = race(contestants, rounds=rounds, seconds=seconds, min_batches=min_batches, say=say)
    return {
        "cpu": cpu.describe(),
        "threads": threads,
        "rounds": rounds,
        "min_batches": min_batches,
        "compile_s": compile_s,
        "entries": entries,
        "ratios": ratios(entries),
    }


def rows(result: dict[str, Any]) -> list[list[str]]:
    """contestant, model, batch, median, low–high, unit."""
    return [
        [
            e["contestant"],
            e["model"],
            str(e["batch_size"]),
            f"{e['median']:.1f}",
            f"{e['low']:.1f}–{e['high']:.1f}",
            e["unit"].replace("_per_s", "/s"),
        ]
        for e in result["entries"]
    ]


HEADER = ["in-process, 1 thread", "model", "batch", "median", "rounds low–high", "unit"]


def main(argv: Sequence[str] | None = None) -> None:
    from .checkpoints import small, tiny

    parser = argparse.ArgumentParser(prog="python -m t5electra.tools.bench.head_to_head", description=__doc__)
    parser.add_argument("--sizes", choices=("tiny", "small"), default="small")
    parser.add_argument("--precisions", default="int8,bfloat16", help="comma-separated engine precisions")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="at least this long a round per contestant")
    parser.add_argument("--min-batches", type=int, default=MIN_BATCHES)
    parser.add_argument("--workdir", type=Path, default=Path("bench-work"))
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--compile", action="store_true", help="both int8 engines compiled too (t5.compile, electra.compile)"
    )
    args = parser.parse_args(argv)
    missing = peers.available()
    if missing:
        parser.error(f"the peers are not installed ({missing})")
    args.workdir.mkdir(parents=True, exist_ok=True)
    models = tiny() if args.sizes == "tiny" else small(args.workdir)
    precisions = cpu.usable_precisions(tuple(args.precisions.split(",")))
    result = run(
        models.t5, models.electra, precisions, args.workdir,
        rounds=args.rounds, seconds=args.seconds, min_batches=args.min_batches, compile=args.compile,
    )  # fmt: skip
    table = [HEADER, *rows(result)]
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADER))]
    print(f"{models.size} shapes, {cpu.line(result['cpu'])}")
    for row in table:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
    for model, seconds in (result["compile_s"] or {}).items():
        print(f"{model} int8 compile and warm-up s: {seconds:.1f}")
    for name, value in result["ratios"].items():
        print(f"{name}: {'n/a' if value is None else f'{value:.2f}'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
