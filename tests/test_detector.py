"""The ELECTRA engine against plain transformers on the embedded checkpoint."""

from __future__ import annotations

import pytest
import torch

from t5electra.server.detector import ReplacementDetector, best_window, window_starts
from t5electra.server.domain import DetectionRequest
from t5electra.server.embedded import TINY_ELECTRA
from t5electra.server.errors import InvalidInput
from t5electra.server.limits import Limits

pytestmark = pytest.mark.unit

TEXTS = [
    "Return the value of the attribute unless it is missing.",
    "The callable is invoked with a single argument for each element of the list.",
    "Short text.",
    "Raise an exception window when the file cannot be opened for reading banana.",
]


def detect(detector: ReplacementDetector, *texts: str, threshold: float = 0.5):
    return detector.detect([detector.prepare(DetectionRequest(t, threshold)) for t in texts])


def hf_scores(detector: ReplacementDetector, text: str) -> list[float]:
    encoded = detector.tokenizer(text, return_tensors="pt")
    with torch.inference_mode():
        logits = detector.model(**encoded).logits[0]
    return torch.sigmoid(logits).tolist()[1:-1]


def test_scores_equal_transformers_within_1e5(detector: ReplacementDetector) -> None:
    for text, detection in zip(TEXTS, detect(detector, *TEXTS), strict=True):
        expected = hf_scores(detector, text)
        assert len(detection.tokens) == len(expected)
        for token, score in zip(detection.tokens, expected, strict=True):
            assert token.score == pytest.approx(score, abs=1e-5)


def test_tokens_and_offsets_match_the_tokenizer(detector: ReplacementDetector) -> None:
    text = TEXTS[1]
    (detection,) = detect(detector, text)
    encoded = detector.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert [t.token for t in detection.tokens] == detector.tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert [(t.start, t.end) for t in detection.tokens] == [tuple(o) for o in encoded["offset_mapping"]]


def test_batched_equals_unbatched(detector: ReplacementDetector) -> None:
    together = detect(detector, *TEXTS)
    for text, batched in zip(TEXTS, together, strict=True):
        (alone,) = detect(detector, text)
        for a, b in zip(alone.tokens, batched.tokens, strict=True):
            assert (a.token, a.start, a.end, a.replaced) == (b.token, b.start, b.end, b.replaced)
            assert a.score == pytest.approx(b.score, abs=1e-5)


@pytest.mark.parametrize(
    "text",
    [
        "Café déjà vu, naïve façade.",
        "東京 is a city; 北京 too.",
        "Emoji 😀 and 👩‍👩‍👧 inside text.",
        "Ünïcödé\u00a0spaces\ttab",
    ],
)
def test_offsets_point_into_non_ascii_text(detector: ReplacementDetector, text: str) -> None:
    (detection,) = detect(detector, text)
    assert detection.tokens
    for token in detection.tokens:
        assert 0 <= token.start < token.end <= len(text)
        surface = text[token.start : token.end]
        if token.token != detector.tokenizer.unk_token:
            assert token.token.removeprefix("##") == detector.tokenizer.backend_tokenizer.normalizer.normalize_str(
                surface
            )
    starts = [t.start for t in detection.tokens]
    assert starts == sorted(starts)


def test_threshold_decides_replaced_and_spans(detector: ReplacementDetector) -> None:
    text = TEXTS[3]
    (everything,) = detect(detector, text, threshold=0.0)
    assert all(t.replaced for t in everything.tokens)
    assert everything.replaced_fraction == 1.0
    assert [s.text for s in everything.replaced_spans] == [text[s.start : s.end] for s in everything.replaced_spans]
    assert " ".join(s.text for s in everything.replaced_spans).replace(" .", ".") == text
    (nothing,) = detect(detector, text, threshold=1.0)
    assert nothing.replaced_fraction == sum(t.score >= 1.0 for t in nothing.tokens) / len(nothing.tokens)


def test_span_score_is_the_words_highest_token_score(detector: ReplacementDetector) -> None:
    text = "Unquestionably interoperability."
    (detection,) = detect(detector, text, threshold=0.0)
    for span in detection.replaced_spans:
        inside = [t.score for t in detection.tokens if span.start <= t.start and t.end <= span.end]
        assert span.score == max(inside)


def test_windows_cover_every_position_with_central_choice() -> None:
    starts = window_starts(300, 126)
    assert starts[0] == 0 and starts[-1] == 300 - 126
    for position in range(300):
        window = starts[best_window(position, starts, 126)]
        assert window <= position < window + 126
    assert window_starts(50, 126) == [0]


def test_long_text_is_scored_in_windows_covering_all_tokens(detector: ReplacementDetector) -> None:
    text = " ".join(TEXTS * 12)
    ids = detector.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) > 3 * detector.window
    (detection,) = detect(detector, text)
    assert len(detection.tokens) == len(ids)
    # The first tokens are scored in the first window: compare with transformers on it.
    first = [detector.tokenizer.cls_token_id, *ids[: detector.window], detector.tokenizer.sep_token_id]
    with torch.inference_mode():
        expected = torch.sigmoid(detector.model(input_ids=torch.tensor([first])).logits[0]).tolist()[1:-1]
    quarter = detector.window // 4
    for token, score in zip(detection.tokens[:quarter], expected[:quarter], strict=True):
        assert token.score == pytest.approx(score, abs=1e-5)


def test_text_over_token_limit_is_invalid() -> None:
    small = ReplacementDetector(TINY_ELECTRA, limits=Limits(max_detection_input_tokens=10))
    with pytest.raises(InvalidInput, match=r"text: is \d+ tokens long; at most 10 tokens"):
        small.prepare(DetectionRequest(TEXTS[1]))


def test_special_token_text_is_scored_as_text(detector: ReplacementDetector) -> None:
    text = "first part [SEP] second [CLS] part"
    (detection,) = detect(detector, text)
    assert {"[SEP]", "[CLS]"}.isdisjoint(t.token for t in detection.tokens)
    assert "".join(text[t.start : t.end] for t in detection.tokens if t.token != "[UNK]")


def test_text_without_tokens_gives_an_empty_answer(detector: ReplacementDetector) -> None:
    (detection,) = detect(detector, "\u200b\u200b")
    assert detection.tokens == () and detection.replaced_fraction == 0.0


def test_a_token_budget_cuts_forward_passes_by_length_without_changing_scores(
    detector: ReplacementDetector,
) -> None:
    budgeted = ReplacementDetector(TINY_ELECTRA, max_batch_tokens=40)
    prepared = [budgeted.prepare(DetectionRequest(t)) for t in TEXTS * 2]
    windows = sorted(((i, 0) for i in range(len(prepared))), key=lambda w: len(prepared[w[0]].ids))
    passes = budgeted._forward_passes(prepared, windows)
    assert [w for p in passes for w in p] == windows
    for rows in passes:
        longest = max(budgeted._window_length(prepared[i], s) for i, s in rows)
        assert len(rows) == 1 or len(rows) * longest <= 40
    assert len(passes) > 1
    for cut, whole in zip(budgeted.detect(prepared), detect(detector, *(TEXTS * 2)), strict=True):
        assert [t.replaced for t in cut.tokens] == [t.replaced for t in whole.tokens]
        assert [t.score for t in cut.tokens] == pytest.approx([t.score for t in whole.tokens], abs=1e-5)
