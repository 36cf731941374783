"""Trains the embedded tiny T5 checkpoint: its own SentencePiece vocabulary
and a small encoder-decoder fitted to the tasks of :mod:`.t5_tasks`.
"""

from __future__ import annotations

import io
import itertools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import sentencepiece as spm
import torch
from transformers import T5Config, T5ForConditionalGeneration, T5Tokenizer

from . import corpus
from .loop import fit
from .t5_tasks import TASKS, Example, held_out_examples, training_examples

VOCAB_SIZE = 2000
TASK_SENTENCES = 20_000


def build_tokenizer(seed: int) -> T5Tokenizer:
    """A unigram SentencePiece vocabulary, ids laid out as T5 expects (pad 0,
    eos 1, unk 2), wrapped as a fast T5 tokenizer.

    Task prompts alone are too uniform for the unigram trainer (it stops at a
    few hundred pieces and splits even the task prefixes), so general English
    from the standard library's docstrings is mixed in.
    """
    sentences = itertools.chain(
        corpus.split()[0],
        itertools.chain.from_iterable(
            (e.prompt, e.answer) for e in itertools.islice(training_examples(seed), TASK_SENTENCES // 2)
        ),
    )
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=sentences,
        model_writer=model,
        vocab_size=VOCAB_SIZE,
        model_type="unigram",
        pad_id=0,
        eos_id=1,
        unk_id=2,
        bos_id=-1,
        character_coverage=1.0,
        normalization_rule_name="identity",
        num_threads=1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = [(processor.id_to_piece(i), processor.get_score(i)) for i in range(processor.get_piece_size())]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_model(vocab_size: int, seed: int) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size,
        d_model=128,
        d_kv=32,
        d_ff=512,
        num_layers=3,
        num_decoder_layers=3,
        num_heads=4,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=64,
        dropout_rate=0.0,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    return T5ForConditionalGeneration(config)


def exact_match(
    generate: Callable[[list[str]], list[str]], examples: list[Example], batch_size: int = 64
) -> dict[str, float]:
    """Exact-match rate per task and overall, ``generate`` mapping prompts to answers."""
    hits: dict[str, list[bool]] = {task: [] for task in TASKS}
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        for example, answer in zip(chunk, generate([e.prompt for e in chunk]), strict=True):
            hits[example.task].append(answer == example.answer)
    scores = {task: sum(h) / len(h) for task, h in hits.items() if h}
    scores["overall"] = sum(sum(h) for h in hits.values()) / len(examples)
    return scores


def train(
    out_dir: Path,
    *,
    seed: int = 0,
    steps: int = 8000,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    log: Callable[[str], None] = print,
) -> dict[str, float]:
    """Trains, saves a ``save_pretrained`` directory at ``out_dir`` and returns
    the held-out exact-match scores it reached."""
    torch.manual_seed(seed)
    started = time.monotonic()
    tokenizer = build_tokenizer(seed)
    model = build_model(len(tokenizer), seed)

    def batches() -> Iterator[dict[str, torch.Tensor]]:
        stream = training_examples(seed)
        while True:
            batch = list(itertools.islice(stream, batch_size))
            inputs = tokenizer([e.prompt for e in batch], padding=True, return_tensors="pt")
            labels = tokenizer([e.answer for e in batch], padding=True, return_tensors="pt").input_ids
            labels[labels == tokenizer.pad_token_id] = -100
            yield {**inputs, "labels": labels}

    # The T5 example stream is read in order, so this loop is not resumable
    # (it takes no state directory); each step takes the stream's next batch.
    stream = batches()
    fit(model, lambda _step: next(stream), steps=steps, learning_rate=learning_rate, log=log, name="t5")

    def generate(prompts: list[str]) -> list[str]:
        encoded = tokenizer(prompts, padding=True, return_tensors="pt")
        with torch.inference_mode():
            output = model.generate(**encoded, max_new_tokens=24, do_sample=False, num_beams=1)
        return tokenizer.batch_decode(output, skip_special_tokens=True)

    scores = exact_match(generate, held_out_examples(1000, seed + 1))
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    card = {
        "seed": seed,
        "steps": steps,
        "batch_size": batch_size,
        "tasks": sorted(TASKS),
        "held_out_exact_match": scores,
        "train_seconds": round(time.monotonic() - started),
        "torch_threads": torch.get_num_threads(),
    }
    (out_dir / "training.json").write_text(json.dumps(card, indent=2) + "\n")
    log(f"t5 held-out exact match: {json.dumps(scores)}")
    return scores
