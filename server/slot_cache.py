"""Key/value slots for the rows of a T5 decoding batch, which rows enter and
leave without the batch being copied.

Every decoder layer keeps two buffers per kind of attention, shaped
(slots, heads, capacity, d_kv): row ``r`` of the batch owns slot ``r``. Its
self-attention history starts at column 0 and grows to the right, one column
per step, written where that row's history ends; its cross-attention keys
and values fill columns 0 up to its prompt's length. Columns past a row's own
length are masked out, so a row attends to exactly the keys it would attend
to alone, in the same columns, and its neighbours' lengths change nothing
but the masked tail (whose weights are exactly zero).

A joining request writes its own slots (its cross-attention states, computed
once when it joins); a leaving one moves only the rows after it down, in
order, so a request's rows stay adjacent. Buffers grow by doubling, the one
time every row is copied, and are dropped with the batch when its last row
leaves.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

HEADROOM = 32
"""Self-attention columns a fresh buffer has room for."""

KeysValues = tuple[torch.Tensor, torch.Tensor]


def _grown(buffer: torch.Tensor, slots: int, columns: int) -> torch.Tensor:
    """``buffer`` with room for at least ``slots`` rows and more than
    ``columns`` columns, doubling what falls short; itself when it has the
    room. The spare column keeps what a pass reads from ever being the whole
    buffer, so those views have one layout at every step (a compiled pass
    would otherwise need a graph for each)."""
    have_slots, have_columns = buffer.size(0), buffer.size(2)
    if slots <= have_slots and columns < have_columns:
        return buffer
    shape = list(buffer.shape)
    shape[0] = have_slots if slots <= have_slots else max(slots, 2 * have_slots)
    shape[2] = have_columns if columns < have_columns else max(columns + 1, 2 * have_columns)
    # Zeros, not empty memory: masked columns get weight zero, and zero
    # times a NaN left in uninitialised memory would still be NaN.
    grown = buffer.new_zeros(shape)
    grown[:have_slots, :, :have_columns] = buffer
    return grown


def _spared(states: torch.Tensor) -> torch.Tensor:
    """``states`` copied into a buffer with the spare column of :func:`_grown`."""
    rows, heads, columns, width = states.shape
    buffer = states.new_zeros((rows, heads, columns + 1, width))
    buffer[:, :, :columns] = states
    return buffer


class SlotCache:
    """The self- and cross-attention keys and values of a batch's rows."""

    @torch.inference_mode()
    def __init__(self, cross: Sequence[KeysValues], encoder_lengths: torch.Tensor) -> None:
        """``cross`` holds every layer's cross-attention (keys, values) of
        the rows, (rows, heads, S, d_kv), right-padded; ``encoder_lengths``
        each row's real prompt length. The self-attention buffers are made
        at the first step, since a joining part never steps on its own."""
        self._cross = [(_spared(keys), _spared(values)) for keys, values in cross]
        self._self: list[KeysValues] = []
        self.encoder_lengths = encoder_lengths.clone()
        self.rows = encoder_lengths.size(0)

    @torch.inference_mode()
    def join(self, part: SlotCache) -> None:
        """Writes ``part``'s rows into the slots after this cache's rows."""
        start, end = self.rows, self.rows + part.rows
        columns = part._cross[0][0].size(2)
        for layer, (theirs, (keys, values)) in enumerate(zip(part._cross, self._cross, strict=True)):
            keys, values = _grown(keys, end, columns), _grown(values, end, columns)
            keys[start:end, :, :columns] = theirs[0]
            values[start:end, :, :columns] = theirs[1]
            self._cross[layer] = (keys, values)
        self._self = [(_grown(k, end, 0), _grown(v, end, 0)) for k, v in self._self]
        self.encoder_lengths = torch.cat([self.encoder_lengths, part.encoder_lengths])
        self.rows = end

    @torch.inference_mode()
    def keep(self, rows: Sequence[int]) -> None:
        """Keeps ``rows`` (ascending), moving each kept row after the first
        one that leaves down to close the gap."""
        moved = [(slot, row) for slot, row in enumerate(rows) if slot != row]
        if moved:
            device = self.encoder_lengths.device
            to = torch.tensor([slot for slot, _ in moved], device=device)
            source = torch.tensor([row for _, row in moved], device=device)
            for buffer in (t for pair in (*self._cross, *self._self) for t in pair):
                buffer[to] = buffer[source]
        index = torch.tensor(list(rows), dtype=torch.long, device=self.encoder_lengths.device)
        self.encoder_lengths = self.encoder_lengths.index_select(0, index)
        self.rows = len(rows)

    def reserve(self, columns: int) -> None:
        """Room for ``columns`` self-attention columns in every slot in use."""
        if not self._self:
            template = self._cross[0][0]
            _, heads, _, width = template.shape
            shape = (self.rows, heads, max(HEADROOM, columns + 1), width)
            self._self = [(template.new_zeros(shape), template.new_zeros(shape)) for _ in self._cross]
            return
        self._self = [(_grown(k, self.rows, columns), _grown(v, self.rows, columns)) for k, v in self._self]

    def layers(self) -> tuple[list[KeysValues], list[KeysValues]]:
        """Every layer's self- and cross-attention buffers, (slots, heads,
        capacity, d_kv): what a decoder pass reads and writes (see
        :func:`written` and :func:`in_use`)."""
        return self._self, self._cross


def written(
    buffers: KeysValues, positions: torch.Tensor, columns: int, keys: torch.Tensor, values: torch.Tensor
) -> KeysValues:
    """Writes each row's new key and value (rows, heads, 1, d_kv) at its own
    ``positions`` in a layer's self-attention ``buffers``; returns the keys and
    values ``columns`` wide (the longest row's history and its new column)."""
    buffer_keys, buffer_values = buffers
    slots = torch.arange(keys.size(0), device=positions.device)
    buffer_keys[slots, :, positions] = keys[:, :, 0]
    buffer_values[slots, :, positions] = values[:, :, 0]
    return in_use((buffer_keys, buffer_values), keys.size(0), columns)


def in_use(buffers: KeysValues, rows: int, columns: int) -> KeysValues:
    """The first ``rows`` slots of a layer's buffers, ``columns`` wide."""
    keys, values = buffers
    return keys[:rows, :, :columns], values[:rows, :, :columns]
