"""The rows of a T5 decoding batch, with every tensor that belongs to them.

A request joins a running batch with a decoder history of one token while
the rows already there have many, and its prompt may be longer or shorter
than theirs. Rows are therefore padded on both attention axes:

- the decoder side (token history, its mask and the self-attention cache) on
  the *left*. T5's self-attention bias depends only on the distance between
  query and key, and every row's newest token sits in the last column, so a
  row's distances are the same as if it decoded alone;
- the encoder side (its mask and the cross-attention cache) on the *right*,
  where the mask hides the padding and no position bias applies.

:meth:`BatchState.select` keeps some rows and trims columns that became
padding for every row left; :meth:`BatchState.concatenate` pads and joins
batches. They are the only two places that reshape per-row state, so a field
added here cannot be forgotten when rows leave or join.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers.cache_utils import DynamicCache, DynamicLayer, EncoderDecoderCache

from .domain import FinishReason, TokenLogprob
from .logits import RowParameters
from .text_stream import TextStream

HEADROOM = 32
"""Decoder positions a row's self-attention history has room for before its
buffer is copied into a larger one (which then has as much room again as it
holds)."""


class _History(DynamicLayer):
    """A self-attention cache layer whose keys and values sit in a buffer with
    room to grow, so a step writes one column in place. transformers'
    DynamicLayer concatenates instead, copying every row's whole history in
    every layer at every step: a tenth of a t5-small step at 40 tokens, and a
    share that grows with the length."""

    def __init__(self, keys: torch.Tensor | None = None, values: torch.Tensor | None = None) -> None:
        super().__init__()
        if keys is not None and values is not None:
            self._hold(keys, values, HEADROOM)

    def _hold(self, keys: torch.Tensor, values: torch.Tensor, room: int) -> None:
        length = keys.size(2)
        shape = (keys.size(0), keys.size(1), length + room, keys.size(3))
        self._key_buffer, self._value_buffer = keys.new_empty(shape), values.new_empty(shape)
        self._key_buffer[:, :, :length] = keys
        self._value_buffer[:, :, :length] = values
        self.device, self.is_initialized, self._length = keys.device, True, length
        self.keys, self.values = self._key_buffer[:, :, :length], self._value_buffer[:, :, :length]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self._hold(key_states, value_states, HEADROOM)
            return self.keys, self.values
        start, end = self._length, self._length + key_states.size(2)
        if end > self._key_buffer.size(2):
            self._hold(self.keys, self.values, max(HEADROOM, end))
        self._key_buffer[:, :, start:end] = key_states
        self._value_buffer[:, :, start:end] = value_states
        self._length = end
        self.keys, self.values = self._key_buffer[:, :, :end], self._value_buffer[:, :, :end]
        return self.keys, self.values


def _pad(tensor: torch.Tensor, dim: int, size: int, value: float, *, left: bool) -> torch.Tensor:
    """``tensor`` grown to ``size`` along ``dim`` with ``value``."""
    missing = size - tensor.size(dim)
    if missing == 0:
        return tensor
    widths = [0, 0] * (tensor.dim() - dim)
    widths[-2 if left else -1] = missing  # F.pad lists the last dimension first
    return F.pad(tensor, widths, value=value)


def _layers(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer; none for a cache nothing was written to yet."""
    return [(layer.keys, layer.values) for layer in cache.layers if layer.is_initialized and layer.keys.numel()]


