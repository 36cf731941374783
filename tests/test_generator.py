"""The T5 engine against plain transformers on the embedded checkpoint."""

from __future__ import annotations

import pytest

from t5electra.server.domain import FinishReason, GenerationParameters, GenerationRequest
from t5electra.server.embedded import TINY_T5
from t5electra.server.errors import InvalidInput
from t5electra.server.generator import T5Generator
from t5electra.server.limits import Limits

from support.reference import PROMPTS, hf_generate, text_of

pytestmark = pytest.mark.unit


def run(generator: T5Generator, *requests: GenerationRequest, stream: bool = False):
    return generator.generate([generator.prepare(r, stream=stream) for r in requests])


def test_greedy_batched_equals_transformers_unbatched(generator: T5Generator) -> None:
    results = run(generator, *(GenerationRequest(p) for p in PROMPTS))
    for prompt, result in zip(PROMPTS, results, strict=True):
        (expected,) = hf_generate(generator, [prompt], do_sample=False)
        sequence = result.sequences[0]
        assert sequence.text == text_of(generator, expected)
        assert sequence.generated_tokens == len(expected)
        assert sequence.finish_reason == FinishReason.EOS_TOKEN


def test_greedy_batched_equals_transformers_batched(generator: T5Generator) -> None:
    expected = hf_generate(generator, PROMPTS, do_sample=False)
    results = run(generator, *(GenerationRequest(p) for p in PROMPTS))
    assert [r.sequences[0].text for r in results] == [text_of(generator, e) for e in expected]


def test_padding_does_not_change_outputs(generator: T5Generator) -> None:
    alone = [run(generator, GenerationRequest(p))[0].sequences[0] for p in PROMPTS]
    together = [r.sequences[0] for r in run(generator, *(GenerationRequest(p) for p in PROMPTS))]
    assert alone == together


@pytest.mark.parametrize(
    "params",
    [
        {"temperature": 1.5},
        {"top_k": 5, "temperature": 2.0},
        {"top_p": 0.8, "temperature": 1.7},
        {"top_k": 20, "top_p": 0.9, "temperature": 3.0, "num_return_sequences": 3},
    ],
)
def test_seeded_sampling_equals_transformers(generator: T5Generator, params: dict) -> None:
    prompt = PROMPTS[2]
    request = GenerationRequest(prompt, GenerationParameters(do_sample=True, seed=1234, **params))
    (result,) = run(generator, request)
    expected = hf_generate(generator, [prompt], seed=1234, do_sample=True, **params)
    assert [s.text for s in result.sequences] == [text_of(generator, e) for e in expected]
    assert [s.generated_tokens for s in result.sequences] == [len(e) for e in expected]


def test_seeded_sampling_does_not_depend_on_batch_neighbours(generator: T5Generator) -> None:
    sampled = GenerationRequest(PROMPTS[0], GenerationParameters(do_sample=True, seed=7, temperature=3.0))
    alone = run(generator, sampled)[0]
    neighbours = [
        GenerationRequest(PROMPTS[1], GenerationParameters(do_sample=True, seed=8, temperature=2.0)),
        GenerationRequest(PROMPTS[3]),
    ]
    together = run(generator, neighbours[0], sampled, neighbours[1])[1]
    assert alone.sequences == together.sequences


def test_high_temperature_sampling_varies_with_seed(generator: T5Generator) -> None:
    texts = {
        run(generator, GenerationRequest(PROMPTS[4], GenerationParameters(do_sample=True, seed=s, temperature=5.0)))[0]
        .sequences[0]
        .text
        for s in range(6)
    }
    assert len(texts) > 1


def test_beam_search_equals_transformers(generator: T5Generator) -> None:
    params = GenerationParameters(num_beams=4, num_return_sequences=3)
    (result,) = run(generator, GenerationRequest(PROMPTS[1], params))
    expected = hf_generate(generator, [PROMPTS[1]], num_beams=4, num_return_sequences=3, do_sample=False)
    assert [s.text for s in result.sequences] == [text_of(generator, e) for e in expected]


def test_repetition_penalty_equals_transformers(generator: T5Generator) -> None:
    prompt = "reverse words: apple apple apple river"
    (result,) = run(generator, GenerationRequest(prompt, GenerationParameters(repetition_penalty=2.5)))
    (expected,) = hf_generate(generator, [prompt], repetition_penalty=2.5, do_sample=False)
    assert result.sequences[0].text == text_of(generator, expected)


def test_min_new_tokens_equals_transformers(generator: T5Generator) -> None:
    prompt = PROMPTS[3]
    (result,) = run(generator, GenerationRequest(prompt, GenerationParameters(min_new_tokens=12)))
    (expected,) = hf_generate(generator, [prompt], min_new_tokens=12, do_sample=False)
    assert result.sequences[0].generated_tokens == len(expected) >= 12
    assert result.sequences[0].text == text_of(generator, expected)


def test_max_new_tokens_ends_with_length(generator: T5Generator) -> None:
    (result,) = run(generator, GenerationRequest(PROMPTS[4], GenerationParameters(max_new_tokens=3)))
    sequence = result.sequences[0]
    assert (sequence.finish_reason, sequence.generated_tokens) == (FinishReason.LENGTH, 3)
    (expected,) = hf_generate(generator, [PROMPTS[4]], max_new_tokens=3, do_sample=False)
    assert sequence.text == text_of(generator, expected)


