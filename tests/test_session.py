"""Step-level decoding with requests joining a running batch and leaving it:
every answer equals plain transformers' ``model.generate`` for that request
alone, whatever it was batched with and whenever it joined."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from transformers.cache_utils import DynamicCache, EncoderDecoderCache
from transformers.modeling_outputs import BaseModelOutput

from t5electra.server.batch_state import BatchState
from t5electra.server.domain import FinishReason, GenerationParameters, GenerationRequest, GenerationResult
from t5electra.server.embedded import TINY_T5
from t5electra.server.generator import T5Generator
from t5electra.server.session import GenerationSession
from t5electra.server.slot_cache import HEADROOM

from support.reference import PROMPTS, hf_generate, text_of

pytestmark = pytest.mark.unit


@dataclass
class Run:
    """What a session gave each request, by the label the test chose."""

    results: dict[str, GenerationResult] = field(default_factory=dict)
    pieces: dict[str, list[str]] = field(default_factory=dict)
    joined_at: dict[str, int] = field(default_factory=dict)
    widths: list[int] = field(default_factory=list)


def drive(
    generator: T5Generator,
    schedule: list[tuple[int, str, GenerationRequest, bool]],
    *,
    cancel: dict[str, int] | None = None,
) -> Run:
    """Steps a session, adding each ``(step, label, request, stream)`` before
    that step and cancelling ``label`` before step ``cancel[label]``."""
    session = GenerationSession(generator)
    run, labels, step = Run(), {}, 0
    pending = sorted(schedule, key=lambda s: s[0])
    while pending or not session.done:
        while pending and pending[0][0] <= step:
            _, label, request, stream = pending.pop(0)
            labels[session.add(generator.prepare(request, stream=stream))] = label
            run.joined_at[label] = step
        for label, at in (cancel or {}).items():
            if at == step:
                session.cancel(next(k for k, v in labels.items() if v == label))
        for event in session.step():
            label = labels[event.key]
            if event.piece is not None:
                run.pieces.setdefault(label, []).append(event.piece.text)
            if event.result is not None:
                run.results[label] = event.result
        run.widths.append(session._batch.tokens.size(1) if session._batch is not None else 0)
        step += 1
    return run


def expected_texts(generator: T5Generator, request: GenerationRequest) -> list[str]:
    p = request.parameters
    kwargs: dict = {"max_new_tokens": p.max_new_tokens, "do_sample": p.do_sample}
    if p.min_new_tokens:
        kwargs["min_new_tokens"] = p.min_new_tokens
    if p.repetition_penalty != 1.0:
        kwargs["repetition_penalty"] = p.repetition_penalty
    if p.do_sample:
        kwargs.update(temperature=p.temperature, num_return_sequences=p.num_return_sequences)
        kwargs.update(top_k=p.top_k or None, top_p=p.top_p if p.top_p < 1 else None)
    rows = hf_generate(generator, [request.text], seed=p.seed, **kwargs)
    return [text_of(generator, row) for row in rows]


def test_greedy_requests_joining_mid_decode_equal_transformers(generator: T5Generator) -> None:
    long = GenerationParameters(min_new_tokens=30, max_new_tokens=30)
    schedule = [
        (0, "long", GenerationRequest(PROMPTS[4], long), False),
        (0, "a", GenerationRequest(PROMPTS[0]), False),
        (3, "b", GenerationRequest(PROMPTS[2]), False),
        (3, "c", GenerationRequest(PROMPTS[1], GenerationParameters(max_new_tokens=5)), False),
        (7, "d", GenerationRequest(PROMPTS[3], GenerationParameters(repetition_penalty=1.9, min_new_tokens=6)), False),
        (12, "e", GenerationRequest(PROMPTS[0]), False),
        (25, "f", GenerationRequest(PROMPTS[2]), False),
    ]
    run = drive(generator, schedule)
    for _, label, request, _ in schedule:
        assert [s.text for s in run.results[label].sequences] == expected_texts(generator, request), label
    assert run.results["long"].sequences[0].generated_tokens == 30


def test_seeded_sampling_joining_mid_decode_equals_transformers(generator: T5Generator) -> None:
    sampled = GenerationParameters(do_sample=True, seed=321, temperature=2.5, top_k=20, num_return_sequences=3)
    nucleus = GenerationParameters(do_sample=True, seed=9, temperature=1.5, top_p=0.8)
    schedule = [
        (0, "greedy", GenerationRequest(PROMPTS[4], GenerationParameters(min_new_tokens=20, max_new_tokens=20)), False),
        (2, "sampled", GenerationRequest(PROMPTS[2], sampled), False),
        (5, "nucleus", GenerationRequest(PROMPTS[0], nucleus), True),
    ]
    run = drive(generator, schedule)
    for _, label, request, _ in schedule:
        assert [s.text for s in run.results[label].sequences] == expected_texts(generator, request), label


def test_several_sampling_requests_joining_in_one_step_keep_their_rows(generator: T5Generator) -> None:
    """Requests that join together, each with several rows, keep their own
    prompts and generators."""
    first = GenerationParameters(do_sample=True, seed=5, temperature=2.0, num_return_sequences=2)
    second = GenerationParameters(do_sample=True, seed=6, temperature=1.5, top_k=30, num_return_sequences=3)
    schedule = [
        (0, "busy", GenerationRequest(PROMPTS[4], GenerationParameters(min_new_tokens=15, max_new_tokens=15)), False),
        (3, "first", GenerationRequest(PROMPTS[0], first), False),
        (3, "greedy", GenerationRequest(PROMPTS[3]), False),
        (3, "second", GenerationRequest(PROMPTS[2], second), False),
    ]
    run = drive(generator, schedule)
    for _, label, request, _ in schedule:
        assert [s.text for s in run.results[label].sequences] == expected_texts(generator, request), label


def test_stream_joining_mid_decode_joins_to_generate_text(generator: T5Generator) -> None:
    stopped = GenerationParameters(stop_sequences=("Hund",))
    schedule = [
        (0, "busy", GenerationRequest(PROMPTS[4], GenerationParameters(min_new_tokens=25, max_new_tokens=25)), True),
        (4, "plain", GenerationRequest(PROMPTS[2]), True),
        (6, "stopped", GenerationRequest(PROMPTS[2], stopped), True),
    ]
    run = drive(generator, schedule)
    alone = {label: generator.generate([generator.prepare(r)])[0] for _, label, r, _ in schedule}
    for label, result in alone.items():
        assert "".join(run.pieces[label]) == result.sequences[0].text == run.results[label].sequences[0].text
        assert run.results[label].sequences == result.sequences
    assert alone["stopped"].sequences[0].finish_reason == FinishReason.STOP_SEQUENCE
    assert len([p for p in run.pieces["plain"] if p]) > 1


def test_cancelled_row_leaves_and_the_others_are_unchanged(generator: T5Generator) -> None:
    long = GenerationParameters(min_new_tokens=50, max_new_tokens=50)
    schedule = [
        (0, "cancelled", GenerationRequest(PROMPTS[4], long), True),
        (0, "a", GenerationRequest(PROMPTS[1]), False),
        (2, "b", GenerationRequest(PROMPTS[2], GenerationParameters(do_sample=True, seed=4, temperature=2.0)), False),
    ]
    run = drive(generator, schedule, cancel={"cancelled": 5})
    assert "cancelled" not in run.results
    assert len(run.pieces["cancelled"]) <= 5
    for _, label, request, _ in schedule[1:]:
        assert [s.text for s in run.results[label].sequences] == expected_texts(generator, request), label


def test_cancel_before_joining_never_runs(generator: T5Generator) -> None:
    session = GenerationSession(generator)
    key = session.add(generator.prepare(GenerationRequest(PROMPTS[0])))
    session.cancel(key)
    assert session.step() == []
    assert session.done


def test_padding_leaves_with_the_rows_that_needed_it(generator: T5Generator) -> None:
    """The token history is as wide as the longest running row, not the
    longest row ever seen: memory follows the rows in the batch."""
    schedule = [
        (0, "long", GenerationRequest(PROMPTS[4], GenerationParameters(min_new_tokens=40, max_new_tokens=40)), False),
        (35, "short", GenerationRequest(PROMPTS[3], GenerationParameters(min_new_tokens=10, max_new_tokens=10)), False),
    ]
    run = drive(generator, schedule)
    # Before "long" leaves (its 40th token, step 39) the history holds its 39
    # tokens and the start token; after, only the 5 of "short" and its start.
    assert run.widths[38] == 40
    assert run.widths[39] == 6


def test_beam_search_shares_the_session_with_decoding_rows(generator: T5Generator) -> None:
    beam = GenerationParameters(num_beams=3, num_return_sequences=2)
    schedule = [
        (0, "greedy", GenerationRequest(PROMPTS[4], GenerationParameters(min_new_tokens=12, max_new_tokens=12)), True),
        (3, "beam", GenerationRequest(PROMPTS[1], beam), False),
    ]
    run = drive(generator, schedule)
    expected = hf_generate(generator, [PROMPTS[1]], num_beams=3, num_return_sequences=2, do_sample=False)
    assert [s.text for s in run.results["beam"].sequences] == [text_of(generator, e) for e in expected]
    assert [s.text for s in run.results["greedy"].sequences] == expected_texts(generator, schedule[0][2])


@torch.inference_mode()
def test_rows_keep_their_slots_and_histories_as_others_join_and_leave(generator: T5Generator) -> None:
    """Rows joined at different times write their histories from their own
    slot's first column; a row after one that leaves moves down with its
    history, and the token padding no kept row needs is trimmed."""
    session = GenerationSession(generator)
    session.add(generator.prepare(GenerationRequest(PROMPTS[0], GenerationParameters(min_new_tokens=6))))
    for _ in range(4):
        session.step()
    session.add(generator.prepare(GenerationRequest(PROMPTS[2], GenerationParameters(min_new_tokens=6))))
    session.step()
    batch = session._batch
    assert batch is not None and batch.keys == [0, 1]
    assert batch.decoder_mask.sum(dim=1).tolist() == [6, 2]
    keys, _ = batch.cache._self[0]
    history = keys[1, :, :1].clone()
    batch.keep([1])
    assert batch.keys == [1] and batch.tokens.size(1) == 2 and batch.cache.rows == 1
    assert torch.equal(batch.cache._self[0][0][0, :, :1], history)


@torch.inference_mode()
def test_slots_grow_by_doubling_only_when_rows_or_columns_run_out(generator: T5Generator) -> None:
    """A row joining at every step while others leave: the buffers hold no
    more than twice the rows and columns in use (a spare column aside)."""
    batch = _stepped(generator, [(step, step % len(PROMPTS)) for step in range(14)], 14)
    keys, _ = batch.cache._self[0]
    cross, _ = batch.cache._cross[0]
    assert len(batch) >= 5
    assert keys.size(0) <= 2 * len(batch) and keys.size(2) <= max(HEADROOM, 2 * batch.tokens.size(1) + 1)
    assert cross.size(2) <= 2 * int(batch.cache.encoder_lengths.max()) + 1


def _transformers_alone(engine: T5Generator, batch: BatchState, row: int) -> torch.Tensor:
    """transformers' logits for one row of ``batch`` decoding alone, from a
    cache holding that row's keys and values as its slots hold them."""
    written = int(batch.decoder_mask[row].sum()) - 1
    source = int(batch.cache.encoder_lengths[row])
    history = [
        (k[row : row + 1, :, :written].clone(), v[row : row + 1, :, :written].clone()) for k, v in batch.cache._self
    ]
    cross = [
        (k[row : row + 1, :, :source].clone(), v[row : row + 1, :, :source].clone()) for k, v in batch.cache._cross
    ]
    # Cross-attention keys and values come from the cache, so the encoder
    # states transformers is handed only give it the prompt's shape.
    encoder_states = torch.zeros(1, source, engine.model.config.d_model)
    return engine.model(
        encoder_outputs=BaseModelOutput(last_hidden_state=encoder_states),
        attention_mask=torch.ones(1, source, dtype=torch.long),
        decoder_input_ids=batch.tokens[row : row + 1, -1:],
        decoder_attention_mask=torch.ones(1, written + 1, dtype=torch.long),
        cache=EncoderDecoderCache(DynamicCache(history), DynamicCache(cross)),
        use_cache=True,
    ).logits[0, -1, :]


