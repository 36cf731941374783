"""Plain transformers, the reference every engine answer is compared with."""

from __future__ import annotations

import torch

from t5electra.server.generator import T5Generator

PROMPTS = [
    "reverse words: apple river stone",
    "sort numbers: 42 7 19 88 3",
    "translate English to German: the small dog sleeps today",
    "count words: tiger zebra",
    "reverse words: candle forest mirror planet rocket silver",
    "translate English to German: the old teacher reads",
]
SENTENCES = [
    "Return the value of the attribute unless it is missing.",
    "The callable is invoked with a single argument for each element banana of the list.",
    "Short text.",
]


def hf_generate(generator: T5Generator, prompts: list[str], seed: int | None = None, **kwargs) -> list[list[int]]:
    """Token ids from ``model.generate``, decoder start and padding removed."""
    encoded = generator.tokenizer(prompts, padding=True, return_tensors="pt")
    if seed is not None:
        torch.manual_seed(seed)
    defaults = {"max_new_tokens": 64, "top_k": None, "top_p": None, "temperature": None}
    with torch.inference_mode():
        output = generator.model.generate(**encoded, **{**defaults, **kwargs})
    rows = []
    for row in output[:, 1:].tolist():
        if generator.tokenizer.eos_token_id in row:
            row = row[: row.index(generator.tokenizer.eos_token_id) + 1]
        rows.append(row)
    return rows


def text_of(generator: T5Generator, ids: list[int]) -> str:
    return generator.tokenizer.decode(ids, skip_special_tokens=True)


PADDING_SENTENCE = "A much longer sentence that pads every other row of its batch to its own length here."


def assert_detection_ignores_company(detector) -> list:
    """A text scored alone and in a padded batch: the same replaced tokens,
    scores within 1e-3 (the padded batch's attention sums over more, masked,
    positions). Returns the batch's detections."""
    import pytest

    from t5electra.server.domain import DetectionRequest

    texts = [*SENTENCES, PADDING_SENTENCE]
    together = detector.detect([detector.prepare(DetectionRequest(t)) for t in texts])
    for text, batched in zip(texts, together, strict=True):
        (alone,) = detector.detect([detector.prepare(DetectionRequest(text))])
        assert [t.replaced for t in alone.tokens] == [t.replaced for t in batched.tokens]
        assert [t.score for t in alone.tokens] == pytest.approx([t.score for t in batched.tokens], abs=1e-3)
    return together


def assert_decoding_ignores_company(generator: T5Generator) -> dict[int, str]:
    """Greedy requests joining a running batch at different steps, with
    different lengths and parameters, decode the texts they decode alone.
    Returns each request's text by its index (1: ``PROMPTS[0]`` with the
    default parameters)."""
    from t5electra.server.domain import GenerationParameters, GenerationRequest

    requests = [
        GenerationRequest(PROMPTS[4], GenerationParameters(min_new_tokens=24, max_new_tokens=24)),
        GenerationRequest(PROMPTS[0]),
        GenerationRequest(PROMPTS[2]),
        GenerationRequest(PROMPTS[1], GenerationParameters(max_new_tokens=5)),
        GenerationRequest(PROMPTS[3], GenerationParameters(repetition_penalty=1.9, min_new_tokens=6)),
    ]
    joins = {0: [0, 1], 3: [2, 3], 9: [4]}
    session = generator.session()
    keys: dict[int, int] = {}
    results: dict[int, str] = {}
    step = 0
    while step <= max(joins) or not session.done:
        for index in joins.get(step, []):
            keys[session.add(generator.prepare(requests[index]))] = index
        for event in session.step():
            if event.result is not None:
                results[keys[event.key]] = event.result.sequences[0].text
        step += 1
    for index, request in enumerate(requests):
        alone = generator.generate([generator.prepare(request)])[0].sequences[0].text
        assert results[index] == alone, index
    return results
