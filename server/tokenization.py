"""Tokenizing text that comes from callers.

A caller's text must never become a control token: "</s>" inside a prompt
would end the input early, "[SEP]" would split an ELECTRA window. Splitting
special tokens stops the tokenizer from matching them as added tokens, but a
vocabulary can still hold them as ordinary pieces (T5's unigram vocabulary
does), so any special id the text itself produced is replaced by the
unknown token. Special tokens the tokenizer's template adds are kept.
"""

from __future__ import annotations

from typing import Any

from transformers import PreTrainedTokenizerBase

from .domain import TokenPiece


def encode_untrusted(
    tokenizer: PreTrainedTokenizerBase, text: str, *, add_special_tokens: bool, offsets: bool = False
) -> tuple[list[int], Any]:
    """(ids, encoding); ``encoding`` gives offsets and word ids when asked."""
    encoding = tokenizer(
        text,
        add_special_tokens=add_special_tokens,
        split_special_tokens=True,
        return_special_tokens_mask=True,
        return_offsets_mapping=offsets,
    )
    special = set(tokenizer.all_special_ids)
    unknown = tokenizer.unk_token_id
    ids = [
        unknown if token in special and not from_template else token
        for token, from_template in zip(encoding["input_ids"], encoding["special_tokens_mask"], strict=True)
    ]
    return ids, encoding


def token_pieces(tokenizer: PreTrainedTokenizerBase, text: str, *, add_special_tokens: bool) -> tuple[TokenPiece, ...]:
    """What Tokenize answers: each token of ``text`` as the model reads it,
    with its code-point offsets; tokens the template added are marked and
    have no offsets."""
    ids, encoding = encode_untrusted(tokenizer, text, add_special_tokens=add_special_tokens, offsets=True)
    pieces = tokenizer.convert_ids_to_tokens(ids)
    marks = encoding["special_tokens_mask"]
    return tuple(
        TokenPiece(i, piece, *((0, 0) if added else span), bool(added))
        for i, piece, span, added in zip(ids, pieces, encoding["offset_mapping"], marks, strict=True)
    )
