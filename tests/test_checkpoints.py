"""The embedded checkpoints do their tasks, measured through the engines on
data no training run saw (held out by a stable hash)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from t5electra.server.embedded import TINY_ELECTRA, TINY_ELECTRA_GENERATOR, TINY_T5
from t5electra.tools.training import corpus
from t5electra.tools.training import generator as generator_training

pytestmark = pytest.mark.unit


def test_tiny_t5_exact_match_on_held_out_prompts(float32_quality) -> None:
    scores = float32_quality.exact_match
    print("tiny-t5 held-out exact match:", json.dumps(scores))
    assert scores["overall"] >= 0.95, scores


def test_tiny_electra_token_f1_on_held_out_sentences(float32_quality) -> None:
    scores = float32_quality.token_scores
    print("tiny-electra held-out token scores:", json.dumps(scores))
    # The shipped checkpoint reaches F1 0.66 on this draw (0.66 on its training
    # card's draw too), short of the 0.85 asked for in the foundation issue, which
    # stays open on that point. This floor catches a broken checkpoint or
    # detector, not a slightly different training run.
    assert scores["f1"] >= 0.62, scores


def test_tiny_generator_predicts_masked_words_of_held_out_sentences() -> None:
    from transformers import AutoTokenizer, ElectraForMaskedLM

    model = ElectraForMaskedLM.from_pretrained(TINY_ELECTRA_GENERATOR).eval()
    tokenizer = AutoTokenizer.from_pretrained(TINY_ELECTRA_GENERATOR)
    scores = generator_training.word_accuracy(model, tokenizer, corpus.split()[1])
    print("tiny-electra-generator held-out masked-word accuracy:", json.dumps(scores))
    # The shipped checkpoint: top-1 0.17, top-5 0.31 (its training card); a
    # floor that catches a broken checkpoint, far above chance (1/4000).
    assert scores["top5"] >= 0.25, scores


def test_checkpoints_are_small_save_pretrained_directories() -> None:
    total = 0
    for checkpoint in (Path(TINY_T5), Path(TINY_ELECTRA), Path(TINY_ELECTRA_GENERATOR)):
        names = {p.name for p in checkpoint.iterdir()}
        assert {"config.json", "model.safetensors", "tokenizer.json", "training.json"} <= names
        total += sum(p.stat().st_size for p in checkpoint.iterdir())
    assert total < 30 * 1024 * 1024
