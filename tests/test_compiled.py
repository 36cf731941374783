"""The compiled ELECTRA pass (``electra.compile``): within int8's stated
bounds of float32, close to the eager int8 pass, independent of the batch a
text is scored in, and refused where it would not apply. Compiling takes
tens of seconds, so this runs in the system tier."""

from __future__ import annotations

import pytest

from t5electra.server.deployment_settings import ElectraSettings
from t5electra.server.detector import ReplacementDetector
from t5electra.server.domain import DetectionRequest
from t5electra.server.embedded import TINY_ELECTRA

from support.reference import SENTENCES

pytestmark = pytest.mark.system

SCORE_TOLERANCE = 0.05  # int8 against float32, as docs/api.md states it (test_precisions.py)


def _scores(detector: ReplacementDetector, texts: list[str]) -> list[list[float]]:
    found = detector.detect([detector.prepare(DetectionRequest(text)) for text in texts])
    return [[token.score for token in detection.tokens] for detection in found]


@pytest.fixture(scope="module")
def compiled_detector() -> ReplacementDetector:
    detector = ReplacementDetector(TINY_ELECTRA, dtype="int8", compile=True)
    detector.warm_up()
    return detector


def test_a_text_scores_the_same_alone_and_in_any_batch(compiled_detector: ReplacementDetector) -> None:
    """As test_precisions.py states it for the eager passes: the same
    replaced tokens, and scores within 1e-3 (a padded batch's attention sums
    over more, masked, positions); the same batch in another order, the
    same bits."""
    texts = [*SENTENCES, "A much longer sentence that pads every other row of its batch to its own length here."]
    together = compiled_detector.detect([compiled_detector.prepare(DetectionRequest(t)) for t in texts])
    for text, batched in zip(texts, together, strict=True):
        (alone,) = compiled_detector.detect([compiled_detector.prepare(DetectionRequest(text))])
        assert [t.replaced for t in alone.tokens] == [t.replaced for t in batched.tokens]
        assert [t.score for t in alone.tokens] == pytest.approx([t.score for t in batched.tokens], abs=1e-3)
    assert _scores(compiled_detector, texts[::-1]) == [[t.score for t in d.tokens] for d in together][::-1]


def test_the_compiled_pass_stays_within_int8s_bounds(compiled_detector: ReplacementDetector, detector) -> None:
    eager = ReplacementDetector(TINY_ELECTRA, dtype="int8")
    texts = list(SENTENCES)
    compared = zip(_scores(compiled_detector, texts), _scores(detector, texts), _scores(eager, texts), strict=True)
    for got, exact, int8 in compared:
        assert max(abs(a - b) for a, b in zip(got, exact, strict=True)) <= SCORE_TOLERANCE
        assert max(abs(a - b) for a, b in zip(got, int8, strict=True)) <= SCORE_TOLERANCE / 5


def test_float32_is_never_compiled() -> None:
    with pytest.raises(ValueError, match="float32 stays eager"):
        ElectraSettings(compile=True)
    with pytest.raises(ValueError, match="float32 equals transformers exactly"):
        ReplacementDetector(TINY_ELECTRA, dtype="float32", compile=True)
    assert ElectraSettings(compile=True, dtype="int8").compile
