"""The model pairs a benchmark runs on.

``tiny`` is the embedded pair. ``small`` has the architectures of ``t5-small``
and ``google/electra-small-discriminator``: the real weights when a hub id or
path is given, otherwise those configurations with random weights and the
embedded tokenizers, which costs the same compute per token (what a benchmark
measures) but says nothing of quality.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    ElectraConfig,
    ElectraForPreTraining,
    T5Config,
    T5ForConditionalGeneration,
)

from t5electra.server.embedded import TINY_ELECTRA, TINY_T5

# The published configurations of t5-small, t5-base and electra-small-discriminator.
T5_SMALL = {
    "d_model": 512,
    "d_kv": 64,
    "d_ff": 2048,
    "num_layers": 6,
    "num_decoder_layers": 6,
    "num_heads": 8,
    "vocab_size": 32128,
    "feed_forward_proj": "relu",
}
T5_BASE = {
    **T5_SMALL,
    "d_model": 768,
    "d_ff": 3072,
    "num_layers": 12,
    "num_decoder_layers": 12,
    "num_heads": 12,
}
ELECTRA_SMALL = {
    "embedding_size": 128,
    "hidden_size": 256,
    "num_hidden_layers": 12,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
    "max_position_embeddings": 512,
    "vocab_size": 30522,
}


@dataclass(frozen=True)
class ModelPair:
    """What one benchmark size serves: paths or hub ids, and how they were made."""

    size: str
    t5: str
    electra: str
    weights: str


def tiny() -> ModelPair:
    return ModelPair("tiny", str(TINY_T5), str(TINY_ELECTRA), "embedded checkpoints")


def small(workdir: Path, t5: str | None = None, electra: str | None = None) -> ModelPair:
    """The small pair; models not given are written to ``workdir`` with random weights."""
    made = []
    if t5 is None:
        t5 = str(random_t5(workdir / "t5-small-random"))
        made.append("t5-small")
    if electra is None:
        electra = str(random_electra(workdir / "electra-small-random"))
        made.append("electra-small-discriminator")
    weights = "real weights" if not made else f"random weights, embedded tokenizers: {', '.join(made)}"
    return ModelPair("small", t5, electra, weights)


def random_t5(out: Path, shape: dict[str, int | str] = T5_SMALL) -> Path:
    """A T5 of ``shape`` with random weights and the embedded tokenizer, saved to ``out``."""
    tokenizer = AutoTokenizer.from_pretrained(TINY_T5)
    torch.manual_seed(0)
    config = T5Config(
        **shape,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    T5ForConditionalGeneration(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def random_electra(out: Path) -> Path:
    """An electra-small discriminator with random weights and the embedded tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(TINY_ELECTRA)
    torch.manual_seed(0)
    config = ElectraConfig(**ELECTRA_SMALL, pad_token_id=tokenizer.pad_token_id)
    ElectraForPreTraining(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
