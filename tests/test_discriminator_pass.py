"""The written-out ELECTRA pass gives transformers' float32 logits bit for bit,
with and without padding, and the detector uses it."""

from __future__ import annotations

import pytest
import torch
from transformers import ElectraForPreTraining

from t5electra.server.discriminator_pass import DiscriminatorPass, supported
from t5electra.server.embedded import TINY_ELECTRA

from support.reference import SENTENCES

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def model() -> ElectraForPreTraining:
    return ElectraForPreTraining.from_pretrained(TINY_ELECTRA, attn_implementation="sdpa").eval()


@pytest.mark.parametrize("texts", [SENTENCES[:1], SENTENCES[:2], list(SENTENCES)])
def test_the_pass_equals_transformers_bit_for_bit(model, detector, texts: list[str]) -> None:
    encoded = detector.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        expected = model(**encoded).logits
        got = DiscriminatorPass(model)(encoded["input_ids"], encoded["attention_mask"])
    assert torch.equal(got, expected)


def test_the_detector_runs_the_pass_and_other_configurations_the_model(model, detector) -> None:
    assert isinstance(detector._forward, DiscriminatorPass)
    model.config.chunk_size_feed_forward = 4
    try:
        assert not supported(model)
        with pytest.raises(ValueError, match="mirrors"):
            DiscriminatorPass(model)
    finally:
        model.config.chunk_size_feed_forward = 0
