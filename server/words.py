"""From token scores to words and spans.

A word is what the tokenizer's pre-tokenizer splits (words and punctuation
marks apart); its score comes from its tokens' by the request's strategy.
A span is a run of adjacent replaced words, so that "New York" replaced as a
whole reads as one span.
"""

from __future__ import annotations

from collections.abc import Sequence

from .domain import Span, TokenScore, Word

_SCORINGS = {
    "max": max,
    "first": lambda scores: scores[0],
    "mean": lambda scores: sum(scores) / len(scores),
}


def words(
    text: str, tokens: Sequence[TokenScore], word_ids: Sequence[int | None], scoring: str, threshold: float
) -> list[Word]:
    """Every word of ``text`` in order, from its tokens (code-point offsets)."""
    grouped: dict[tuple[str, int], list[TokenScore]] = {}
    for position, (token, word) in enumerate(zip(tokens, word_ids, strict=True)):
        key = ("token", position) if word is None else ("word", word)
        grouped.setdefault(key, []).append(token)
    found = []
    for members in grouped.values():
        start, end = members[0].start, members[-1].end
        score = _SCORINGS[scoring]([t.score for t in members])
        found.append(Word(text[start:end], start, end, score, score >= threshold))
    return sorted(found, key=lambda w: w.start)


def spans(text: str, found: Sequence[Word]) -> list[Span]:
    """Runs of adjacent replaced words, each scored by its highest word."""
    runs: list[list[Word]] = []
    previous_replaced = False
    for word in found:
        if word.replaced:
            if previous_replaced:
                runs[-1].append(word)
            else:
                runs.append([word])
        previous_replaced = word.replaced
    return [Span(r[0].start, r[-1].end, text[r[0].start : r[-1].end], max(w.score for w in r)) for r in runs]
