"""T5-family text-to-text generation: loading, request preparation, and
the two ways a request is decoded.

Greedy and sampling requests decode in a :class:`~.session.GenerationSession`,
one token per step for every row, and may join or leave between steps. Beam
search, whose hypotheses cannot advance row by row on their own, runs through
``model.generate`` once per group of requests with equal parameters.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import replace

import torch
from transformers import AutoModelForSeq2SeqLM

from .decoder_step import DecoderStep
from .domain import (
    FinishReason,
    GeneratedSequence,
    GenerationParameters,
    GenerationRequest,
    GenerationResult,
    ModelDescription,
    PreparedGeneration,
    Tokenization,
)
from .errors import InvalidInput
from .limits import Limits
from .loading import load_pretrained
from .session import GenerationSession
from .text_stream import TextStream
from .tokenization import encode_untrusted, token_pieces
from .validation import check_generation, check_text, generation_fields

_SEEDS = random.SystemRandom()


T5_ARCHITECTURES = {"t5", "mt5"}


class T5Generator:
    """Loads a T5-architecture checkpoint by hub id or path and generates for
    batches. Other seq2seq families are refused at load time: the decoder
    step is written out over T5's blocks (``decoder_step.py``)."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        limits: Limits | None = None,
        compile: bool = False,
    ) -> None:
        """With ``compile``, the decoder step runs compiled (int8 and bfloat16
        only, see ``compiling.py``); :meth:`warm_up` compiles it."""
        self.limits = limits or Limits()
        self._pretrained = load_pretrained(model, AutoModelForSeq2SeqLM, device=device, dtype=dtype)
        self.name, self.tokenizer, self.model, self.device, self.precision = self._pretrained
        if self.model.config.model_type not in T5_ARCHITECTURES:
            raise ValueError(
                f"{model} is a {self.model.config.model_type!r} model; the T5 deployment serves the T5 "
                f"architectures ({', '.join(sorted(T5_ARCHITECTURES))}: T5, Flan-T5, mT5)"
            )
        self.decoder_step = DecoderStep(self.model, compile=compile, precision=self.precision)
        config = self.model.generation_config
        eos = config.eos_token_id if config.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = torch.tensor(eos if isinstance(eos, list) else [eos], device=self.device)
        self.pad_id = config.pad_token_id if config.pad_token_id is not None else self.tokenizer.pad_token_id
        start = config.decoder_start_token_id
        self.start_id = start if start is not None else self.model.config.decoder_start_token_id

    def prepare(self, request: GenerationRequest, *, stream: bool = False) -> PreparedGeneration:
        """Validates and tokenizes one request; raises :class:`InvalidInput`.
        Every field is checked here, where the tokenizer is, and nowhere
        else: the ingress only converts and forwards.

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

    def tokenize(self, text: str) -> Tokenization:
        """The prompt's tokens as :meth:`prepare` makes them, the end-of-
        sequence token the server adds included (as billed)."""
        check_text(text, self.limits)
        tokens = token_pieces(self.tokenizer, text, add_special_tokens=True)
        return Tokenization(tokens, self.limits.max_generation_input_tokens)

    def describe(self) -> ModelDescription:
        return self._pretrained.describe(
            "t5",
            max_input_tokens=self.limits.max_generation_input_tokens,
            max_input_chars=self.limits.max_input_chars,
            accepted=generation_fields(self.limits),
        )

    def session(self, batch: Sequence[PreparedGeneration] = ()) -> GenerationSession:
        """A decoding session starting with ``batch``, whose keys are their
        positions in it; more requests may join it later."""
        session = GenerationSession(self)
        for prepared in batch:
            session.add(prepared)
        return session

    def generate(self, batch: Sequence[PreparedGeneration]) -> list[GenerationResult]:
        """Runs a batch to completion; results in the batch's order. The
        whole-request path that tests, the bench's engine phase and its plain
        server use; replicas step sessions instead."""
        session = self.session(batch)
        results: dict[int, GenerationResult] = {}
        while not session.done:
            for event in session.step():
                if event.result is not None:
                    results[event.key] = event.result
        return [results[i] for i in range(len(batch))]

    def warm_up(self, steps: int = 8) -> list[float]:
        """Decodes a throwaway one-row request of ``steps`` forced tokens and
        returns the seconds of its later, warm steps. A process's first torch
        calls are many times slower than the rest: paid on a caller's request,
        they slow it, and a step-time estimate made from them (admission's)
        refuses work that would fit. A compiled step is compiled here, for
        one row and then for two (its two graphs), before the timed request."""
        parameters = GenerationParameters(min_new_tokens=steps, max_new_tokens=steps)
        if self.decoder_step.compiled:
            for rows in (1, 2):
                self.generate([self.prepare(GenerationRequest("warm up", parameters)) for _ in range(rows)])
        session = self.session([self.prepare(GenerationRequest("warm up", parameters))])
        seconds = []
        while not session.done:
            started = time.perf_counter()
            session.step()
            seconds.append(time.perf_counter() - started)
        return seconds[len(seconds) // 2 :]

    def cross_attention_states(self, hidden: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Every decoder layer's cross-attention keys and values for encoder
        states ``hidden`` (rows, length, d_model), computed as T5's attention
        computes them on its first decoder step, so that rows can join a
        batch whose cache already holds everyone else's."""
        states = []
        with torch.inference_mode():
            for block in self.model.get_decoder().block:
                attention = block.layer[1].EncDecAttention
                shape = (hidden.size(0), hidden.size(1), -1, attention.key_value_proj_dim)
                keys = attention.k(hidden).view(shape).transpose(1, 2)
                values = attention.v(hidden).view(shape).transpose(1, 2)
                states.append((keys, values))
        return states

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def encode_batch(self, prompts: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded input ids and attention mask for the encoder."""
        padded = self.tokenizer.pad({"input_ids": [list(p) for p in prompts]}, return_tensors="pt")
        return padded["input_ids"].to(self.device), padded["attention_mask"].to(self.device)

    def beam_search(self, group: Sequence[PreparedGeneration]) -> list[GenerationResult]:
        """Beam search for requests with equal parameters, as ``model.generate``
        does it; stop sequences then cut the returned beams. With logprobs,
        each sequence carries the score transformers ranked it by."""
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
                output_scores=p.logprobs,
                return_dict_in_generate=True,
            )
        rows = output.sequences[:, 1:].tolist()  # without the decoder start token
        scores = output.sequences_scores.tolist() if p.logprobs else [None] * len(rows)
        beams = [
            replace(self._cut_beam(ids, p.stop_sequences), score=score) for ids, score in zip(rows, scores, strict=True)
        ]
        n = p.num_return_sequences
        return [
            GenerationResult(tuple(beams[i * n : (i + 1) * n]), len(prepared.input_ids))
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
