"""The bench's peers on the embedded checkpoints: they run, they compute
what the server computes, and the phase's ratios and tables follow from
their figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from t5electra.server.embedded import TINY_ELECTRA, TINY_T5
from t5electra.tools.bench import peers, report
from t5electra.tools.bench.precisions import peer_ratios

pytestmark = pytest.mark.unit


def test_ctranslate2_decodes_the_forced_length(tmp_path: Path) -> None:
    point = peers.ctranslate2_t5(TINY_T5, tmp_path, batch_size=2, duration=0.0)
    assert point.batches >= 2 and point.items_per_s > 0 and point.unit == "tokens_per_s"
    assert (tmp_path / "ctranslate2-int8-tiny-t5" / "model.bin").exists()


def test_the_onnx_export_scores_as_transformers_does(tmp_path: Path, detector) -> None:
    import onnxruntime

    point = peers.onnxruntime_electra(TINY_ELECTRA, tmp_path, batch_size=3, duration=0.0)
    assert point.batches >= 2 and point.items_per_s > 0
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


def test_peer_ratios_and_their_table() -> None:
    served = {"float32": _served(300, 60, 200), "int8": _served(900, 180, 80)}
    found = [
        {"peer": "CTranslate2 int8", "batch_size": 16, "tokens_per_s": 1200.0},
        {"peer": "ONNX Runtime int8", "batch_size": 16, "texts_per_s": 240.0},
    ]
    ratios = peer_ratios(served, found)
    assert ratios["int8"] == pytest.approx(
        {"t5_over_ctranslate2_int8": 0.75, "electra_over_onnxruntime_int8": 0.75, "c1_p50_over_float32": 0.4}
    )
    assert ratios["float32"]["c1_p50_over_float32"] == 1.0
    no_peers = peer_ratios(served, [])
    assert no_peers["int8"]["t5_over_ctranslate2_int8"] is None
    engine = {p: {"t5_batch_16_tokens_per_s": 1.0, "electra_batch_16_texts_per_s": 2.0} for p in served}
    size = {"peers": {"served": served, "engine": engine, "peers": found, "ratios": ratios}}
    served_rows, peer_rows = report.peers_rows(size)
    assert [r[0] for r in served_rows] == ["float32", "int8"] and served_rows[1][1:4] == ["900", "180.0", "80.0"]
    assert peer_rows == [
        ["CTranslate2 int8", "16", "1200.0", "tokens/s"],
        ["ONNX Runtime int8", "16", "240.0", "texts/s"],
    ]
    assert report.verdict("t5_over_ctranslate2_int8", "int8", 0.75) == "target >= 1: MISSED"
    assert report.verdict("c1_p50_over_float32", "int8", 0.4) == "target <= 0.5: met"
