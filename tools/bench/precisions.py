"""The peers phase: the served system at every precision beside the engines
a team could run instead (``peers.py``), all on one workload, so that a
ratio compares the same work.

For each precision a ``t5electra serve`` runs with it for both models:
Generate at the reference concurrency on :data:`~.peers.PEER_PROMPT` with
48 new tokens forced, DetectReplacements at the reference concurrency on
:data:`~.peers.PEER_SENTENCES`, Generate at concurrency 1 with 16 new
tokens (the latency a lone caller sees), and each model replica's peak
memory. The engines at each precision and the peers then race in-process
(``head_to_head.py``) at batch 1 and 16, one thread each.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from t5electra.deployments.names import DETECTOR, TEXT_GENERATOR

from . import head_to_head, peers
from .checkpoints import ModelPair
from .figures import REFERENCE_CONCURRENCY, divide
from .points import closed_loop, load_point, served
from .processes import replica_peak_rss_mb

LONE_NEW_TOKENS = 16


def _exact(tokens: int) -> dict[str, int]:
    return {"max_new_tokens": tokens, "min_new_tokens": tokens}


def _served_points(
    models: ModelPair, precision: str, threads: int, duration: float, warmup: float, workdir: Path, say: Callable
) -> dict[str, Any]:
    with served(models, threads, workdir, dtype=precision) as (up, address):

        def point(rpc: str, concurrency: int, texts: tuple[str, ...], params: dict[str, int]) -> dict[str, Any]:
            load = closed_loop(address, rpc, concurrency, duration, warmup, prompts=texts, params=params)
            return load_point(load, say, precision)

        figures = {
            "generate": point("generate", REFERENCE_CONCURRENCY, (peers.PEER_PROMPT,), _exact(peers.PEER_NEW_TOKENS)),
            "detect": point("detect", REFERENCE_CONCURRENCY, peers.PEER_SENTENCES, {}),
            "generate_c1": point("generate", 1, (peers.PEER_PROMPT,), _exact(LONE_NEW_TOKENS)),
        }
        figures["replica_peak_rss_mb"] = {
            name: replica_peak_rss_mb(up.pid, name) for name in (TEXT_GENERATOR, DETECTOR)
        }
    return figures


def run_phase(
    models: ModelPair,
    precisions: tuple[str, ...],
    *,
    threads: int,
    duration: float,
    warmup: float,
    engine_duration: float,
    rounds: int,
    workdir: Path,
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The phase's figures and ratios as a JSON-ready dict."""
    say(f"{models.size}: peers phase, served at {', '.join(precisions)}")
    served_by = {p: _served_points(models, p, threads, duration, warmup, workdir, say) for p in precisions}
    say(f"{models.size}: engines at {', '.join(precisions)} and the peers in-process, head to head")
    race = head_to_head.run(
        models.t5, models.electra, precisions, workdir, rounds=rounds, seconds=engine_duration, threads=threads, say=say
    )
    return {
        "workload": {
            "prompt": peers.PEER_PROMPT,
            "new_tokens": peers.PEER_NEW_TOKENS,
            "sentences": list(peers.PEER_SENTENCES),
            "concurrency": REFERENCE_CONCURRENCY,
        },
        "served": served_by,
        "head_to_head": race,
        "ratios": {**peer_ratios(served_by, race["entries"]), "engines": race["ratios"]},
    }


def _peer(entries: list[dict[str, Any]], name: str) -> float | None:
    return next((e["median"] for e in entries if e["contestant"] == name and e["batch_size"] == peers.PEER_BATCH), None)


def peer_ratios(served_by: dict[str, dict[str, Any]], entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per precision: served T5 tokens/s over CTranslate2 int8 at batch 16,
    served DetectReplacements texts/s over ONNX Runtime int8 at batch 16
    (the head-to-head race's medians), and the concurrency-1 Generate p50
    over float32's."""
    ct2 = _peer(entries, "CTranslate2 int8")
    ort = _peer(entries, "ONNX Runtime int8")
    lone_float32 = served_by.get("float32", {}).get("generate_c1", {}).get("latency_ms", {}).get("p50")
    return {
        precision: {
            "t5_over_ctranslate2_int8": divide(figures["generate"].get("tokens_per_s"), ct2),
            "electra_over_onnxruntime_int8": divide(figures["detect"].get("throughput_rps"), ort),
            "c1_p50_over_float32": divide(figures["generate_c1"]["latency_ms"].get("p50"), lone_float32),
        }
        for precision, figures in served_by.items()
    }