def _stepped(engine: T5Generator, joins: list[tuple[int, int]], steps: int) -> BatchState:
    """A session's batch after ``steps`` steps, ``(step, prompt)`` joining
    before their step with nine forced tokens each."""
    session = GenerationSession(engine)
    for step in range(steps):
        for _, prompt in (j for j in joins if j[0] == step):
            parameters = GenerationParameters(min_new_tokens=9)
            session.add(engine.prepare(GenerationRequest(PROMPTS[prompt], parameters)))
        session.step()
    assert session._batch is not None
    return session._batch


@pytest.mark.parametrize("precision", ["float32", "int8"])
@torch.inference_mode()
def test_the_decoder_step_is_transformers_forward_bit_for_bit(generator: T5Generator, precision: str) -> None:
    """The written-out decoder pass against ``model(...)`` on one row with a
    history, whose position bias is the table's own order."""
    engine = generator if precision == "float32" else T5Generator(TINY_T5, dtype=precision)
    batch = _stepped(engine, [(0, 4)], 5)
    expected = _transformers_alone(engine, batch, 0)
    logits = engine.decoder_step(batch.tokens[:, -1:], batch.decoder_mask, batch.cache)
    assert torch.equal(logits[0], expected)


@pytest.mark.parametrize("precision", ["float32", "int8"])
@torch.inference_mode()
def test_each_row_of_a_batch_is_transformers_forward_of_that_row_alone(generator: T5Generator, precision: str) -> None:
    """Rows with histories and prompts of three lengths, after a row left:
    each row's logits are transformers' for that row alone, bit for bit
    where the linear layers' answer does not depend on the batch's size
    (int8's integer products), and to float32's rounding otherwise."""
    engine = generator if precision == "float32" else T5Generator(TINY_T5, dtype=precision)
    batch = _stepped(engine, [(0, 0), (1, 4), (6, 3), (8, 2)], 10)
    assert len(batch) == 3 and len(set(batch.decoder_mask.sum(dim=1).tolist())) == 3
    assert len(set(batch.cache.encoder_lengths.tolist())) == 3
    expected = torch.stack([_transformers_alone(engine, batch, row) for row in range(len(batch))])
    logits = engine.decoder_step(batch.tokens[:, -1:], batch.decoder_mask, batch.cache)
    if precision == "int8":
        assert torch.equal(logits, expected)
    else:
        torch.testing.assert_close(logits, expected, rtol=0, atol=1e-4)
        assert torch.equal(logits.argmax(dim=-1), expected.argmax(dim=-1))
