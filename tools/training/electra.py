"""Trains the embedded tiny ELECTRA discriminator: its own WordPiece
vocabulary and a small encoder fitted to replaced-token detection on the
general-English and docstring sentences of :mod:`.mix`.
"""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, normalizers, pre_tokenizers
from tokenizers.models import WordPiece
from tokenizers.trainers import WordPieceTrainer
from transformers import BertTokenizer, ElectraConfig, ElectraForPreTraining

from . import corpus, everyday, mix
from .loop import fit

VOCAB_SIZE = 8000
MAX_POSITIONS = 128
REPLACE_RATE = 0.15
BUCKET_BATCHES = 32
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORD = re.compile(r"[A-Za-z]+")


@dataclass(frozen=True)
class Corrupted:
    """A sentence with some words replaced; ``spans`` are the replaced words'
    character offsets in ``text``."""

    text: str
    spans: tuple[tuple[int, int], ...]


class Replacer:
    """Replaces words by other words of the corpus, matching capitalisation.

    ELECTRA's generator proposes replacements a small masked language model
    finds plausible; here a replacement is a word of the corpus seen at least
    ``MIN_COUNT`` times, chosen without looking at the sentence: weaker than a
    generator, which is what a model of a few MB trained for half an hour on
    one core can learn to detect. Words are drawn with probability proportional
    to their count to the power ``POWER``: drawn uniformly (power 0), the
    replacements are mostly rare words, and the model learns to flag any rare
    word, genuine ones included; drawn by frequency, every word is as likely
    to be replaced as it is common, so only the context can tell.
    """

    MIN_COUNT = 3
    POWER = 0.5

    def __init__(self, sentences: Sequence[str]) -> None:
        counts = Counter(w.lower() for s in sentences for w in _WORD.findall(s))
        self._words = sorted(w for w, n in counts.items() if n >= self.MIN_COUNT)
        self._cumulative = list(itertools.accumulate(counts[w] ** self.POWER for w in self._words))

    def corrupt(self, sentence: str, rng: random.Random) -> Corrupted:
        pieces, spans, cursor, out = [], [], 0, 0
        for match in _WORD.finditer(sentence):
            pieces.append(sentence[cursor : match.start()])
            out += match.start() - cursor
            word = match.group()
            if rng.random() < REPLACE_RATE:
                (new,) = rng.choices(self._words, cum_weights=self._cumulative)
                new = new.capitalize() if word[0].isupper() else new
                if new.lower() != word.lower():
                    spans.append((out, out + len(new)))
                    word = new
            pieces.append(word)
            out += len(word)
            cursor = match.end()
        pieces.append(sentence[cursor:])
        return Corrupted("".join(pieces), tuple(spans))


