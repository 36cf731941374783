"""Likely originals of replaced words, from an ELECTRA generator.

ELECTRA pairs its discriminator with a generator, a small masked language
model; here the generator answers the question a product team asks next:
if this word was replaced, what was it? The word is masked as a whole (one
[MASK] for all its pieces) and the generator's distribution at that position
gives the candidates: whole words of its vocabulary, the word itself left
out, each with the generator's probability.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence

import torch
from transformers import ElectraForMaskedLM

from .domain import Suggestion
from .loading import load_pretrained
from .tokenization import encode_untrusted

MAX_ROWS_PER_FORWARD = 64

_Encoded = tuple[list[int], list[int], list[int]]
"""A text's token ids, token starts and token ends (code points)."""


class SuggestionGenerator:
    """Loads a masked language model by hub id or path and proposes words."""

    def __init__(self, model: str, *, device: torch.device, dtype: str) -> None:
        self.name, self.tokenizer, self.model, self.device, _ = load_pretrained(
            model, ElectraForMaskedLM, device=device, dtype=dtype
        )
        # Room for [CLS], [MASK] and [SEP].
        self.context = self.model.config.max_position_embeddings - 3
        special = set(self.tokenizer.all_special_ids)
        pieces = self.tokenizer.convert_ids_to_tokens(list(range(len(self.tokenizer))))
        self._pieces = pieces
        # A word is compared with the vocabulary as the tokenizer sees it
        # (lower-cased and accents stripped by an uncased one), so that it is
        # never suggested for itself.
        normalizer = getattr(getattr(self.tokenizer, "backend_tokenizer", None), "normalizer", None)
        self._normalize = normalizer.normalize_str if normalizer is not None else str
        self._whole_words = torch.tensor(
            [i not in special and not p.startswith("##") and any(c.isalnum() for c in p) for i, p in enumerate(pieces)],
            device=device,
        )

    def masked_input(self, encoded: _Encoded, start: int, end: int) -> tuple[list[int], int]:
        """[CLS] context [MASK] context [SEP] for the word at ``text[start:end]``
        (code points) of the text ``encoded``, the context cut evenly to the
        model's window; and the mask's position. The word's tokens are those
        between the last one ending before it and the first one starting
        after it."""
        ids, starts, ends = encoded
        left, right = ids[: bisect_right(ends, start)], ids[bisect_left(starts, end) :]
        keep_left = min(len(left), max(self.context // 2, self.context - len(right)))
        left, right = left[len(left) - keep_left :], right[: self.context - keep_left]
        tok = self.tokenizer
        return [tok.cls_token_id, *left, tok.mask_token_id, *right, tok.sep_token_id], 1 + len(left)

    def _encode(self, text: str) -> _Encoded:
        """The text's ids (special-looking text stays text) with each token's
        start and end, once per text however many of its words are asked."""
        ids, encoding = encode_untrusted(self.tokenizer, text, add_special_tokens=False, offsets=True)
        spans = encoding["offset_mapping"]
        return ids, [s for s, _ in spans], [e for _, e in spans]

    def suggest(self, asks: Sequence[tuple[str, int, int, int]]) -> list[tuple[Suggestion, ...]]:
        """For each ``(text, start, end, n)``: up to n suggestions, most probable first."""
        encoded = {text: self._encode(text) for text in {text for text, _, _, _ in asks}}
        answers: list[tuple[Suggestion, ...]] = []
        for first in range(0, len(asks), MAX_ROWS_PER_FORWARD):
            chunk = asks[first : first + MAX_ROWS_PER_FORWARD]
            inputs = [self.masked_input(encoded[text], start, end) for text, start, end, _ in chunk]
            padded = self.tokenizer.pad({"input_ids": [ids for ids, _ in inputs]}, return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(
                    input_ids=padded["input_ids"].to(self.device),
                    attention_mask=padded["attention_mask"].to(self.device),
                ).logits
            positions = torch.tensor([p for _, p in inputs], device=self.device)
            probabilities = logits[torch.arange(len(inputs), device=self.device), positions].float().softmax(dim=-1)
            # One top-k for the chunk: whole words only, one more than the
            # most asked, since the word itself may be among them.
            most = max(n for _, _, _, n in chunk)
            values, ids = probabilities.masked_fill(~self._whole_words, -1.0).topk(most + 1, dim=-1)
            for (text, start, end, n), row_ids, row_values in zip(chunk, ids.tolist(), values.tolist(), strict=True):
                word = self._normalize(text[start:end])
                found = [
                    Suggestion(self._pieces[i], p)
                    for i, p in zip(row_ids, row_values, strict=True)
                    if p >= 0 and self._pieces[i] != word
                ]
                answers.append(tuple(found[:n]))
        return answers
