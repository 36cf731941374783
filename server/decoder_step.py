"""One T5 decoder pass over a decoding batch, written out over transformers'
own modules and weights.

Calling ``model(...)`` for a one-token step runs transformers' whole
machinery every time: argument decorators, mask builders, cache
bookkeeping, a position bias recomputed and recombined with the mask in
every layer. On a CPU that costs more than the arithmetic once the linear
layers are int8 (t5-small, 16 rows, one thread: about 7 of 29 ms a step
outside any kernel). This pass makes the same calls on the same tensors in
the same order (the same layer norms, projections, ``scaled_dot_product_attention``
with the same additive masks, residuals and output scaling), so in float32
its logits are bit-for-bit transformers' (a unit test holds it to that), and
builds the masks and the position bias once per step instead of once per layer.

It serves the T5 architectures with transformers' SDPA attention, which is
how the engine loads them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .compiling import compiled
from .int8 import prepare_projection, project
from .slot_cache import HEADROOM, KeysValues, SlotCache, in_use, written


def _clamp_half(hidden: torch.Tensor) -> torch.Tensor:
    """What T5's blocks do to float16 activations so that they stay finite."""
    if hidden.dtype != torch.float16:
        return hidden
    largest = torch.finfo(hidden.dtype).max
    clamp_value = torch.where(torch.isinf(hidden).any(), largest - 1000, largest)
    return torch.clamp(hidden, min=-clamp_value, max=clamp_value)


