"""The faster precisions (int8, bfloat16) on the embedded checkpoints: their
answers do not depend on the company a request keeps, and they stay within
the tolerances docs/api.md states against float32, which itself stays exact
(test_session.py, test_generator.py, test_detector.py)."""

from __future__ import annotations

import json

import pytest

from t5electra.server.detector import ReplacementDetector
from t5electra.server.domain import DetectionRequest, GenerationParameters, GenerationRequest
from t5electra.server.embedded import TINY_ELECTRA, TINY_T5
from t5electra.server.generator import T5Generator
from t5electra.tools.training import electra, t5_tasks

from support.quality import EVALUATION_SEED, LOGPROB_TOLERANCE, SCORE_TOLERANCE, Quality, faster_precisions, measure
from support.reference import (
    PROMPTS,
    assert_decoding_ignores_company,
    assert_detection_ignores_company,
    hf_generate,
    text_of,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module", params=faster_precisions())
def precision(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def fast_generator(precision: str) -> T5Generator:
    return T5Generator(TINY_T5, dtype=precision)


@pytest.fixture(scope="module")
def fast_detector(precision: str) -> ReplacementDetector:
    return ReplacementDetector(TINY_ELECTRA, dtype=precision)


def test_the_engines_report_their_precision(fast_generator: T5Generator, fast_detector, precision: str) -> None:
    assert fast_generator.describe().dtype == fast_detector.describe().dtype == precision


def test_greedy_tokens_do_not_depend_on_company_or_joining_time(fast_generator: T5Generator) -> None:
    """Requests joining a running batch at different steps decode the tokens
    they decode alone, and that ``model.generate`` gives at this precision."""
    results = assert_decoding_ignores_company(fast_generator)
    default = GenerationParameters().max_new_tokens
    (reference,) = hf_generate(fast_generator, [PROMPTS[0]], max_new_tokens=default, do_sample=False)
    assert results[1] == text_of(fast_generator, reference)


def test_detection_does_not_depend_on_company(fast_detector: ReplacementDetector) -> None:
    assert_detection_ignores_company(fast_detector)


def test_log_probabilities_stay_within_the_stated_tolerance(
    generator: T5Generator, fast_generator: T5Generator, precision: str
) -> None:
    params = GenerationParameters(logprobs=True, max_new_tokens=16)
    prompts = [e.prompt for e in t5_tasks.held_out_examples(40, EVALUATION_SEED)]
    exact = generator.generate([generator.prepare(GenerationRequest(p, params)) for p in prompts])
    fast = fast_generator.generate([fast_generator.prepare(GenerationRequest(p, params)) for p in prompts])
    worst = 0.0
    for a, b in zip(exact, fast, strict=True):
        for x, y in zip(a.sequences[0].tokens, b.sequences[0].tokens, strict=False):
            if x.id != y.id:
                break
            worst = max(worst, abs(x.logprob - y.logprob))
    print(f"{precision}: largest log-probability difference from float32 {worst:.4f}")
    assert worst <= LOGPROB_TOLERANCE[precision]


def test_detection_scores_stay_within_the_stated_tolerance(
    detector: ReplacementDetector, fast_detector: ReplacementDetector, precision: str
) -> None:
    texts = [c.text for c in electra.held_out(200, EVALUATION_SEED)]
    exact = detector.detect([detector.prepare(DetectionRequest(t)) for t in texts])
    fast = fast_detector.detect([fast_detector.prepare(DetectionRequest(t)) for t in texts])
    worst = max(
        abs(x.score - y.score)
        for a, b in zip(exact, fast, strict=True)
        for x, y in zip(a.tokens, b.tokens, strict=True)
    )
    print(f"{precision}: largest detection score difference from float32 {worst:.4f}")
    assert worst <= SCORE_TOLERANCE[precision]


def test_embedded_tasks_keep_float32_quality(
    float32_quality: Quality, fast_generator: T5Generator, fast_detector: ReplacementDetector, precision: str
) -> None:
    """T5 exact match and ELECTRA token F1 on the held-out sets within 0.01
    of float32's, and how many T5 answers are float32's word for word."""
    fast = measure(fast_generator, fast_detector)
    exact = float32_quality
    agree = sum(fast.answers[p] == text for p, text in exact.answers.items()) / len(exact.answers)
    figures = {
        "precision": precision,
        "exact_match": [exact.exact_match["overall"], fast.exact_match["overall"]],
        "f1": [exact.token_scores["f1"], fast.token_scores["f1"]],
        "answers_equal_to_float32": agree,
    }
    print(json.dumps(figures))
    assert fast.exact_match["overall"] >= exact.exact_match["overall"] - 0.01
    assert fast.token_scores["f1"] >= exact.token_scores["f1"] - 0.01
