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

from support.reference import PADDING_SENTENCE, SENTENCES, assert_detection_ignores_company

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
    """As test_precisions.py states it for the eager passes; the same batch
    in another order, the same bits."""
    together = assert_detection_ignores_company(compiled_detector)
    texts = [*SENTENCES, PADDING_SENTENCE]
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


SCORE_SCRIPT = """
import json, sys
from t5electra.server.detector import ReplacementDetector
from t5electra.server.domain import DetectionRequest
from t5electra.server.embedded import TINY_ELECTRA
detector = ReplacementDetector(TINY_ELECTRA, dtype="int8", compile=True)
detector.warm_up()
texts = json.loads(sys.argv[1])
found = detector.detect([detector.prepare(DetectionRequest(text)) for text in texts])
print(json.dumps([[token.score for token in detection.tokens] for detection in found]))
"""


def test_a_second_start_reads_inductors_cache_and_scores_the_same(tmp_path) -> None:
    """The second process finds the first one's kernels on disk; its scores
    must be the first one's (a cached graph once scored wrongly)."""
    import json
    import os
    import subprocess
    import sys

    environment = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path)}
    texts = json.dumps(list(SENTENCES))
    runs = [
        subprocess.run(
            [sys.executable, "-c", SCORE_SCRIPT, texts], env=environment, capture_output=True, text=True, timeout=600
        )
        for _ in range(2)
    ]
    assert all(run.returncode == 0 for run in runs), [run.stderr[-2000:] for run in runs]
    first, second = (json.loads(run.stdout.strip().splitlines()[-1]) for run in runs)
    assert second == first
    assert any(tmp_path.iterdir())