class DecoderStep:
    """Logits of the next token for every row of a batch (see ``slot_cache.py``)."""

    def __init__(self, model: torch.nn.Module, *, compile: bool = False, precision: str = "float32") -> None:
        """With ``compile``, the pass (all but the per-step bookkeeping of
        :meth:`__call__`) runs compiled (``compiling.py``), which refuses
        float32."""
        if model.config._attn_implementation != "sdpa":
            raise ValueError(
                f"the decoder step mirrors SDPA attention; the model uses {model.config._attn_implementation}"
            )
        self._decoder = model.get_decoder()
        self._lm_head = model.lm_head
        self._output_scale = model.model_dim**-0.5 if model.config.scale_decoder_outputs else None
        self._first = self._decoder.block[0].layer[0].SelfAttention
        self._heads = self._first.n_heads
        self._head_dim = self._first.key_value_proj_dim
        self._dtype = self._decoder.embed_tokens.weight.dtype
        with torch.inference_mode():
            self._bias_table = self._first.compute_bias(1, HEADROOM, past_seen_tokens=HEADROOM - 1)[0, :, 0]
        self.compiled = compile
        self._min_width = 1
        if compile:
            for block in self._decoder.block:
                attention = block.layer[0].SelfAttention
                prepare_projection((attention.q, attention.k, attention.v))
            self._pass = compiled(self._pass, precision)
            # A width of one would be a graph of its own (torch specializes
            # size 1); a masked second column has weight zero.
            self._min_width = 2

    def __call__(self, last_tokens: torch.Tensor, decoder_mask: torch.Tensor, cache: SlotCache) -> torch.Tensor:
        """``last_tokens`` (rows, 1) are the newest decoder ids, ``decoder_mask``
        (rows, T) marks each row's real history (left-padded, the newest token
        last), whose length less one is where the row writes in ``cache``,
        which holds the rows' self-attention history and cross-attention keys
        and values. Returns (rows, vocab) logits."""
        positions = decoder_mask.sum(dim=1) - 1
        columns = max(int(positions.max()) + 1, self._min_width)
        source = max(int(cache.encoder_lengths.max()), self._min_width)
        cache.reserve(columns)
        self_mask, cross_mask = self._masks(positions, columns, cache.encoder_lengths, source)
        history, cross = cache.layers()
        # A fresh tensor made here, in inference mode like the step's others:
        # a compiled pass's guards tell a view or a plain tensor apart.
        tokens = last_tokens.reshape(-1, 1).clone()
        hidden = self._pass(tokens, positions, self_mask, cross_mask, history, cross)
        # The vocabulary head stays outside the compiled pass: its int8 weight
        # is prepacked for oneDNN, which inductor takes only as a frozen constant.
        return self._lm_head(hidden)[:, -1, :]

    def _pass(
        self,
        last_tokens: torch.Tensor,
        positions: torch.Tensor,
        self_mask: torch.Tensor,
        cross_mask: torch.Tensor,
        history: list[KeysValues],
        cross: list[KeysValues],
    ) -> torch.Tensor:
        """The decoder's blocks over the rows, writing each row's new key and
        value into ``history``; the masks' widths are the columns read.
        Returns the final hidden states, (rows, 1, d_model)."""
        rows, columns, source = last_tokens.size(0), self_mask.size(-1), cross_mask.size(-1)
        hidden = self._decoder.embed_tokens(last_tokens)
        for index, block in enumerate(self._decoder.block):
            layer = block.layer[0]
            attention = layer.SelfAttention
            normed = layer.layer_norm(hidden)
            query, key, value = project((attention.q, attention.k, attention.v), normed)
            keys, values = written(history[index], positions, columns, self._heads_of(key), self._heads_of(value))
            hidden = hidden + self._attend(attention, query, keys, values, self_mask)
            hidden = _clamp_half(hidden)
            layer = block.layer[1]
            attention = layer.EncDecAttention
            normed = layer.layer_norm(hidden)
            query = attention.q(normed)
            hidden = hidden + self._attend(attention, query, *in_use(cross[index], rows, source), cross_mask)
            hidden = _clamp_half(hidden)
            hidden = _clamp_half(block.layer[-1](hidden))
        hidden = self._decoder.final_layer_norm(hidden)
        if self._output_scale is not None:
            hidden = hidden * self._output_scale
        return hidden

    def _masks(
        self, positions: torch.Tensor, columns: int, encoder_lengths: torch.Tensor, source: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Additive attention masks: self-attention's carries T5's position
        bias for each row's own distances, looked up in one table by distance
        (the bias of the longest row, whose distances cover every row's), and
        hides columns past each row's newest; cross-attention's hides columns
        past each row's prompt."""
        device, lowest = positions.device, torch.finfo(self._dtype).min
        by_distance = self._by_distance(columns)
        column = torch.arange(columns, device=device)
        # Column j of a row at position p is distance j - p, entry j - p + columns - 1 of the table.
        entry = (column[None, :] - positions[:, None] + columns - 1).clamp(max=columns - 1)
        bias = by_distance[:, entry].transpose(0, 1)
        self_mask = torch.where((column[None, :] <= positions[:, None])[:, None, None, :], bias[:, :, None], lowest)
        no_bias = torch.zeros((1, self._heads, 1, source), device=device, dtype=self._dtype)
        real = torch.arange(source, device=device)[None, :] < encoder_lengths[:, None]
        return self_mask.contiguous(), torch.where(real[:, None, None, :], no_bias, lowest).contiguous()

    def _by_distance(self, columns: int) -> torch.Tensor:
        """T5's self-attention bias (heads, columns), entry k for distance
        k - (columns - 1), sliced from a table computed once for the longest
        history seen (doubling as histories grow): the same embedding rows
        ``compute_bias`` looks up, without its bucketing at every step (5% of
        a compiled step at one row)."""
        if self._bias_table.size(1) < columns:
            reach = max(columns, 2 * self._bias_table.size(1))
            device = self._bias_table.device
            self._bias_table = self._first.compute_bias(1, reach, device=device, past_seen_tokens=reach - 1)[0, :, 0]
        return self._bias_table[:, self._bias_table.size(1) - columns :]

    def _heads_of(self, projected: torch.Tensor) -> torch.Tensor:
        """(rows, 1, heads * d) as (rows, heads, 1, d)."""
        return projected.view(projected.size(0), 1, -1, self._head_dim).transpose(1, 2)

    def _attend(
        self,
        attention: torch.nn.Module,
        query: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """One attention sublayer's output, before its residual; ``query`` is
        its projection, (rows, 1, heads * d)."""
        query = self._heads_of(query)
        out = F.scaled_dot_product_attention(
            query, keys, values, attn_mask=mask, dropout_p=0.0, scale=attention.scaling
        )
        out = out.reshape(out.shape[0], -1, 1, values.shape[-1]).transpose(1, 2).contiguous()
        return attention.o(out.reshape(out.size(0), 1, -1).contiguous())
