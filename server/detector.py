"""ELECTRA replaced-token detection for batches of texts of any length.

A text longer than the model's window is cut into windows that overlap by
half; every token keeps the score from the window in which it sits farthest
from an edge, so each score is computed with context on both sides and the
whole text is covered, never truncated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import AutoTokenizer, ElectraForPreTraining

from .domain import Detection, DetectionRequest, Span, TokenScore
from .errors import InvalidInput
from .loading import model_name, pick_device, pick_dtype
from .settings import Limits
from .tokenization import encode_untrusted
from .validation import check_detection

MAX_WINDOWS_PER_FORWARD = 64


@dataclass(frozen=True)
class PreparedDetection:
    """A validated request with its text tokenized (no special tokens)."""

    request: DetectionRequest
    ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    words: tuple[int | None, ...]


def window_starts(length: int, size: int) -> list[int]:
    """Starts of windows of ``size`` tokens, half overlapping, covering ``length``."""
    if length <= size:
        return [0]
    step = max(1, size // 2)
    starts = list(range(0, length - size, step))
    return [*starts, length - size]


def best_window(position: int, starts: Sequence[int], size: int) -> int:
    """Index of the window where ``position`` is farthest from both edges."""
    return max(
        (i for i, s in enumerate(starts) if s <= position < s + size),
        key=lambda i: min(position - starts[i], starts[i] + size - 1 - position),
    )


class ReplacementDetector:
    """Loads an ELECTRA discriminator by hub id or path and scores batches."""

    def __init__(self, model: str, *, device: str = "auto", dtype: str = "auto", limits: Limits | None = None) -> None:
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.limits = limits or Limits()
        self.name = model_name(model)
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        if not self.tokenizer.is_fast:
            raise ValueError(f"{model}: character offsets need a fast tokenizer")
        self.model = ElectraForPreTraining.from_pretrained(model, dtype=self.dtype).to(self.device).eval()
        positions = self.model.config.max_position_embeddings
        model_max = self.tokenizer.model_max_length
        limit = min(positions, model_max) if model_max and model_max < 1_000_000 else positions
        # Room for [CLS] and [SEP] around every window.
        self.window = limit - 2

    def prepare(self, request: DetectionRequest, *, checked: bool = False) -> PreparedDetection:
        """Validates and tokenizes one request; raises :class:`InvalidInput`.
        ``checked``: as for :meth:`T5Generator.prepare`."""
        if not checked:
            check_detection(request, self.limits)
        ids, encoding = encode_untrusted(self.tokenizer, request.text, add_special_tokens=False, offsets=True)
        if len(ids) > self.limits.max_detection_input_tokens:
            raise InvalidInput(
                "text",
                f"is {len(ids)} tokens long; at most {self.limits.max_detection_input_tokens} "
                f"tokens of {self.name}'s tokenizer are allowed",
            )
        return PreparedDetection(
            request, tuple(ids), tuple(map(tuple, encoding["offset_mapping"])), tuple(encoding.word_ids())
        )

    def detect(self, batch: Sequence[PreparedDetection]) -> list[Detection]:
        """Scores a batch; results in the batch's order."""
        windows: list[tuple[int, int]] = []  # (request, start)
        for index, prepared in enumerate(batch):
            windows += [(index, s) for s in window_starts(len(prepared.ids), self.window)]
        window_scores: dict[tuple[int, int], list[float]] = {}
        for chunk_start in range(0, len(windows), MAX_WINDOWS_PER_FORWARD):
            chunk = windows[chunk_start : chunk_start + MAX_WINDOWS_PER_FORWARD]
            rows = [batch[i].ids[s : s + self.window] for i, s in chunk]
            for key, scores in zip(chunk, self._score_windows(rows), strict=True):
                window_scores[key] = scores
        return [self._detection(i, p, window_scores) for i, p in enumerate(batch)]

    def _score_windows(self, rows: Sequence[Sequence[int]]) -> list[list[float]]:
        tok = self.tokenizer
        inputs = [[tok.cls_token_id, *row, tok.sep_token_id] for row in rows]
        padded = tok.pad({"input_ids": inputs}, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(
                input_ids=padded["input_ids"].to(self.device),
                attention_mask=padded["attention_mask"].to(self.device),
            ).logits
        probabilities = torch.sigmoid(logits.float()).tolist()
        return [p[1 : 1 + len(row)] for p, row in zip(probabilities, rows, strict=True)]

    def _detection(
        self, index: int, prepared: PreparedDetection, window_scores: dict[tuple[int, int], list[float]]
    ) -> Detection:
        text, threshold = prepared.request.text, prepared.request.threshold
        starts = window_starts(len(prepared.ids), self.window)
        names = self.tokenizer.convert_ids_to_tokens(list(prepared.ids))
        tokens = []
        for position, (name, (start, end)) in enumerate(zip(names, prepared.offsets, strict=True)):
            window = starts[best_window(position, starts, self.window)]
            score = window_scores[(index, window)][position - window]
            tokens.append(TokenScore(name, start, end, score, score >= threshold))
        spans = _replaced_words(text, tokens, prepared.words)
        replaced = sum(t.replaced for t in tokens)
        return Detection(
            tuple(tokens),
            tuple(spans),
            replaced / len(tokens) if tokens else 0.0,
            self.name,
            input_tokens=len(tokens),
        )


def _replaced_words(text: str, tokens: Sequence[TokenScore], words: Sequence[int | None]) -> list[Span]:
    """Whole words (as the tokenizer's pre-tokenizer splits them) that hold at
    least one replaced token, each scored by its most suspicious token."""
    grouped: dict[tuple[str, int], list[TokenScore]] = {}
    for position, (token, word) in enumerate(zip(tokens, words, strict=True)):
        key = ("token", position) if word is None else ("word", word)
        grouped.setdefault(key, []).append(token)
    spans = []
    for members in grouped.values():
        if any(t.replaced for t in members):
            start, end = members[0].start, members[-1].end
            spans.append(Span(start, end, text[start:end], max(t.score for t in members)))
    return sorted(spans, key=lambda s: s.start)
