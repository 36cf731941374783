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
from transformers.cache_utils import EncoderDecoderCache

from .int8 import project


def _clamp_half(hidden: torch.Tensor) -> torch.Tensor:
    """What T5's blocks do to float16 activations so that they stay finite."""
    if hidden.dtype != torch.float16:
        return hidden
    largest = torch.finfo(hidden.dtype).max
    clamp_value = torch.where(torch.isinf(hidden).any(), largest - 1000, largest)
    return torch.clamp(hidden, min=-clamp_value, max=clamp_value)


class DecoderStep:
    """Logits of the next token for every row of a batch (see ``batch_state.py``)."""

    def __init__(self, model: torch.nn.Module) -> None:
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

    def __call__(
        self,
        last_tokens: torch.Tensor,
        decoder_mask: torch.Tensor,
        encoder_mask: torch.Tensor,
        cache: EncoderDecoderCache,
    ) -> torch.Tensor:
        """``last_tokens`` (rows, 1) are the newest decoder ids, ``decoder_mask``
        (rows, T) marks real history (the newest token last), ``encoder_mask``
        (rows, S) real prompt positions; ``cache`` holds T - 1 positions of
        self-attention history, which this pass extends by one, and the
        cross-attention keys and values. Returns (rows, vocab) logits."""
        hidden = self._decoder.embed_tokens(last_tokens)
        length = decoder_mask.size(1)
        dtype = hidden.dtype
        lowest = torch.finfo(dtype).min
        bias = self._first.compute_bias(1, length, device=hidden.device, past_seen_tokens=length - 1)
        self_mask = torch.where(decoder_mask.bool()[:, None, None, :], bias, lowest).contiguous()
        no_bias = torch.zeros((1, self._heads, 1, encoder_mask.size(1)), device=hidden.device, dtype=dtype)
        cross_mask = torch.where(encoder_mask.bool()[:, None, None, :], no_bias, lowest).contiguous()
        history, cross = cache.self_attention_cache, cache.cross_attention_cache.layers
        for index, block in enumerate(self._decoder.block):
            layer = block.layer[0]
            attention = layer.SelfAttention
            normed = layer.layer_norm(hidden)
            query, key, value = project((attention.q, attention.k, attention.v), normed)
            keys, values = history.update(self._heads_of(key), self._heads_of(value), index)
            hidden = hidden + self._attend(attention, query, keys, values, self_mask)
            hidden = _clamp_half(hidden)
            layer = block.layer[1]
            attention = layer.EncDecAttention
            normed = layer.layer_norm(hidden)
            query = attention.q(normed)
            hidden = hidden + self._attend(attention, query, cross[index].keys, cross[index].values, cross_mask)
            hidden = _clamp_half(hidden)
            hidden = _clamp_half(block.layer[-1](hidden))
        hidden = self._decoder.final_layer_norm(hidden)
        if self._output_scale is not None:
            hidden = hidden * self._output_scale
        return self._lm_head(hidden)[:, -1, :]

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
