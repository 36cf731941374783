"""Likely originals of replaced words, from an ELECTRA generator.

ELECTRA pairs its discriminator with a generator, a small masked language
model; here the generator answers the question a product team asks next:
if this word was replaced, what was it? The word is masked as a whole (one
[MASK] for all its pieces) and the generator's distribution at that position
gives the candidates: whole words of its vocabulary, the word itself left
out, each with the generator's probability.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import ElectraForMaskedLM

from .domain import Suggestion
from .loading import load_pretrained
from .tokenization import encode_untrusted

MAX_ROWS_PER_FORWARD = 64


class SuggestionGenerator:
    """Loads a masked language model by hub id or path and proposes words."""

    def __init__(self, model: str, *, device: torch.device, dtype: torch.dtype) -> None:
        self.name, self.tokenizer, self.model, self.device, _ = load_pretrained(
            model, ElectraForMaskedLM, device=device, dtype=dtype
        )
        # Room for [CLS], [MASK] and [SEP].
        self.context = self.model.config.max_position_embeddings - 3
        special = set(self.tokenizer.all_special_ids)
        pieces = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        self._pieces = pieces
        self._whole_words = torch.tensor(
            [i not in special and not p.startswith("##") and any(c.isalnum() for c in p) for i, p in enumerate(pieces)],
            device=device,
        )

    def masked_input(self, text: str, start: int, end: int) -> tuple[list[int], int]:
        """[CLS] context [MASK] context [SEP] for the word at ``text[start:end]``
        (code points), the context cut evenly to the model's window; and the
        mask's position. Text that looks like a special token stays text."""
        tok = self.tokenizer
        left, _ = encode_untrusted(tok, text[:start], add_special_tokens=False)
        right, _ = encode_untrusted(tok, text[end:], add_special_tokens=False)
        keep_left = min(len(left), max(self.context // 2, self.context - len(right)))
        left, right = left[len(left) - keep_left :], right[: self.context - keep_left]
        return [tok.cls_token_id, *left, tok.mask_token_id, *right, tok.sep_token_id], 1 + len(left)

    def suggest(self, asks: Sequence[tuple[str, int, int, int]]) -> list[tuple[Suggestion, ...]]:
        """For each ``(text, start, end, n)``: up to n suggestions, most probable first."""
        answers: list[tuple[Suggestion, ...]] = []
        for first in range(0, len(asks), MAX_ROWS_PER_FORWARD):
            chunk = asks[first : first + MAX_ROWS_PER_FORWARD]
            inputs = [self.masked_input(text, start, end) for text, start, end, _ in chunk]
            padded = self.tokenizer.pad({"input_ids": [ids for ids, _ in inputs]}, return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(
                    input_ids=padded["input_ids"].to(self.device),
                    attention_mask=padded["attention_mask"].to(self.device),
                ).logits
            positions = torch.tensor([p for _, p in inputs], device=self.device)
            probabilities = logits[torch.arange(len(inputs), device=self.device), positions].float().softmax(dim=-1)
            for (text, start, end, n), row in zip(chunk, probabilities, strict=True):
                answers.append(self._best(row, text[start:end].lower(), n))
        return answers

    def _best(self, probabilities: torch.Tensor, word: str, n: int) -> tuple[Suggestion, ...]:
        candidates = probabilities.masked_fill(~self._whole_words, -1.0)
        values, ids = candidates.topk(n + 1)
        found = [
            Suggestion(self._pieces[i], p)
            for i, p in zip(ids.tolist(), values.tolist(), strict=True)
            if p >= 0 and self._pieces[i] != word
        ]
        return tuple(found[:n])
