"""T5-family text-to-text generation for batches of requests whose decoding
parameters differ.

Greedy and sampling requests share one decoding loop (:class:`GenerationSession`)
that advances every row by one token per :meth:`~GenerationSession.step`, with
per-row parameters and a random generator per request. GenerateStream streams
from that loop, and a cancelled request leaves its batch between two tokens.
Beam search, whose hypotheses cannot advance row by row on their own, runs
through ``model.generate`` once per group of requests with equal parameters.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from . import logits
from .domain import (
    FinishReason,
    GeneratedSequence,
    GenerationParameters,
    GenerationRequest,
    GenerationResult,
    StreamPiece,
)
from .errors import InvalidInput
from .loading import model_name, pick_device, pick_dtype
from .settings import Limits
from .text_stream import TextStream
from .tokenization import encode_untrusted
from .validation import check_generation

_SEEDS = random.SystemRandom()


@dataclass(frozen=True)
class PreparedGeneration:
    """A validated request with its prompt tokenized and its seed fixed."""

    request: GenerationRequest
    input_ids: tuple[int, ...]
    seed: int
    stream: bool = False

    @property
    def parameters(self) -> GenerationParameters:
        return self.request.parameters


@dataclass(frozen=True)
class StepEvent:
    """What one request got from a step: for a streamed request the new
    text (possibly empty), and the result once the request is complete."""

    index: int
    piece: StreamPiece | None = None
    result: GenerationResult | None = None


class T5Generator:
    """Loads a seq2seq checkpoint by hub id or path and generates for batches."""

    def __init__(self, model: str, *, device: str = "auto", dtype: str = "auto", limits: Limits | None = None) -> None:
        self.device = pick_device(device)
        self.dtype = pick_dtype(dtype, self.device)
        self.limits = limits or Limits()
        self.name = model_name(model)
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModelForSeq2SeqLM.from_pretrained(model, dtype=self.dtype).to(self.device).eval()
        config = self.model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = torch.tensor(eos if isinstance(eos, list) else [eos], device=self.device)
        self.pad_id = config.pad_token_id if config.pad_token_id is not None else self.tokenizer.pad_token_id
        start = config.decoder_start_token_id
        self.start_id = start if start is not None else self.model.config.decoder_start_token_id

    def prepare(self, request: GenerationRequest, *, stream: bool = False) -> PreparedGeneration:
        """Validates and tokenizes one request; raises :class:`InvalidInput`.

        Text that looks like a special token ("</s>") is tokenized as text, so
        a prompt cannot end itself early or inject control tokens.
        """
        check_generation(request, self.limits, streaming=stream)
        ids, _ = encode_untrusted(self.tokenizer, request.text, add_special_tokens=True)
        if len(ids) > self.limits.max_generation_input_tokens:
            raise InvalidInput(
                "text",
                f"is {len(ids)} tokens long; at most {self.limits.max_generation_input_tokens} "
                f"tokens of {self.name}'s tokenizer are allowed",
            )
        seed = request.parameters.seed
        return PreparedGeneration(request, tuple(ids), _SEEDS.getrandbits(63) if seed is None else seed, stream)

    def session(self, batch: Sequence[PreparedGeneration]) -> GenerationSession:
        return GenerationSession(self, batch)

    def generate(self, batch: Sequence[PreparedGeneration]) -> list[GenerationResult]:
        """Runs a batch to completion; results in the batch's order."""
        session = self.session(batch)
        results: dict[int, GenerationResult] = {}
        while not session.done:
            for event in session.step():
                if event.result is not None:
                    results[event.index] = event.result
        return [results[i] for i in range(len(batch))]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def encode_batch(self, prompts: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded input ids and attention mask for the encoder."""
        padded = self.tokenizer.pad({"input_ids": [list(p) for p in prompts]}, return_tensors="pt")
        return padded["input_ids"].to(self.device), padded["attention_mask"].to(self.device)

    def beam_search(self, group: Sequence[PreparedGeneration]) -> list[GenerationResult]:
        """Beam search for requests with equal parameters, as ``model.generate``
        does it; stop sequences then cut the returned beams."""
        p = group[0].parameters
        input_ids, mask = self.encode_batch([g.input_ids for g in group])
        with torch.inference_mode():
            output = self.model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                do_sample=False,
                num_beams=p.num_beams,
                num_return_sequences=p.num_return_sequences,
                max_new_tokens=p.max_new_tokens,
                min_new_tokens=p.min_new_tokens or None,
                repetition_penalty=p.repetition_penalty,
            )
        rows = output[:, 1:].tolist()  # without the decoder start token
        n = p.num_return_sequences
        return [
            GenerationResult(
                tuple(self._cut_beam(ids, p.stop_sequences) for ids in rows[i * n : (i + 1) * n]),
                len(prepared.input_ids),
                self.name,
            )
            for i, prepared in enumerate(group)
        ]

    def _cut_beam(self, ids: list[int], stops: Sequence[str]) -> GeneratedSequence:
        eos = set(self.eos_ids.tolist())
        text = TextStream(self.decode, stops, lazy=True)
        for count, token in enumerate(ids, start=1):
            if token in eos:
                text.finish()
                return GeneratedSequence(text.sent, FinishReason.EOS_TOKEN, count)
            text.push(token)
            if text.stopped_at is not None:
                text.finish()
                return GeneratedSequence(text.sent, FinishReason.STOP_SEQUENCE, count)
        text.finish()
        return GeneratedSequence(text.sent, FinishReason.LENGTH, len(ids))


class GenerationSession:
    """One batch being decoded, a token per :meth:`step` for every row.

    A request with ``num_return_sequences`` n owns n rows. Its rows stay in the
    batch until all of them finish, because transformers samples all n rows of
    a request in one ``multinomial`` call, and keeping the same call shape is
    what makes a seeded request reproduce ``model.generate`` exactly.
    """

    def __init__(self, generator: T5Generator, batch: Sequence[PreparedGeneration]) -> None:
        self._g = generator
        self._batch = list(batch)
        self._cancelled: set[int] = set()
        groups: dict[GenerationParameters, list[int]] = defaultdict(list)
        for index, prepared in enumerate(self._batch):
            if prepared.parameters.is_beam_search:
                groups[prepared.parameters].append(index)
        self._beam_groups = list(groups.values())
        self._stepped = [i for i, b in enumerate(self._batch) if not b.parameters.is_beam_search]
        self._started = False
        self.done = not self._batch

    def cancel(self, index: int) -> None:
        """Drops a request at the next step; it gets no further events."""
        self._cancelled.add(index)

    def step(self) -> list[StepEvent]:
        """Runs one beam-search group, or advances every live row one token."""
        if self._beam_groups:
            group = [i for i in self._beam_groups.pop(0) if i not in self._cancelled]
            events = []
            if group:
                results = self._g.beam_search([self._batch[i] for i in group])
                events = [StepEvent(i, result=r) for i, r in zip(group, results, strict=True)]
            self._update_done()
            return events
        if not self._started:
            self._start()
        self._prune(self._cancelled)
        events = self._decode_step() if self._row_request else []
        self._update_done()
        return events

    def _update_done(self) -> None:
        self.done = not self._beam_groups and (
            (self._started and not self._row_request) or not [i for i in self._stepped if i not in self._cancelled]
        )

    def _start(self) -> None:
        """Runs the encoder once per request and lays out one row per sequence."""
        g, device = self._g, self._g.device
        self._started = True
        live = [i for i in self._stepped if i not in self._cancelled]
        self._row_request: list[int] = []
        if not live:
            return
        input_ids, mask = g.encode_batch([self._batch[i].input_ids for i in live])
        with torch.inference_mode():
            hidden = g.model.get_encoder()(input_ids=input_ids, attention_mask=mask).last_hidden_state
        rows_per_request = [self._batch[i].parameters.num_return_sequences for i in live]
        expand = torch.repeat_interleave(
            torch.arange(len(live), device=device), torch.tensor(rows_per_request, device=device)
        )
        self._hidden = hidden.index_select(0, expand)
        self._mask = mask.index_select(0, expand)
        self._row_request = [i for i, n in zip(live, rows_per_request, strict=True) for _ in range(n)]
        rows = [self._batch[i] for i in self._row_request]
        params = [r.parameters for r in rows]
        self._params = logits.RowParameters(
            do_sample=torch.tensor([p.do_sample for p in params], device=device),
            temperature=torch.tensor([p.temperature for p in params], dtype=torch.float32, device=device),
            top_k=torch.tensor([p.top_k for p in params], dtype=torch.long, device=device),
            top_p_floor=torch.tensor([1 - p.top_p for p in params], dtype=torch.float32, device=device),
            top_p_on=torch.tensor([p.top_p < 1.0 for p in params], device=device),
            repetition_penalty=torch.tensor([p.repetition_penalty for p in params], dtype=torch.float32, device=device),
            min_new_tokens=torch.tensor([p.min_new_tokens for p in params], dtype=torch.long, device=device),
        )
        self._max_new = [p.max_new_tokens for p in params]
        self._tokens = torch.full((len(rows), 1), g.start_id, dtype=torch.long, device=device)
        self._generated = torch.zeros(len(rows), dtype=torch.long, device=device)
        self._finish: list[FinishReason | None] = [None] * len(rows)
        self._texts = [TextStream(g.decode, r.parameters.stop_sequences, lazy=not r.stream) for r in rows]
        self._cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        self._rng = {
            i: torch.Generator(device=device).manual_seed(self._batch[i].seed)
            for i in live
            if self._batch[i].parameters.do_sample
        }

    def _decode_step(self) -> list[StepEvent]:
        g = self._g
        with torch.inference_mode():
            out = g.model(
                encoder_outputs=BaseModelOutput(last_hidden_state=self._hidden),
                attention_mask=self._mask,
                decoder_input_ids=self._tokens[:, -1:],
                cache=self._cache,
                use_cache=True,
            )
            scores = logits.process(
                out.logits[:, -1, :].float(),
                self._params,
                seen=self._tokens,
                generated=self._generated,
                eos_ids=g.eos_ids,
            )
            chosen = scores.argmax(dim=-1)
            for request, rows in self._rows_by_request().items():
                if request in self._rng:
                    probs = scores[rows].softmax(dim=-1)
                    chosen[rows] = torch.multinomial(probs, 1, generator=self._rng[request]).squeeze(1)
        running = torch.tensor([f is None for f in self._finish], device=g.device)
        chosen = torch.where(running, chosen, g.pad_id)
        self._tokens = torch.cat([self._tokens, chosen[:, None]], dim=1)
        self._generated += running.long()

        eos = set(g.eos_ids.tolist())
        pieces: dict[int, str] = defaultdict(str)
        for row, token in enumerate(chosen.tolist()):
            if self._finish[row] is not None:
                continue
            request = self._row_request[row]
            text = self._texts[row]
            if token in eos:
                self._finish[row] = FinishReason.EOS_TOKEN
                continue
            pieces[request] += text.push(token)
            if text.stopped_at is not None:
                self._finish[row] = FinishReason.STOP_SEQUENCE
            elif int(self._generated[row]) >= self._max_new[row]:
                self._finish[row] = FinishReason.LENGTH
        return self._events(pieces)

    def _events(self, pieces: dict[int, str]) -> list[StepEvent]:
        events, complete = [], set()
        for request, rows in self._rows_by_request().items():
            prepared = self._batch[request]
            if all(self._finish[r] is not None for r in rows):
                complete.add(request)
                sequences = []
                for r in rows:
                    tail = self._texts[r].finish()
                    pieces[request] += tail
                    sequences.append(GeneratedSequence(self._texts[r].sent, self._finish[r], int(self._generated[r])))
                result = GenerationResult(tuple(sequences), len(prepared.input_ids), self._g.name)
                piece = None
                if prepared.stream:
                    last = sequences[0]
                    piece = StreamPiece(
                        pieces[request], last.generated_tokens, last.finish_reason, result.input_tokens, result.model
                    )
                events.append(StepEvent(request, piece, result))
            elif prepared.stream:
                row = rows[0]
                events.append(StepEvent(request, StreamPiece(pieces[request], int(self._generated[row]))))
        self._prune(complete)
        return events

    def _rows_by_request(self) -> dict[int, list[int]]:
        rows: dict[int, list[int]] = defaultdict(list)
        for row, request in enumerate(self._row_request):
            rows[request].append(row)
        return rows

    def _prune(self, requests: set[int]) -> None:
        """Removes the rows of ``requests`` from every per-row tensor and the cache."""
        if not self._row_request or not requests.intersection(self._row_request):
            return
        keep = [row for row, request in enumerate(self._row_request) if request not in requests]
        index = torch.tensor(keep, dtype=torch.long, device=self._g.device)
        self._row_request = [self._row_request[r] for r in keep]
        if not keep:
            return
        self._hidden = self._hidden.index_select(0, index)
        self._mask = self._mask.index_select(0, index)
        self._tokens = self._tokens.index_select(0, index)
        self._generated = self._generated.index_select(0, index)
        self._params = self._params.select(index)
        self._cache.reorder_cache(index)
        self._max_new = [self._max_new[r] for r in keep]
        self._finish = [self._finish[r] for r in keep]
        self._texts = [self._texts[r] for r in keep]
