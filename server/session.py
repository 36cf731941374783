"""Step-level decoding: requests join a running batch between two steps and
leave it the step they finish or are cancelled.

A joining request's encoder runs once, its cross-attention keys and values
are computed from the encoder output and written to its rows' slots after the
running batch's (:class:`~.batch_state.BatchState`), with a history of the
decoder start token alone, so its first token already comes from the shared
decoder pass. A step is one decoder pass whoever joins, which matters because
a pass costs nearly the same for one row as for sixteen on a CPU (t5-small,
one thread: 14 ms for 1 row, 31 ms for 16), its weights being read either way.

Answers do not depend on the company a request keeps: every row has its own
decoding parameters, every sampling request its own random generator, and
padding is masked (see ``batch_state.py``). A request with
``num_return_sequences`` n owns n rows and keeps them until all n finish,
because transformers samples the n rows of a request in one ``multinomial``
call, and keeping that call's shape is what makes a seeded request reproduce
``model.generate``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from transformers import PreTrainedTokenizerBase

from . import logits
from .batch_state import BatchState
from .decoder_step import DecoderStep
from .domain import (
    FinishReason,
    GeneratedSequence,
    GenerationResult,
    PreparedGeneration,
    StreamPiece,
    TokenLogprob,
)
from .slot_cache import SlotCache
from .text_stream import TextStream


@dataclass(frozen=True)
class StepEvent:
    """What one request got from a step: for a streamed request new text,
    and the result once the request is complete."""

    key: int
    piece: StreamPiece | None = None
    result: GenerationResult | None = None


class DecodingModel(Protocol):
    """What a session needs of the model it decodes with: a loaded T5
    (``generator.T5Generator``), which builds sessions and so cannot be
    imported here."""

    model: Any
    tokenizer: PreTrainedTokenizerBase
    device: torch.device
    decoder_step: DecoderStep
    eos_ids: torch.Tensor
    pad_id: int
    start_id: int

    def encode_batch(self, prompts: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def cross_attention_states(self, hidden: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def beam_search(self, group: Sequence[PreparedGeneration]) -> list[GenerationResult]: ...


class GenerationSession:
    """Decodes every request added to it, a token per :meth:`step`."""

    def __init__(self, generator: DecodingModel) -> None:
        self._g = generator
        self._requests: dict[int, PreparedGeneration] = {}
        self._rng: dict[int, torch.Generator] = {}
        self._joining: list[int] = []
        self._beams: list[int] = []
        self._cancelled: set[int] = set()
        self._batch: BatchState | None = None
        self._next_key = 0

    @property
    def done(self) -> bool:
        """No request left: every one has its result or was cancelled."""
        return not self._requests

    @property
    def rows(self) -> int:
        """Rows taken by the requests in the session, running or about to join."""
        return sum(p.rows for p in self._requests.values())

    def add(self, prepared: PreparedGeneration, key: int | None = None) -> int:
        """Queues a request to join at the next step under ``key`` (a
        replica's request id; by default the next unused number); returns it."""
        if key is None:
            key = self._next_key
        if key in self._requests:
            raise ValueError(f"a request with key {key} is already in the session")
        self._next_key = max(self._next_key, key + 1)
        self._requests[key] = prepared
        (self._beams if prepared.parameters.is_beam_search else self._joining).append(key)
        return key

    def cancel(self, key: int) -> None:
        """Drops a request at the next step; it gets no further events."""
        if key in self._requests:
            self._cancelled.add(key)

    def step(self) -> list[StepEvent]:
        """Runs one beam-search group if any waits, advances every running
        row a token, and brings joining requests in with their first token."""
        self._drop_cancelled()
        events = self._beam_group() if self._beams else []
        if self._joining:
            joining, self._joining = self._prefill(self._joining), []
            if self._batch is None:
                self._batch = joining
            else:
                self._batch.join(joining)
        if self._batch is not None:
            pieces: dict[int, str] = defaultdict(str)
            new_tokens: dict[int, list[TokenLogprob]] = defaultdict(list)
            self._advance(self._batch, pieces, new_tokens)
            events += self._events(pieces, new_tokens)
        return events

    def _drop_cancelled(self) -> None:
        if not self._cancelled:
            return
        gone, self._cancelled = self._cancelled, set()
        for key in gone:
            self._requests.pop(key, None)
            self._rng.pop(key, None)
        self._joining = [k for k in self._joining if k not in gone]
        self._beams = [k for k in self._beams if k not in gone]
        self._leave(gone)

    def _leave(self, keys: set[int]) -> None:
        """Removes the rows of ``keys`` from the running batch."""
        if self._batch is None or not keys.intersection(self._batch.keys):
            return
        keep = [row for row, key in enumerate(self._batch.keys) if key not in keys]
        if keep:
            self._batch.keep(keep)
        else:
            self._batch = None

    def _beam_group(self) -> list[StepEvent]:
        """Beam search for the first waiting request and every other waiting
        one with the same parameters, as one ``model.generate`` call."""
        parameters = self._requests[self._beams[0]].parameters
        group = [k for k in self._beams if self._requests[k].parameters == parameters]
        self._beams = [k for k in self._beams if k not in group]
        results = self._g.beam_search([self._requests.pop(k) for k in group])
        return [StepEvent(k, result=r) for k, r in zip(group, results, strict=True)]

    def _prefill(self, keys: list[int]) -> BatchState:
        """Rows for joining requests: the encoder run once per request and
        the cross-attention keys and values computed from it, one row per
        returned sequence, no decoder history yet."""
        g, device = self._g, self._g.device
        prepared = [self._requests[k] for k in keys]
        input_ids, mask = g.encode_batch([p.input_ids for p in prepared])
        with torch.inference_mode():
            encoded = g.model.get_encoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state
        counts = torch.tensor([p.rows for p in prepared], device=device)
        expand = torch.repeat_interleave(torch.arange(len(keys), device=device), counts)
        row_keys = [k for k, p in zip(keys, prepared, strict=True) for _ in range(p.rows)]
        rows = [self._requests[k] for k in row_keys]
        for key, p in zip(keys, prepared, strict=True):
            if p.parameters.do_sample:
                self._rng[key] = torch.Generator(device=device).manual_seed(p.seed)
        n = len(row_keys)
        hidden = encoded.index_select(0, expand)
        return BatchState(
            keys=row_keys,
            tokens=torch.full((n, 1), g.start_id, dtype=torch.long, device=device),
            decoder_mask=torch.ones((n, 1), dtype=torch.long, device=device),
            generated=torch.zeros(n, dtype=torch.long, device=device),
            params=logits.RowParameters.of([r.parameters for r in rows], device),
            max_new=[r.parameters.max_new_tokens for r in rows],
            finish=[None] * n,
            texts=[TextStream(g.decode, r.parameters.stop_sequences, lazy=not r.stream) for r in rows],
            top_logprobs=[r.parameters.top_logprobs if r.parameters.logprobs else -1 for r in rows],
            logprobs=[[] for _ in rows],
            cache=SlotCache(g.cross_attention_states(hidden), mask.sum(dim=1).index_select(0, expand)),
            start_id=g.start_id,
        )

    def _advance(self, batch: BatchState, pieces: dict[int, str], new_tokens: dict[int, list[TokenLogprob]]) -> None:
        """One decoder pass over ``batch``: picks every row's next token,
        appends it and adds the new text to ``pieces`` (and the token's
        log-probability to ``new_tokens`` when its request asked)."""
        g = self._g
        with torch.inference_mode():
            step_logits = g.decoder_step(batch.tokens[:, -1:], batch.decoder_mask, batch.cache)
            scores = logits.process(
                step_logits.float(),
                batch.params,
                seen=batch.tokens,
                generated=batch.generated,
                eos_ids=g.eos_ids,
            )
            chosen = scores.argmax(dim=-1)
            for key, rows in batch.rows_by_request().items():
                if key in self._rng:
                    span = slice(rows[0], rows[-1] + 1)
                    probs = scores[span].softmax(dim=-1)
                    chosen[span] = torch.multinomial(probs, 1, generator=self._rng[key]).squeeze(1)
        running = torch.tensor([f is None for f in batch.finish], device=g.device)
        chosen = torch.where(running, chosen, g.pad_id)
        asking = [r for r, k in enumerate(batch.top_logprobs) if k >= 0 and batch.finish[r] is None]
        for row, entry in logits.log_probabilities(scores, chosen, asking, batch.top_logprobs, self._g.tokenizer):
            batch.logprobs[row].append(entry)
            new_tokens[batch.keys[row]].append(entry)
        batch.append(chosen)
        batch.generated += running.long()

        eos = set(g.eos_ids.tolist())
        generated = batch.generated.tolist()
        for row, token in enumerate(chosen.tolist()):
            if batch.finish[row] is not None:
                continue
            text = batch.texts[row]
            if token in eos:
                batch.finish[row] = FinishReason.EOS_TOKEN
                continue
            pieces[batch.keys[row]] += text.push(token)
            if text.stopped_at is not None:
                batch.finish[row] = FinishReason.STOP_SEQUENCE
            elif generated[row] >= batch.max_new[row]:
                batch.finish[row] = FinishReason.LENGTH

    def _events(self, pieces: dict[int, str], new_tokens: dict[int, list[TokenLogprob]]) -> list[StepEvent]:
        """Results of the requests whose rows all finished (their rows leave),
        and the new text of streamed requests still running."""
        assert self._batch is not None
        batch, events, complete = self._batch, [], set()
        generated = batch.generated.tolist()
        for key, rows in batch.rows_by_request().items():
            prepared = self._requests[key]
            if all(batch.finish[r] is not None for r in rows):
                complete.add(key)
                sequences = []
                for r in rows:
                    pieces[key] += batch.texts[r].finish()
                    sequences.append(
                        GeneratedSequence(batch.texts[r].sent, batch.finish[r], generated[r], tuple(batch.logprobs[r]))
                    )
                result = GenerationResult(tuple(sequences), len(prepared.input_ids))
                piece = None
                if prepared.stream:
                    last = sequences[0]
                    piece = StreamPiece(
                        pieces[key],
                        last.generated_tokens,
                        last.finish_reason,
                        result.input_tokens,
                        tokens=tuple(new_tokens[key]),
                    )
                events.append(StepEvent(key, piece, result))
            elif prepared.stream:
                piece = StreamPiece(pieces[key], generated[rows[0]], tokens=tuple(new_tokens[key]))
                events.append(StepEvent(key, piece))
        for key in complete:
            self._requests.pop(key)
            self._rng.pop(key, None)
        self._leave(complete)
        return events