def _joined_history(
    parts: list[list[tuple[torch.Tensor, torch.Tensor]]], rows: list[int]
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Self-attention caches of several batches, left-padded to the longest.
    Rows that have not decoded yet have no history: they get padding only."""
    known = next((p for p in parts if p), None)
    if known is None:
        return []
    length = max(p[0][0].size(2) for p in parts if p)
    joined = []
    for layer, (keys, _) in enumerate(known):
        heads, width = keys.size(1), keys.size(3)
        halves = []
        for i in (0, 1):
            pieces = [
                _pad(p[layer][i], 2, length, 0.0, left=True) if p else keys.new_zeros((n, heads, length, width))
                for p, n in zip(parts, rows, strict=True)
            ]
            halves.append(torch.cat(pieces))
        joined.append((halves[0], halves[1]))
    return joined


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
    encoder_mask: torch.Tensor  # (rows, S), right-padded
    cache: EncoderDecoderCache  # self-attention: (rows, heads, T - 1, d_kv); cross: (rows, heads, S, d_kv)
    start_id: int

    def __len__(self) -> int:
        return len(self.keys)

    def select(self, rows: Sequence[int]) -> BatchState:
        """The batch of ``rows`` only, without the padding no kept row needs."""
        index = torch.tensor(list(rows), dtype=torch.long, device=self.tokens.device)
        decoder_mask = self.decoder_mask.index_select(0, index)
        encoder_mask = self.encoder_mask.index_select(0, index)
        drop = decoder_mask.size(1) - int(decoder_mask.sum(dim=1).max())
        keep = int(encoder_mask.sum(dim=1).max())

        def own(kv: tuple[torch.Tensor, torch.Tensor], cut: slice) -> tuple[torch.Tensor, torch.Tensor]:
            return tuple(t.index_select(0, index)[:, :, cut].contiguous() for t in kv)  # type: ignore[return-value]

        self_kv = [own(kv, slice(drop, None)) for kv in _layers(self.cache.self_attention_cache)]
        cross_kv = [own(kv, slice(None, keep)) for kv in _layers(self.cache.cross_attention_cache)]
        return BatchState(
            keys=[self.keys[r] for r in rows],
            tokens=self.tokens.index_select(0, index)[:, drop:],
            decoder_mask=decoder_mask[:, drop:],
            generated=self.generated.index_select(0, index),
            params=self.params.select(index),
            max_new=[self.max_new[r] for r in rows],
            finish=[self.finish[r] for r in rows],
            texts=[self.texts[r] for r in rows],
            top_logprobs=[self.top_logprobs[r] for r in rows],
            logprobs=[self.logprobs[r] for r in rows],
            encoder_mask=encoder_mask[:, :keep],
            cache=_cache(self_kv, cross_kv),
            start_id=self.start_id,
        )

    @classmethod
    def concatenate(cls, parts: Sequence[BatchState]) -> BatchState:
        """One batch of every part's rows, in order."""
        if len(parts) == 1:
            return parts[0]
        length = max(p.tokens.size(1) for p in parts)
        source = max(p.encoder_mask.size(1) for p in parts)
        start_id = parts[0].start_id

        def joined(tensors: list[torch.Tensor], dim: int, size: int, value: float, *, left: bool) -> torch.Tensor:
            return torch.cat([_pad(t, dim, size, value, left=left) for t in tensors])

        self_kv = _joined_history([_layers(p.cache.self_attention_cache) for p in parts], [len(p) for p in parts])
        cross_layers = zip(*(_layers(p.cache.cross_attention_cache) for p in parts), strict=True)
        cross_kv = [
            tuple(joined([kv[i] for kv in layer], 2, source, 0.0, left=False) for i in (0, 1)) for layer in cross_layers
        ]
        return cls(
            keys=[k for p in parts for k in p.keys],
            tokens=joined([p.tokens for p in parts], 1, length, start_id, left=True),
            decoder_mask=joined([p.decoder_mask for p in parts], 1, length, 0, left=True),
            generated=torch.cat([p.generated for p in parts]),
            params=RowParameters.concatenate([p.params for p in parts]),
            max_new=[m for p in parts for m in p.max_new],
            finish=[f for p in parts for f in p.finish],
            texts=[t for p in parts for t in p.texts],
            top_logprobs=[k for p in parts for k in p.top_logprobs],
            logprobs=[lp for p in parts for lp in p.logprobs],
            encoder_mask=joined([p.encoder_mask for p in parts], 1, source, 0, left=False),
            cache=_cache(self_kv, cross_kv),  # type: ignore[arg-type]
            start_id=start_id,
        )

    def append(self, chosen: torch.Tensor) -> None:
        """Adds the step's token of every row (padding for finished rows)."""
        self.tokens = torch.cat([self.tokens, chosen[:, None]], dim=1)
        self.decoder_mask = torch.cat([self.decoder_mask, torch.ones_like(self.decoder_mask[:, :1])], dim=1)

    def rows_by_request(self) -> dict[int, list[int]]:
        rows: dict[int, list[int]] = {}
        for row, key in enumerate(self.keys):
            rows.setdefault(key, []).append(row)
        return rows


def _cache(
    self_kv: list[tuple[torch.Tensor, torch.Tensor]], cross_kv: list[tuple[torch.Tensor, torch.Tensor]]
) -> EncoderDecoderCache:
    """A cache holding these tensors; its cross-attention part counts as
    computed, so the decoder reuses it instead of projecting encoder states."""
    return EncoderDecoderCache(history_cache(self_kv), DynamicCache(cross_kv))


def history_cache(self_kv: list[tuple[torch.Tensor, torch.Tensor]] = ()) -> DynamicCache:
    """A self-attention cache of :class:`_History` layers, empty or holding ``self_kv``."""
    cache = DynamicCache()
    cache.layer_class_to_replicate = _History
    cache.layers = [_History(keys, values) for keys, values in self_kv]
    return cache