def build_tokenizer(sentences: Sequence[str]) -> BertTokenizer:
    """An uncased WordPiece vocabulary, wrapped as the BERT-style tokenizer
    that ELECTRA checkpoints use."""
    backend = Tokenizer(WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = WordPieceTrainer(vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False)
    backend.train_from_iterator(sentences, trainer=trainer)
    # The trainer finds the same pieces every run but numbers them in a
    # different order from one process to the next; the ids index the
    # embedding table, so they are renumbered in a fixed order (special
    # tokens first, then the pieces sorted) to make training reproducible.
    pieces = sorted(set(backend.get_vocab()) - set(SPECIAL_TOKENS))
    vocab = {piece: index for index, piece in enumerate([*SPECIAL_TOKENS, *pieces])}
    return BertTokenizer(vocab=vocab, do_lower_case=True, model_max_length=MAX_POSITIONS)


def build_model(vocab_size: int, seed: int) -> ElectraForPreTraining:
    torch.manual_seed(seed)
    config = ElectraConfig(
        vocab_size=vocab_size,
        embedding_size=128,
        hidden_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=512,
        max_position_embeddings=MAX_POSITIONS,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return ElectraForPreTraining(config)


def encode(tokenizer: BertTokenizer, texts: list[str]) -> dict[str, Any]:
    """Padded, truncated model inputs plus character offsets and the special
    tokens mask, as training and evaluation both need them."""
    return tokenizer(
        texts,
        padding=True,
        truncation=True,
        max_length=MAX_POSITIONS,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
        return_tensors="pt",
    )


def token_labels(offsets: Sequence[tuple[int, int]], spans: Sequence[tuple[int, int]]) -> list[int]:
    """1 for every token that overlaps a replaced word, 0 otherwise."""
    return [int(end > start and any(start < b and a < end for a, b in spans)) for start, end in offsets]


def step_sentences(sentences: Sequence[str], batch_size: int, seed: int, step: int) -> list[str]:
    """The sentences of a training step's batch, a function of seed and step
    alone, so that a resumed run draws what an uninterrupted one would.

    A batch is padded to its longest sentence, and the corpus' sentences vary
    from five to forty words, so much of a random batch would be padding.
    Every ``BUCKET_BATCHES`` steps share a pool of that many batches' worth,
    sorted by length and cut into batches in shuffled order, which spends the
    time on real tokens instead (a step takes about a third less time), while
    every sentence stays equally likely to be drawn.
    """
    pool_index, position = divmod(step, BUCKET_BATCHES)
    rng = random.Random(f"{seed}/pool/{pool_index}")
    pool = sorted(rng.sample(sentences, batch_size * BUCKET_BATCHES), key=len)
    chunks = [pool[i : i + batch_size] for i in range(0, len(pool), batch_size)]
    rng.shuffle(chunks)
    return chunks[position]


def held_out(count: int, seed: int) -> list[Corrupted]:
    """Corrupted sentences from the held-out tenth of the docstrings, their
    replacements drawn from the training docstrings' words (so that the
    measure needs no downloaded corpus)."""
    _, sentences = corpus.split()
    rng = random.Random(seed)
    replacer = Replacer(corpus.split()[0])
    return [replacer.corrupt(s, rng) for s in sentences[:count]]


def everyday_held_out() -> list[Corrupted]:
    """The committed everyday-English replaced-token examples."""
    return [Corrupted(e["text"], tuple(map(tuple, e["spans"]))) for e in everyday.replaced()]


def f1(
    predict: Callable[[list[str]], list[list[tuple[int, int, bool]]]], examples: list[Corrupted]
) -> dict[str, float]:
    """Token-level precision, recall and F1 of the "replaced" class.

    ``predict`` maps texts to, per text, (start, end, replaced) for each token.
    """
    tp = fp = fn = 0
    for start in range(0, len(examples), 64):
        chunk = examples[start : start + 64]
        for example, tokens in zip(chunk, predict([e.text for e in chunk]), strict=True):
            truth = token_labels([(s, e) for s, e, _ in tokens], example.spans)
            for (_, _, guess), label in zip(tokens, truth, strict=True):
                tp += guess and label
                fp += guess and not label
                fn += label and not guess
    precision = tp / max(1, tp + fp)
    recall = tp / max(1, tp + fn)
    return {
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / max(1e-9, precision + recall),
    }


def _batches(
    sentences: Sequence[str], tokenizer: Any, replacer: Replacer, batch_size: int, seed: int
) -> Callable[[int], dict[str, torch.Tensor]]:
    """A step's batch: its sentences corrupted afresh (the step seeds the
    corruption), encoded, with a label per token (replaced or not)."""

    def batch(step: int) -> dict[str, torch.Tensor]:
        rng = random.Random(f"{seed}/corrupt/{step}")
        corrupted = [replacer.corrupt(s, rng) for s in step_sentences(sentences, batch_size, seed, step)]
        encoded = encode(tokenizer, [c.text for c in corrupted])
        encoded.pop("special_tokens_mask")
        offsets = encoded.pop("offset_mapping").tolist()
        labels = [token_labels(o, c.spans) for o, c in zip(offsets, corrupted, strict=True)]
        return {**encoded, "labels": torch.tensor(labels)}

    return batch


def _predictor(model: Any, tokenizer: Any) -> Callable[[list[str]], list[list[tuple[int, int, bool]]]]:
    """Each text's tokens as (start, end, replaced), special tokens and padding left out."""

    def predict(texts: list[str]) -> list[list[tuple[int, int, bool]]]:
        encoded = encode(tokenizer, texts)
        offsets = encoded.pop("offset_mapping").tolist()
        special = encoded.pop("special_tokens_mask").tolist()
        with torch.inference_mode():
            replaced = (model(**encoded).logits > 0).tolist()
        return [
            [(s, e, r) for (s, e), r, sp, m in zip(o, rep, spc, mask, strict=True) if not sp and m]
            for o, rep, spc, mask in zip(offsets, replaced, special, encoded["attention_mask"].tolist(), strict=True)
        ]

    return predict


def train(
    out_dir: Path,
    *,
    seed: int = 0,
    cycles: Sequence[int] = (6000, 16000),
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    state_dir: Path | None = None,
    save_every: int = 500,
    log: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    """Trains, saves a ``save_pretrained`` directory at ``out_dir`` and returns
    the held-out precision, recall and F1 it reached on docstrings and on
    everyday English. Corruptions are drawn afresh for every batch, so the
    model never sees the same mistakes twice; with ``state_dir`` the run
    saves its state there and resumes a saved one (:func:`.loop.fit`)."""
    torch.manual_seed(seed)
    started = time.monotonic()
    sentences = mix.training_sentences()
    tokenizer = build_tokenizer(sorted(set(sentences)))
    model = build_model(len(tokenizer), seed)

    recipe = {"seed": seed, "batch_size": batch_size, "vocab": len(tokenizer), "sentences": len(sentences)}
    fit(
        model,
        _batches(sentences, tokenizer, Replacer(sentences), batch_size, seed),
        cycles=cycles,
        learning_rate=learning_rate,
        log=log,
        name="electra",
        state_dir=state_dir / "electra" if state_dir else None,
        save_every=save_every,
        recipe=recipe,
    )

    predict = _predictor(model, tokenizer)
    scores = {
        "docstrings": f1(predict, held_out(len(corpus.split()[1]), seed + 1)),
        "everyday_english": f1(predict, everyday_held_out()),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    card = {
        "seed": seed,
        "cycles": list(cycles),
        "batch_size": batch_size,
        "learning_rate": learning_rate,
        "replace_rate": REPLACE_RATE,
        "replacement_power": Replacer.POWER,
        "corpus_sentences": {"train": len(sentences), "distinct": len(set(sentences))},
        "held_out_token_scores": scores,
        "train_seconds": round(time.monotonic() - started),
        "torch_threads": torch.get_num_threads(),
    }
    (out_dir / "training.json").write_text(json.dumps(card, indent=2) + "\n")
    log(f"electra held-out token scores: {json.dumps(scores)}")
    return scores
