"""Log-probabilities of generated tokens against transformers' own:
``output_scores`` (the scores after the request's logits processing) through
``compute_transition_scores``, within 1e-4."""

from __future__ import annotations

import pytest
import torch

from t5electra.server.domain import GenerationParameters, GenerationRequest, TokenLogprob
from t5electra.server.generator import T5Generator

from support.reference import PROMPTS

pytestmark = pytest.mark.unit


def hf_logprobs(generator: T5Generator, prompt: str, seed: int | None = None, top: int = 0, **kwargs) -> list:
    """Per returned sequence: (token id, log-probability, top ids, top
    log-probabilities) for every generated token up to end of sequence."""
    encoded = generator.tokenizer([prompt], return_tensors="pt")
    if seed is not None:
        torch.manual_seed(seed)
    defaults = {"max_new_tokens": 64, "top_k": None, "top_p": None, "temperature": None}
    with torch.inference_mode():
        out = generator.model.generate(
            **encoded, **{**defaults, **kwargs}, output_scores=True, return_dict_in_generate=True
        )
        chosen = generator.model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
        steps = torch.stack(out.scores, dim=1).log_softmax(dim=-1)  # (rows, steps, vocab)
    rows = []
    eos = generator.tokenizer.eos_token_id
    for row, ids in enumerate(out.sequences[:, 1:].tolist()):
        length = ids.index(eos) + 1 if eos in ids else len(ids)
        entries = []
        for step in range(length):
            values, top_ids = steps[row, step].topk(top) if top else (torch.empty(0), torch.empty(0))
            entries.append((ids[step], chosen[row, step].item(), top_ids.tolist(), values.tolist()))
        rows.append(entries)
    return rows


def ours(generator: T5Generator, prompt: str, stream: bool = False, **params) -> list[tuple[TokenLogprob, ...]]:
    prepared = generator.prepare(GenerationRequest(prompt, GenerationParameters(logprobs=True, **params)))
    return [s.tokens for s in generator.generate([prepared])[0].sequences]


def assert_same(mine: tuple[TokenLogprob, ...], reference: list) -> None:
    assert [t.id for t in mine] == [r[0] for r in reference]
    for token, (_, logprob, top_ids, top_values) in zip(mine, reference, strict=True):
        assert token.logprob == pytest.approx(logprob, abs=1e-4)
        finite = [(i, v) for i, v in zip(top_ids, top_values, strict=True) if v != float("-inf")]
        assert [a.id for a in token.top] == [i for i, _ in finite]
        for alternative, (_, value) in zip(token.top, finite, strict=True):
            assert alternative.logprob == pytest.approx(value, abs=1e-4)


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"repetition_penalty": 2.0, "min_new_tokens": 6},
        {"max_new_tokens": 5},
    ],
)
def test_greedy_logprobs_equal_transformers(generator: T5Generator, params: dict) -> None:
    (mine,) = ours(generator, PROMPTS[2], top_logprobs=3, **params)
    (reference,) = hf_logprobs(generator, PROMPTS[2], top=3, do_sample=False, **params)
    assert_same(mine, reference)
    assert [t.token for t in mine] == generator.tokenizer.convert_ids_to_tokens([t.id for t in mine])


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 1.7},
        {"top_k": 8, "temperature": 2.0},
        {"top_p": 0.7, "temperature": 1.5, "num_return_sequences": 2},
    ],
)
def test_seeded_sampling_logprobs_are_after_the_warpers(generator: T5Generator, params: dict) -> None:
    """With do_sample the distribution a token was drawn from is the warped
    one (temperature, top_k, top_p), as in transformers' output_scores;
    alternatives filtered out by top_k or top_p are not listed."""
    mine = ours(generator, PROMPTS[0], do_sample=True, seed=77, top_logprobs=10, **params)
    reference = hf_logprobs(generator, PROMPTS[0], seed=77, top=10, do_sample=True, **params)
    assert len(mine) == len(reference)
    for sequence, expected in zip(mine, reference, strict=True):
        assert_same(sequence, expected)
    if "top_k" in params:
        assert all(len(t.top) <= params["top_k"] for t in mine[0])


def test_beam_search_scores_equal_transformers(generator: T5Generator) -> None:
    params = GenerationParameters(num_beams=4, num_return_sequences=3, logprobs=True)
    (result,) = generator.generate([generator.prepare(GenerationRequest(PROMPTS[1], params))])
    encoded = generator.tokenizer([PROMPTS[1]], return_tensors="pt")
    with torch.inference_mode():
        out = generator.model.generate(
            **encoded,
            num_beams=4,
            num_return_sequences=3,
            max_new_tokens=64,
            output_scores=True,
            return_dict_in_generate=True,
        )
    assert [s.score for s in result.sequences] == pytest.approx(out.sequences_scores.tolist(), abs=1e-4)


def test_no_logprobs_unless_asked(generator: T5Generator) -> None:
    prepared = generator.prepare(GenerationRequest(PROMPTS[0]))
    (result,) = generator.generate([prepared])
    assert result.sequences[0].tokens == () and result.sequences[0].score is None


def test_stream_pieces_carry_their_tokens(generator: T5Generator) -> None:
    request = GenerationRequest(PROMPTS[2], GenerationParameters(logprobs=True, top_logprobs=2))
    session = generator.session([generator.prepare(request, stream=True)])
    streamed: list[TokenLogprob] = []
    while not session.done:
        for event in session.step():
            streamed += event.piece.tokens
    (result,) = generator.generate([generator.prepare(request)])
    assert tuple(streamed) == result.sequences[0].tokens
    assert len(streamed) == result.sequences[0].generated_tokens
