"""The rows of a T5 decoding batch, with every tensor that belongs to them.

A request joins a running batch with a decoder history of one token while
the rows already there have many, and its prompt may be longer or shorter
than theirs. The keys and values of both attentions sit in slots, one per
row, that a row writes from its own first column (see ``slot_cache.py``);
the token history kept for the logits processors (repetition penalty, the
forced length) is left-padded, so every row's newest token is in the last
column.

:meth:`BatchState.join` and :meth:`BatchState.keep` are the only two places
that change which rows a batch holds, so a field added here cannot be
forgotten when rows join or leave.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .domain import FinishReason, TokenLogprob
from .logits import RowParameters
from .slot_cache import SlotCache
from .text_stream import TextStream


def _pad_left(tensor: torch.Tensor, size: int, value: float) -> torch.Tensor:
    """``tensor`` (rows, T) grown to ``size`` columns on the left with ``value``."""
    missing = size - tensor.size(1)
    return F.pad(tensor, [missing, 0], value=value) if missing else tensor


@dataclass
class BatchState:
    """Per-row decoding state. Row ``r`` belongs to request ``keys[r]``; the
    rows of one request (``num_return_sequences``) are always adjacent."""

    keys: list[int]
    tokens: torch.Tensor  # (rows, T) decoder ids so far, the newest last
    decoder_mask: torch.Tensor  # (rows, T) 1 where ``tokens`` is real, 0 for left padding
    generated: torch.Tensor  # (rows,) tokens generated, a finished row stops counting
    params: RowParameters
    max_new: list[int]
    finish: list[FinishReason | None]
    texts: list[TextStream]
    top_logprobs: list[int]  # alternatives each row reports per token; -1: no log-probabilities
    logprobs: list[list[TokenLogprob]]  # per row, one per generated token when asked
    cache: SlotCache  # row r in slot r
    start_id: int

    def __len__(self) -> int:
        return len(self.keys)

    def keep(self, rows: Sequence[int]) -> None:
        """Keeps ``rows`` only (ascending), without the token padding no kept
        row needs; the others leave."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.tokens.device)
        decoder_mask = self.decoder_mask.index_select(0, index)
        drop = decoder_mask.size(1) - int(decoder_mask.sum(dim=1).max())
        self.cache.keep(rows)
        self.keys = [self.keys[r] for r in rows]
        self.tokens = self.tokens.index_select(0, index)[:, drop:]
        self.decoder_mask = decoder_mask[:, drop:]
        self.generated = self.generated.index_select(0, index)
        self.params = self.params.select(index)
        self.max_new = [self.max_new[r] for r in rows]
        self.finish = [self.finish[r] for r in rows]
        self.texts = [self.texts[r] for r in rows]
        self.top_logprobs = [self.top_logprobs[r] for r in rows]
        self.logprobs = [self.logprobs[r] for r in rows]

    def join(self, part: BatchState) -> None:
        """Adds ``part``'s rows after this batch's, in order."""
        length = max(self.tokens.size(1), part.tokens.size(1))
        self.cache.join(part.cache)
        self.keys += part.keys
        self.tokens = torch.cat([_pad_left(t, length, self.start_id) for t in (self.tokens, part.tokens)])
        self.decoder_mask = torch.cat([_pad_left(m, length, 0) for m in (self.decoder_mask, part.decoder_mask)])
        self.generated = torch.cat([self.generated, part.generated])
        self.params = RowParameters.concatenate([self.params, part.params])
        self.max_new += part.max_new
        self.finish += part.finish
        self.texts += part.texts
        self.top_logprobs += part.top_logprobs
        self.logprobs += part.logprobs

    def append(self, chosen: torch.Tensor) -> None:
        """Adds the step's token of every row (padding for finished rows)."""
        self.tokens = torch.cat([self.tokens, chosen[:, None]], dim=1)
        self.decoder_mask = torch.cat([self.decoder_mask, torch.ones_like(self.decoder_mask[:, :1])], dim=1)

    def rows_by_request(self) -> dict[int, list[int]]:
        rows: dict[int, list[int]] = {}
        for row, key in enumerate(self.keys):
            rows.setdefault(key, []).append(row)
        return rows