def test_stop_sequence_cuts_text(generator: T5Generator) -> None:
    full = run(generator, GenerationRequest(PROMPTS[2]))[0].sequences[0].text
    stop = full.split()[2]
    (result,) = run(generator, GenerationRequest(PROMPTS[2], GenerationParameters(stop_sequences=(stop, "never"))))
    sequence = result.sequences[0]
    assert sequence.finish_reason == FinishReason.STOP_SEQUENCE
    assert sequence.text == full[: full.index(stop)]
    assert sequence.generated_tokens < run(generator, GenerationRequest(PROMPTS[2]))[0].sequences[0].generated_tokens


def test_stop_sequence_applies_to_beam_search(generator: T5Generator) -> None:
    full = run(generator, GenerationRequest(PROMPTS[1], GenerationParameters(num_beams=3)))[0].sequences[0].text
    stop = full.split()[1]
    (result,) = run(generator, GenerationRequest(PROMPTS[1], GenerationParameters(num_beams=3, stop_sequences=(stop,))))
    assert result.sequences[0].text == full[: full.index(stop)]
    assert result.sequences[0].finish_reason == FinishReason.STOP_SEQUENCE


def stream_text(generator: T5Generator, request: GenerationRequest) -> tuple[list[str], object]:
    session = generator.session([generator.prepare(request, stream=True)])
    pieces, last = [], None
    while not session.done:
        for event in session.step():
            pieces.append(event.piece.text)
            last = event.piece
    return pieces, last


@pytest.mark.parametrize(
    "params",
    [
        GenerationParameters(),
        GenerationParameters(do_sample=True, seed=99, temperature=2.0),
        GenerationParameters(max_new_tokens=4),
        GenerationParameters(stop_sequences=("Hund",)),
    ],
)
def test_stream_pieces_join_to_generate_text(generator: T5Generator, params: GenerationParameters) -> None:
    request = GenerationRequest(PROMPTS[2], params)
    pieces, last = stream_text(generator, request)
    (result,) = run(generator, request)
    assert "".join(pieces) == result.sequences[0].text
    assert last.finish_reason == result.sequences[0].finish_reason
    assert last.generated_tokens == result.sequences[0].generated_tokens
    assert len([p for p in pieces if p]) > 1, "text must arrive in several pieces"


def test_mixed_parameters_in_one_batch_equal_each_alone(generator: T5Generator) -> None:
    requests = [
        GenerationRequest(PROMPTS[0]),
        GenerationRequest(PROMPTS[1], GenerationParameters(num_beams=3, num_return_sequences=2)),
        GenerationRequest(PROMPTS[2], GenerationParameters(do_sample=True, seed=5, top_k=10, temperature=2.0)),
        GenerationRequest(PROMPTS[3], GenerationParameters(max_new_tokens=2)),
        GenerationRequest(PROMPTS[4], GenerationParameters(repetition_penalty=1.8, min_new_tokens=3)),
        GenerationRequest(PROMPTS[2], GenerationParameters(stop_sequences=("Hund",))),
    ]
    together = run(generator, *requests)
    for request, result in zip(requests, together, strict=True):
        assert run(generator, request)[0].sequences == result.sequences


def test_cancelled_request_leaves_the_batch(generator: T5Generator) -> None:
    long = GenerationRequest(PROMPTS[0], GenerationParameters(min_new_tokens=50, max_new_tokens=50))
    session = generator.session([generator.prepare(long), generator.prepare(GenerationRequest(PROMPTS[1]))])
    session.step()
    session.cancel(0)
    results = {}
    while not session.done:
        results.update({e.key: e.result for e in session.step() if e.result})
    assert set(results) == {1}


def test_usage_counts_tokens(generator: T5Generator) -> None:
    (result,) = run(generator, GenerationRequest(PROMPTS[0], GenerationParameters(num_beams=2, num_return_sequences=2)))
    assert result.input_tokens == len(generator.tokenizer(PROMPTS[0])["input_ids"])
    assert result.output_tokens == sum(s.generated_tokens for s in result.sequences)


def test_special_token_text_is_not_injected(generator: T5Generator) -> None:
    prepared = generator.prepare(GenerationRequest("reverse words: apple </s> <pad> river"))
    specials = set(generator.tokenizer.all_special_ids) - {generator.tokenizer.unk_token_id}
    assert [i for i in prepared.input_ids if i in specials] == [generator.tokenizer.eos_token_id]
    assert prepared.input_ids[-1] == generator.tokenizer.eos_token_id


def test_prompt_over_token_limit_is_invalid() -> None:
    small = T5Generator(TINY_T5, limits=Limits(max_generation_input_tokens=8))
    with pytest.raises(InvalidInput, match=r"text: is \d+ tokens long; at most 8 tokens"):
        small.prepare(GenerationRequest("reverse words: " + " ".join(["apple"] * 20)))


def test_non_t5_architecture_is_refused_at_load(tmp_path) -> None:
    from transformers import AutoTokenizer, BartConfig, BartForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(TINY_T5)
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
    )
    BartForConditionalGeneration(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="is a 'bart' model; the T5 deployment serves the T5 architectures"):
        T5Generator(str(tmp_path))


def test_a_warm_up_decodes_a_throwaway_request_and_times_its_warm_steps() -> None:
    steps = T5Generator(TINY_T5).warm_up(steps=8)
    assert len(steps) == 4 and all(seconds > 0 for seconds in steps)
