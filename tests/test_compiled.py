"""The compiled passes (``t5.compile``, ``electra.compile``): ELECTRA's
forward and T5's decoder step at int8 and bfloat16, within the precision's
stated bounds of float32, close to the eager passes, independent of the batch a request is in
(and, for T5, of when it joined), the same from inductor's disk cache, and
refused where they would not apply. Compiling takes tens of seconds, so this
runs in the system tier."""

from __future__ import annotations

from itertools import takewhile

import pytest

from t5electra.deployments.deployment_settings import ElectraSettings, T5Settings
from t5electra.server.detector import ReplacementDetector
from t5electra.server.domain import DetectionRequest, GenerationParameters, GenerationRequest
from t5electra.server.embedded import TINY_ELECTRA, TINY_T5
from t5electra.server.generator import T5Generator

from support.quality import LOGPROB_TOLERANCE, SCORE_TOLERANCE, faster_precisions
from support.reference import (
    PADDING_SENTENCE,
    PROMPTS,
    SENTENCES,
    assert_decoding_ignores_company,
    assert_detection_ignores_company,
)

pytestmark = pytest.mark.system


@pytest.fixture(scope="module", params=faster_precisions())
def precision(request: pytest.FixtureRequest) -> str:
    return request.param


def _scores(detector: ReplacementDetector, texts: list[str]) -> list[list[float]]:
    found = detector.detect([detector.prepare(DetectionRequest(text)) for text in texts])
    return [[token.score for token in detection.tokens] for detection in found]


@pytest.fixture(scope="module")
def compiled_detector(precision: str) -> ReplacementDetector:
    detector = ReplacementDetector(TINY_ELECTRA, dtype=precision, compile=True)
    detector.warm_up()
    return detector


def test_a_text_scores_the_same_alone_and_in_any_batch(compiled_detector: ReplacementDetector) -> None:
    """As test_precisions.py states it for the eager passes; the same batch
    in another order, the same bits."""
    together = assert_detection_ignores_company(compiled_detector)
    texts = [*SENTENCES, PADDING_SENTENCE]
    assert _scores(compiled_detector, texts[::-1]) == [[t.score for t in d.tokens] for d in together][::-1]


def test_the_compiled_pass_stays_within_the_stated_bounds(
    compiled_detector: ReplacementDetector, detector: ReplacementDetector, precision: str
) -> None:
    """Within the precision's bound of float32, and a fifth of it of the eager pass."""
    eager = ReplacementDetector(TINY_ELECTRA, dtype=precision)
    texts = list(SENTENCES)
    compared = zip(_scores(compiled_detector, texts), _scores(detector, texts), _scores(eager, texts), strict=True)
    bound = SCORE_TOLERANCE[precision]
    for got, exact, same_precision in compared:
        assert max(abs(a - b) for a, b in zip(got, exact, strict=True)) <= bound
        assert max(abs(a - b) for a, b in zip(got, same_precision, strict=True)) <= bound / 5


@pytest.fixture(scope="module")
def compiled_generator(precision: str) -> T5Generator:
    generator = T5Generator(TINY_T5, dtype=precision, compile=True)
    generator.warm_up()
    return generator


def test_a_compiled_step_decodes_alike_alone_and_joining_a_batch(compiled_generator: T5Generator) -> None:
    assert_decoding_ignores_company(compiled_generator)


def _logprobs(generator: T5Generator, prompts: list[str]) -> list[list[tuple[int, float]]]:
    parameters = GenerationParameters(logprobs=True, max_new_tokens=16)
    results = generator.generate([generator.prepare(GenerationRequest(p, parameters)) for p in prompts])
    return [[(t.id, t.logprob) for t in result.sequences[0].tokens] for result in results]


def test_the_compiled_step_stays_within_the_stated_bounds(
    compiled_generator: T5Generator, generator: T5Generator, precision: str
) -> None:
    """The eager step's tokens at this precision with log-probabilities within
    a tenth of the precision's bound; against float32, that bound while both
    decode alike."""
    eager = T5Generator(TINY_T5, dtype=precision)
    prompts = list(PROMPTS)
    runs = zip(
        _logprobs(compiled_generator, prompts), _logprobs(generator, prompts), _logprobs(eager, prompts), strict=True
    )
    bound = LOGPROB_TOLERANCE[precision]
    for got, exact, same_precision in runs:
        assert [i for i, _ in got] == [i for i, _ in same_precision]
        assert max(abs(a - b) for (_, a), (_, b) in zip(got, same_precision, strict=True)) <= bound / 10
        # Only up to the first token they part at: after it the contexts differ.
        agreed = list(takewhile(lambda pair: pair[0][0] == pair[1][0], zip(got, exact, strict=False)))
        assert agreed and max(abs(a - b) for (_, a), (_, b) in agreed) <= bound


def test_float32_is_never_compiled() -> None:
    for settings in (ElectraSettings, T5Settings):
        with pytest.raises(ValueError, match="float32 stays eager"):
            settings(compile=True)
        assert settings(compile=True, dtype="int8").compile
    with pytest.raises(ValueError, match="float32 equals transformers exactly"):
        ReplacementDetector(TINY_ELECTRA, dtype="float32", compile=True)
    with pytest.raises(ValueError, match="float32 equals transformers exactly"):
        T5Generator(TINY_T5, dtype="float32", compile=True)


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
LOGPROB_SCRIPT = """
import json, sys
from t5electra.server.domain import GenerationParameters, GenerationRequest
from t5electra.server.embedded import TINY_T5
from t5electra.server.generator import T5Generator
generator = T5Generator(TINY_T5, dtype="int8", compile=True)
generator.warm_up()
parameters = GenerationParameters(logprobs=True, max_new_tokens=16)
results = generator.generate([generator.prepare(GenerationRequest(p, parameters)) for p in json.loads(sys.argv[1])])
print(json.dumps([[(t.id, t.logprob) for t in result.sequences[0].tokens] for result in results]))
"""


@pytest.mark.parametrize(
    ("script", "inputs"), [(SCORE_SCRIPT, SENTENCES), (LOGPROB_SCRIPT, PROMPTS)], ids=["electra", "t5"]
)
def test_a_second_start_reads_inductors_cache_and_answers_the_same(script: str, inputs: list[str], tmp_path) -> None:
    """The second process finds the first one's kernels on disk; its answers
    must be the first one's (a cached graph once scored wrongly)."""
    import json
    import os
    import subprocess
    import sys

    environment = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path)}
    runs = [
        subprocess.run(
            [sys.executable, "-c", script, json.dumps(list(inputs))],
            env=environment,
            capture_output=True,
            text=True,
            timeout=900,
        )
        for _ in range(2)
    ]
    assert all(run.returncode == 0 for run in runs), [run.stderr[-2000:] for run in runs]
    first, second = (json.loads(run.stdout.strip().splitlines()[-1]) for run in runs)
    assert second == first
    assert any(tmp_path.iterdir())
