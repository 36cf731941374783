"""Trains the embedded tiny ELECTRA generator: a masked language model that
shares tiny-electra's vocabulary, so that DetectReplacements can suggest
what a replaced word probably was.

ELECTRA trains its discriminator against such a generator; here the two are
trained apart (the discriminator against random replacements, see
:mod:`.electra`), and the generator serves only suggestions.
"""

from __future__ import annotations

import json
import random
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import AutoTokenizer, ElectraConfig, ElectraForMaskedLM, PreTrainedTokenizerBase

from . import corpus, everyday, mix
from .electra import MAX_POSITIONS, encode, step_sentences
from .loop import fit

MASK_RATE = 0.15


def build_model(vocab_size: int, seed: int) -> ElectraForMaskedLM:
    """The discriminator's width in three layers, over embeddings half as
    wide: the vocabulary table is most of a small model's bytes, and
    suggesting a word takes context, which is the layers' work."""
    torch.manual_seed(seed)
    config = ElectraConfig(
        vocab_size=vocab_size,
        embedding_size=64,
        hidden_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=MAX_POSITIONS,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return ElectraForMaskedLM(config)


def mask_tokens(
    input_ids: torch.Tensor, special: torch.Tensor, tokenizer: PreTrainedTokenizerBase, rng: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's recipe: 15% of the real tokens are predicted; of those, 80%
    are masked, 10% replaced by a random token and 10% left as they are."""
    labels = input_ids.clone()
    chosen = (torch.rand(input_ids.shape, generator=rng) < MASK_RATE) & ~special.bool()
    labels[~chosen] = -100
    masked = input_ids.clone()
    draw = torch.rand(input_ids.shape, generator=rng)
    masked[chosen & (draw < 0.8)] = tokenizer.mask_token_id
    swap = chosen & (draw >= 0.8) & (draw < 0.9)
    masked[swap] = torch.randint(len(tokenizer), input_ids.shape, generator=rng)[swap]
    return masked, labels


def masked_loss(model: ElectraForMaskedLM, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The model's masked-LM loss with the vocabulary projected only where a
    token is predicted: ``ElectraForMaskedLM`` scores all 8000 pieces at
    every position, and at 15% masking most of that work is discarded."""
    labels = inputs["labels"]
    chosen = labels != -100
    hidden = model.electra(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
    logits = model.generator_lm_head(model.generator_predictions(hidden[chosen]))
    return torch.nn.functional.cross_entropy(logits, labels[chosen])


def word_accuracy(model: ElectraForMaskedLM, tokenizer: PreTrainedTokenizerBase, sentences: list[str]) -> dict:
    """Top-1 and top-5 accuracy at predicting a masked whole word (one that
    is a single token), one word masked per held-out sentence."""
    rng = random.Random(0)
    top1 = top5 = total = 0
    for sentence in sentences:
        ids = tokenizer(sentence)["input_ids"]
        singles = [
            i
            for i in range(1, len(ids) - 1)
            if not tokenizer.convert_ids_to_tokens(ids[i]).startswith("##")
            and (i + 1 == len(ids) - 1 or not tokenizer.convert_ids_to_tokens(ids[i + 1]).startswith("##"))
            and tokenizer.convert_ids_to_tokens(ids[i]).isalpha()
        ]
        if not singles:
            continue
        position = rng.choice(singles)
        masked = list(ids)
        masked[position] = tokenizer.mask_token_id
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([masked])).logits[0, position]
        best = logits.topk(5).indices.tolist()
        top1 += best[0] == ids[position]
        top5 += ids[position] in best
        total += 1
    return {"top1": top1 / max(1, total), "top5": top5 / max(1, total), "words": total}


def _batches(
    sentences: Sequence[str], tokenizer: PreTrainedTokenizerBase, batch_size: int, seed: int
) -> Callable[[int], dict[str, torch.Tensor]]:
    """A step's batch: its sentences encoded with words masked (the step
    seeds the masking) and the masked tokens as labels."""

    def batch(step: int) -> dict[str, torch.Tensor]:
        encoded = encode(tokenizer, step_sentences(sentences, batch_size, seed, step))
        encoded.pop("offset_mapping")
        special = encoded.pop("special_tokens_mask") | (encoded["attention_mask"] == 0)
        masking = torch.Generator().manual_seed(zlib.crc32(f"{seed}/mask/{step}".encode()))
        masked, labels = mask_tokens(encoded["input_ids"], special, tokenizer, masking)
        return {"input_ids": masked, "attention_mask": encoded["attention_mask"], "labels": labels}

    return batch


def train(
    out_dir: Path,
    tokenizer_dir: Path,
    *,
    seed: int = 0,
    cycles: Sequence[int] = (16000,),
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    state_dir: Path | None = None,
    save_every: int = 500,
    log: Callable[[str], None] = print,
) -> dict[str, dict]:
    """Trains, saves a ``save_pretrained`` directory at ``out_dir`` with the
    tokenizer of ``tokenizer_dir`` (tiny-electra's) and returns its held-out
    word accuracy on docstrings and on everyday English. With ``state_dir``
    the run saves its state there and resumes a saved one."""
    torch.manual_seed(seed)
    started = time.monotonic()
    sentences = mix.training_sentences()
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = build_model(len(tokenizer), seed)

    recipe = {"seed": seed, "batch_size": batch_size, "vocab": len(tokenizer), "sentences": len(sentences)}
    fit(
        model,
        _batches(sentences, tokenizer, batch_size, seed),
        cycles=cycles,
        learning_rate=learning_rate,
        log=log,
        name="generator",
        state_dir=state_dir / "generator" if state_dir else None,
        save_every=save_every,
        recipe=recipe,
        loss=lambda inputs: masked_loss(model, inputs),
    )
    scores = {
        "docstrings": word_accuracy(model, tokenizer, corpus.split()[1]),
        "everyday_english": word_accuracy(model, tokenizer, everyday.originals()),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    card = {
        "seed": seed,
        "cycles": list(cycles),
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "mask_rate": MASK_RATE,
        "corpus_sentences": {"train": len(sentences), "distinct": len(set(sentences))},
        "held_out_masked_word_accuracy": scores,
        "train_seconds": round(time.monotonic() - started),
        "torch_threads": torch.get_num_threads(),
    }
    (out_dir / "training.json").write_text(json.dumps(card, indent=2) + "\n")
    log(f"generator held-out masked-word accuracy: {json.dumps(scores)}")
    return scores
