"""The bench's peers on the embedded checkpoints: they run, they compute
what the server computes, the head-to-head race times every contestant
alike, and the phase's ratios and tables follow from their figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from t5electra.server.embedded import TINY_ELECTRA, TINY_T5
from t5electra.tools.bench import cpu, head_to_head, peers, report
from t5electra.tools.bench.precisions import peer_ratios

pytestmark = pytest.mark.unit


def test_ctranslate2_decodes_the_forced_length(tmp_path: Path) -> None:
    work = peers.ctranslate2_t5(TINY_T5, tmp_path, batch_size=2)
    assert work() == 2 * peers.PEER_NEW_TOKENS
    assert (tmp_path / "ctranslate2-int8-tiny-t5" / "model.bin").exists()


def test_the_onnx_export_scores_as_transformers_does(tmp_path: Path, detector) -> None:
    import onnxruntime

    assert peers.onnxruntime_electra(TINY_ELECTRA, tmp_path, batch_size=3)() == 3
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx-tiny-electra.onnx"))
    encoded = detector.tokenizer(list(peers.PEER_SENTENCES), padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = detector.model(**encoded).logits.numpy()
    got = session.run(None, {k: encoded[k].numpy().astype(np.int64) for k in ("input_ids", "attention_mask")})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4)


def _served(tokens: float, texts: float, lone_p50: float) -> dict:
    return {
        "generate": {"tokens_per_s": tokens},
        "detect": {"throughput_rps": texts},
        "generate_c1": {"latency_ms": {"p50": lone_p50}},
        "replica_peak_rss_mb": {"TextGenerator": 900.0, "Detector": 700.0},
    }


def _entry(contestant: str, model: str, batch: int, median: float) -> dict:
    unit = "tokens_per_s" if model == "t5" else "texts_per_s"
    return {
        "contestant": contestant,
        "model": model,
        "batch_size": batch,
        "unit": unit,
        "median": median,
        "low": median * 0.9,
        "high": median * 1.1,
        "rounds": [median * 0.9, median, median * 1.1],
        "batches": 60,
    }


def test_the_race_times_every_contestant_over_alternating_rounds() -> None:
    calls: list[str] = []

    def work(name: str, items: int):
        def run() -> int:
            calls.append(name)
            return items

        return run

    contestants = [
        head_to_head.Contestant("a", "t5", 1, work("a", 5)),
        head_to_head.Contestant("b", "electra", 16, work("b", 16)),
    ]
    entries = head_to_head.race(contestants, rounds=2, seconds=0.0, min_batches=3, say=lambda _: None)
    warm_up = head_to_head.WARMUP_BATCHES
    assert calls == ["a"] * warm_up + ["b"] * warm_up + (["a"] * 3 + ["b"] * 3) * 2
    assert [(e["contestant"], e["unit"], e["batches"], len(e["rounds"])) for e in entries] == [
        ("a", "tokens_per_s", 6, 2),
        ("b", "texts_per_s", 6, 2),
    ]
    assert all(e["low"] <= e["median"] <= e["high"] for e in entries)


def test_the_race_on_the_embedded_checkpoints(tmp_path: Path) -> None:
    result = head_to_head.run(
        TINY_T5, TINY_ELECTRA, ["int8"], tmp_path, rounds=1, seconds=0.0, min_batches=1, say=lambda _: None
    )
    found = {(e["contestant"], e["model"], e["batch_size"]) for e in result["entries"]}
    assert found == {
        (name, model, batch)
        for batch in peers.PEER_BATCHES
        for name, model in [
            ("engine int8", "t5"),
            ("engine int8", "electra"),
            ("CTranslate2 int8", "t5"),
            ("ONNX Runtime int8", "electra"),
        ]
    }
    measured = {
        name: value for name, value in result["ratios"].items() if "bfloat16" not in name and "compiled" not in name
    }
    assert all(value is not None and value > 0 for value in measured.values())
    assert result["ratios"]["t5_bfloat16_over_int8_b16"] is None
    assert result["ratios"]["electra_int8_compiled_over_onnxruntime_int8_b16"] is None
    assert result["cpu"]["cpu"] and cpu.line(result["cpu"])


def test_peer_ratios_and_their_table() -> None:
    served = {"float32": _served(300, 60, 200), "int8": _served(900, 180, 80)}
    entries = [
        _entry("engine float32", "t5", 16, 1.0),
        _entry("engine float32", "electra", 16, 2.0),
        _entry("engine int8", "t5", 16, 3.0),
        _entry("engine int8", "electra", 16, 4.0),
        _entry("CTranslate2 int8", "t5", 16, 1200.0),
        _entry("ONNX Runtime int8", "electra", 16, 240.0),
    ]
    ratios = peer_ratios(served, entries)
    assert ratios["int8"] == pytest.approx(
        {"t5_over_ctranslate2_int8": 0.75, "electra_over_onnxruntime_int8": 0.75, "c1_p50_over_float32": 0.4}
    )
    assert ratios["float32"]["c1_p50_over_float32"] == 1.0
    no_peers = peer_ratios(served, [])
    assert no_peers["int8"]["t5_over_ctranslate2_int8"] is None
    race = {"cpu": cpu.describe(), "threads": 1, "rounds": 3, "min_batches": 20, "entries": entries}
    size = {"peers": {"served": served, "head_to_head": race, "ratios": ratios}}
    served_rows, peer_rows = report.peers_rows(size)
    assert [r[0] for r in served_rows] == ["float32", "int8"] and served_rows[1][1:4] == ["900", "180.0", "80.0"]
    assert served_rows[1][-2:] == ["3", "4.0"]
    assert peer_rows[-2:] == [
        ["CTranslate2 int8", "t5", "16", "1200.0", "1080.0–1320.0", "tokens/s"],
        ["ONNX Runtime int8", "electra", "16", "240.0", "216.0–264.0", "texts/s"],
    ]
    assert report.verdict("t5_over_ctranslate2_int8", "int8", 0.75) == "target >= 1: MISSED"
    assert report.verdict("c1_p50_over_float32", "int8", 0.4) == "target <= 0.5: met"
    assert report.verdict("t5_int8_over_ctranslate2_int8_b1", "engines", 1.01) == "target >= 1: met"
