"""ELECTRA replaced-token detection for batches of texts of any length.

A text longer than the model's window is cut into windows that overlap by
half; every token keeps the score from the window in which it sits farthest
from an edge, so each score is computed with context on both sides and the
whole text is covered, never truncated.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
from transformers import ElectraForPreTraining

from . import words as wording
from .compiling import compiled
from .discriminator_pass import DiscriminatorPass, supported
from .domain import Detection, DetectionRequest, ModelDescription, Tokenization, TokenScore
from .errors import InvalidInput, NotConfigured
from .limits import Limits
from .loading import load_pretrained
from .offsets import converter
from .suggestions import SuggestionGenerator
from .tokenization import encode_untrusted, token_pieces
from .validation import check_detection, check_text, detection_fields

MAX_WINDOWS_PER_FORWARD = 64


@dataclass(frozen=True)
class PreparedDetection:
    """A validated request with its text tokenized (no special tokens)."""

    request: DetectionRequest
    ids: tuple[int, ...]
    offsets: tuple[tuple[int, int], ...]
    words: tuple[int | None, ...]

    @property
    def deadline(self) -> float | None:
        return self.request.deadline

    @property
    def tokens(self) -> int:
        """What the request costs a batch: its tokens (each window adds two
        special tokens, which batch budgets leave out)."""
        return len(self.ids)


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
    """Loads an ELECTRA discriminator by hub id or path and scores batches;
    with ``generator`` (a masked language model sharing the text's language),
    it also suggests originals for replaced words."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        limits: Limits | None = None,
        generator: str | None = None,
        max_batch_tokens: int = 8192,
        compile: bool = False,
    ) -> None:
        self.limits = limits or Limits()
        self.max_batch_tokens = max_batch_tokens
        self._pretrained = load_pretrained(model, ElectraForPreTraining, device=device, dtype=dtype)
        self.name, self.tokenizer, self.model, self.device, self.precision = self._pretrained
        if not self.tokenizer.is_fast:
            raise ValueError(f"{model}: character offsets need a fast tokenizer")
        positions = self.model.config.max_position_embeddings
        model_max = self.tokenizer.model_max_length
        limit = min(positions, model_max) if model_max and model_max < 1_000_000 else positions
        # Room for [CLS] and [SEP] around every window.
        self.window = limit - 2
        self._forward = DiscriminatorPass(self.model) if supported(self.model) else self._model_forward
        if compile:
            self._forward = compiled(self._forward, self.precision)
        self.generator = (
            None if generator is None else SuggestionGenerator(generator, device=self.device, dtype=self.precision)
        )

    def prepare(self, request: DetectionRequest) -> PreparedDetection:
        """Validates and tokenizes one request; raises :class:`InvalidInput`,
        or :class:`NotConfigured` for suggestions without a generator."""
        check_detection(request, self.limits)
        if request.suggestions and self.generator is None:
            raise NotConfigured(
                "suggestions: this server has no generator; set electra.generator_model (a hub id or "
                "path of an ELECTRA generator, or 'embedded')"
            )
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
        """Scores a batch; results in the batch's order. Windows are sorted by
        length and cut into forward passes of at most ``max_batch_tokens``
        padded tokens, so that short texts never pad to a long neighbour."""
        windows: list[tuple[int, int]] = []  # (request, start)
        for index, prepared in enumerate(batch):
            windows += [(index, s) for s in window_starts(len(prepared.ids), self.window)]
        windows.sort(key=lambda w: self._window_length(batch[w[0]], w[1]))
        window_scores: dict[tuple[int, int], list[float]] = {}
        for chunk in self._forward_passes(batch, windows):
            rows = [batch[i].ids[s : s + self.window] for i, s in chunk]
            for key, scores in zip(chunk, self._score_windows(rows), strict=True):
                window_scores[key] = scores
        detections = [self._detection(i, p, window_scores) for i, p in enumerate(batch)]
        if self.generator is not None:
            detections = self._with_suggestions(batch, detections)
        return [_in_unit(d, p.request) for d, p in zip(detections, batch, strict=True)]

    def warm_up(self) -> float:
        """Scores throwaway texts, one alone and two together, and returns
        the seconds it took: a process's first passes are many times slower
        than the rest (and, with ``compile``, compile both graphs), which no
        caller should wait for."""
        started = time.perf_counter()
        for texts in (["warm up"], ["warm up", "and once more"]):
            self.detect([self.prepare(DetectionRequest(text)) for text in texts])
        return time.perf_counter() - started

    def _with_suggestions(self, batch: Sequence[PreparedDetection], detections: list[Detection]) -> list[Detection]:
        """One generator pass for every replaced word of the requests that ask."""
        assert self.generator is not None
        asks = [
            (i, w, (p.request.text, word.start, word.end, p.request.suggestions))
            for i, (p, d) in enumerate(zip(batch, detections, strict=True))
            if p.request.suggestions
            for w, word in enumerate(d.words)
            if word.replaced
        ]
        if not asks:
            return detections
        found = self.generator.suggest([ask for _, _, ask in asks])
        updated = [list(d.words) for d in detections]
        for (i, w, _), suggestions in zip(asks, found, strict=True):
            updated[i][w] = replace(updated[i][w], suggestions=suggestions)
        return [replace(d, words=tuple(ws)) for d, ws in zip(detections, updated, strict=True)]

    def tokenize(self, text: str) -> Tokenization:
        """The tokens DetectReplacements scores and bills: [CLS] and [SEP]
        frame each window and are neither scored nor counted."""
        check_text(text, self.limits)
        tokens = token_pieces(self.tokenizer, text, add_special_tokens=False)
        return Tokenization(tokens, self.limits.max_detection_input_tokens)

    def describe(self) -> ModelDescription:
        return self._pretrained.describe(
            "electra",
            max_input_tokens=self.limits.max_detection_input_tokens,
            max_input_chars=self.limits.max_input_chars,
            accepted=detection_fields(self.limits, suggestions=self.generator is not None),
            suggestions=self.generator.name if self.generator is not None else "",
        )

    def _window_length(self, prepared: PreparedDetection, start: int) -> int:
        """Tokens of a window in a forward pass, [CLS] and [SEP] included."""
        return min(self.window, len(prepared.ids) - start) + 2

    def _forward_passes(
        self, batch: Sequence[PreparedDetection], windows: list[tuple[int, int]]
    ) -> list[list[tuple[int, int]]]:
        """Consecutive windows (sorted by length) grouped so that a pass's
        rows times its longest row stay within the token budget."""
        passes: list[list[tuple[int, int]]] = []
        for window in windows:
            length = self._window_length(batch[window[0]], window[1])
            current = passes[-1] if passes else None
            if (
                current is None
                or len(current) == MAX_WINDOWS_PER_FORWARD
                or (len(current) + 1) * length > self.max_batch_tokens
            ):
                passes.append([window])
            else:
                current.append(window)
        return passes

    def _score_windows(self, rows: Sequence[Sequence[int]]) -> list[list[float]]:
        tok = self.tokenizer
        inputs = [[tok.cls_token_id, *row, tok.sep_token_id] for row in rows]
        padded = tok.pad({"input_ids": inputs}, return_tensors="pt")
        with torch.inference_mode():
            logits = self._forward(padded["input_ids"].to(self.device), padded["attention_mask"].to(self.device))
        probabilities = torch.sigmoid(logits.float()).tolist()
        return [p[1 : 1 + len(row)] for p, row in zip(probabilities, rows, strict=True)]

    def _model_forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits

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
        found = wording.words(text, tokens, prepared.words, prepared.request.word_scoring, threshold)
        replaced = sum(t.replaced for t in tokens)
        return Detection(
            tuple(tokens),
            tuple(wording.spans(text, found)),
            replaced / len(tokens) if tokens else 0.0,
            input_tokens=len(tokens),
            words=tuple(found),
        )


def _in_unit(detection: Detection, request: DetectionRequest) -> Detection:
    """The detection with every offset in the unit the request asked for."""
    if request.offset_unit == "code_point":
        return detection
    at = converter(request.text, request.offset_unit)
    return replace(
        detection,
        tokens=tuple(replace(t, start=at(t.start), end=at(t.end)) for t in detection.tokens),
        replaced_spans=tuple(replace(s, start=at(s.start), end=at(s.end)) for s in detection.replaced_spans),
        words=tuple(replace(w, start=at(w.start), end=at(w.end)) for w in detection.words),
        offset_unit=request.offset_unit,
    )
