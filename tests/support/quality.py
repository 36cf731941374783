"""The embedded checkpoints' quality on their held-out sets, measured
through the engines: T5 exact match and ELECTRA token F1 on docstrings and
on everyday English."""

from __future__ import annotations

from dataclasses import dataclass, field

from t5electra.server.detector import ReplacementDetector
from t5electra.server.domain import DetectionRequest, GenerationRequest
from t5electra.server.generator import T5Generator
from t5electra.tools.training import corpus, electra, t5, t5_tasks

EVALUATION_SEED = 20261130

# The faster precisions against float32, as docs/api.md states them: a
# generated token's log-probability (nats) and a detection score.
LOGPROB_TOLERANCE = {"int8": 0.1, "bfloat16": 0.25}
SCORE_TOLERANCE = {"int8": 0.05, "bfloat16": 0.05}


def faster_precisions() -> list:
    """int8, and bfloat16 where this CPU computes it natively, as pytest
    parameters."""
    import pytest

    from t5electra.server.loading import cpu_has_bfloat16

    bfloat16_missing = pytest.mark.skipif(not cpu_has_bfloat16(), reason="this CPU has no native bfloat16")
    return ["int8", pytest.param("bfloat16", marks=bfloat16_missing)]


@dataclass
class Quality:
    exact_match: dict[str, float]
    token_scores: dict[str, float]
    everyday_token_scores: dict[str, float]
    answers: dict[str, str] = field(default_factory=dict)


def measure(generator: T5Generator, detector: ReplacementDetector) -> Quality:
    """Exact match on 400 held-out prompts, token F1 on the held-out docstring
    sentences and on the committed everyday-English examples."""
    answers: dict[str, str] = {}

    def answer(prompts: list[str]) -> list[str]:
        results = generator.generate([generator.prepare(GenerationRequest(p)) for p in prompts])
        texts = [r.sequences[0].text for r in results]
        answers.update(zip(prompts, texts, strict=True))
        return texts

    def predict(texts: list[str]) -> list[list[tuple[int, int, bool]]]:
        detections = detector.detect([detector.prepare(DetectionRequest(t)) for t in texts])
        return [[(t.start, t.end, t.replaced) for t in d.tokens] for d in detections]

    matches = t5.exact_match(answer, t5_tasks.held_out_examples(400, EVALUATION_SEED))
    scores = electra.f1(predict, electra.held_out(len(corpus.split()[1]), EVALUATION_SEED))
    everyday = electra.f1(predict, electra.everyday_held_out())
    return Quality(matches, scores, everyday, answers)
