"""Turns a growing list of token ids into text pieces that are safe to send.

A piece, once sent, cannot be taken back, so text is held back while it might
still change: a trailing U+FFFD (an incomplete multi-byte character under
byte-fallback vocabularies) and any tail that could be the start of a stop
sequence. The final text is computed by the same rules, which is what makes
the joined pieces of GenerateStream equal Generate's text.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

Decode = Callable[[Sequence[int]], str]


def find_stop(text: str, stops: Sequence[str], search_from: int = 0) -> int | None:
    """Index where the earliest stop sequence starts in ``text``, if any."""
    hits = [i for stop in stops if (i := text.find(stop, search_from)) >= 0]
    return min(hits) if hits else None


def _held_back(text: str, stops: Sequence[str]) -> int:
    """Length of the longest tail of ``text`` that begins some stop sequence."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if stop.startswith(text[-size:]):
                longest = size
                break
    return longest


class TextStream:
    """Incremental detokenizer for one generated sequence."""

    def __init__(self, decode: Decode, stops: Sequence[str] = (), *, lazy: bool = False) -> None:
        """``lazy`` skips decoding until :meth:`finish`: right for a sequence
        that is neither streamed nor watched for stop sequences."""
        self._decode = decode
        self._stops = tuple(stops)
        self._lazy = lazy and not self._stops
        self._ids: list[int] = []
        self.sent = ""
        self.stopped_at: int | None = None

    def push(self, token_id: int) -> str:
        """Adds a token; returns the new text that can be sent now (maybe '').

        Sets ``stopped_at`` (the text length to keep) once a stop sequence
        appears; the caller then ends the sequence.
        """
        self._ids.append(token_id)
        if self._lazy:
            return ""
        text = self._decode(self._ids)
        if self._stops:
            # A stop can only newly appear in the text not yet sent plus the
            # longest stop's worth of context before it.
            start = max(0, len(self.sent) - max(map(len, self._stops)))
            cut = find_stop(text, self._stops, start)
            if cut is not None:
                self.stopped_at = cut
                return self._advance(text[:cut])
        safe = len(text) - _held_back(text, self._stops)
        while safe > 0 and text[safe - 1] == "\ufffd":
            safe -= 1
        return self._advance(text[:safe])

    def finish(self) -> str:
        """The rest of the text, to be sent with the last piece."""
        text = self._decode(self._ids)
        if self.stopped_at is not None:
            text = text[: self.stopped_at]
        return self._advance(text)

    def _advance(self, text: str) -> str:
        if not text.startswith(self.sent):
            # The decoder rewrote text already sent (a tokenizer clean-up
            # rule); what was sent stands and only growth is appended.
            return ""
        piece = text[len(self.sent) :]
        self.sent = text
        return piece
