"""One ELECTRA discriminator forward pass, written out over transformers' own
modules and weights.

``model(...)`` wraps every layer in decorators, keyword plumbing, a
gradient-checkpointing shim and ``apply_chunking_to_forward`` (which calls
``inspect.signature`` in every layer of every pass). On a CPU, at one text, that
is a fifth of the pass (electra-small int8, one thread: py-spy). This pass
makes the same calls on the same tensors in the same order (the embeddings
module, transformers' own mask builder and SDPA attention function, each
layer's projections, activation and layer norms; dropout is the identity in
evaluation and is left out), so its float32 logits are bit-for-bit
transformers' (a unit test holds it to that). At int8, the query, key and
value projections are one integer product (``int8.project``).

It serves encoder-only ELECTRA discriminators with SDPA attention and no
feed-forward chunking, which is how the engine loads them; others run
through ``model(...)``.
"""

from __future__ import annotations

import torch
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import create_bidirectional_mask

from .int8 import project


def supported(model: torch.nn.Module) -> bool:
    config = model.config
    return (
        config._attn_implementation == "sdpa"
        and not config.is_decoder
        and not getattr(config, "add_cross_attention", False)
        and not getattr(config, "chunk_size_feed_forward", 0)
    )


class DiscriminatorPass:
    """Per-token replacement logits for a padded batch of windows."""

    def __init__(self, model: torch.nn.Module) -> None:
        if not supported(model):
            raise ValueError("the discriminator pass mirrors an encoder-only ELECTRA with SDPA attention")
        self._electra = model.electra
        self._head = model.discriminator_predictions

    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(rows, tokens) logits, as ``model(input_ids, attention_mask).logits``."""
        electra = self._electra
        hidden = electra.embeddings(input_ids=input_ids)
        if hasattr(electra, "embeddings_project"):
            hidden = electra.embeddings_project(hidden)
        # What ElectraModel builds for an encoder (its _create_attention_masks,
        # whose keywords differ between transformers releases).
        mask = create_bidirectional_mask(config=electra.config, inputs_embeds=hidden, attention_mask=attention_mask)
        for layer in electra.encoder.layer:
            hidden = self._layer(layer, hidden, mask)
        return self._head(hidden)

    @staticmethod
    def _layer(layer: torch.nn.Module, hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        attention = layer.attention.self
        rows = hidden.shape[:-1]
        shape = (*rows, -1, attention.attention_head_size)
        query, key, value = (
            projected.view(shape).transpose(1, 2)
            for projected in project((attention.query, attention.key, attention.value), hidden)
        )
        attended, _ = sdpa_attention_forward(
            attention, query, key, value, mask, dropout=0.0, scaling=attention.scaling, position_ids=None
        )
        attended = attended.reshape(*rows, -1).contiguous()
        out = layer.attention.output
        attended = out.LayerNorm(out.dense(attended) + hidden)
        feed = layer.intermediate
        inner = feed.intermediate_act_fn(feed.dense(attended))
        out = layer.output
        return out.LayerNorm(out.dense(inner) + attended)
