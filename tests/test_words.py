"""DetectReplacements for product teams, on the embedded checkpoints: words
with a chosen scoring, offsets in the client's unit, and suggestions from the
embedded generator compared with plain transformers."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, ElectraForMaskedLM

from t5electra.server.detector import ReplacementDetector
from t5electra.server.domain import Detection, DetectionRequest, GenerationRequest
from t5electra.server.embedded import TINY_ELECTRA, TINY_ELECTRA_GENERATOR
from t5electra.server.generator import T5Generator

pytestmark = pytest.mark.unit

TEXT = "The callable is invoked with a single banana argument for each element of the list."
UNICODE_TEXTS = [
    "Café déjà vu: the naïve façade returns a banana value.",
    "東京 is a city; 北京 too, and the list is invoked.",
    "Emoji 😀 and 👩‍👩‍👧 inside text, then 𝒳 math and the value.",
]


@pytest.fixture(scope="module")
def suggesting() -> ReplacementDetector:
    return ReplacementDetector(TINY_ELECTRA, generator=TINY_ELECTRA_GENERATOR)


def detect(detector: ReplacementDetector, text: str, **fields) -> Detection:
    return detector.detect([detector.prepare(DetectionRequest(text, **fields))])[0]


@pytest.mark.parametrize(
    ("scoring", "combine"),
    [("max", max), ("first", lambda s: s[0]), ("mean", lambda s: sum(s) / len(s))],
)
def test_word_scores_come_from_their_tokens(detector: ReplacementDetector, scoring: str, combine) -> None:
    detection = detect(detector, TEXT, threshold=0.3, word_scoring=scoring)
    word_ids = detector.tokenizer(TEXT, add_special_tokens=False).word_ids()
    grouped: dict[int, list[float]] = {}
    for token, word in zip(detection.tokens, word_ids, strict=True):
        grouped.setdefault(word, []).append(token.score)
    assert [w.score for w in detection.words] == pytest.approx([combine(s) for s in grouped.values()])
    assert [w.replaced for w in detection.words] == [w.score >= 0.3 for w in detection.words]
    assert [w.text for w in detection.words] == [TEXT[w.start : w.end] for w in detection.words]


def test_spans_are_runs_of_adjacent_replaced_words(detector: ReplacementDetector) -> None:
    detection = detect(detector, TEXT, threshold=0.004)
    runs, current = [], []
    for word in detection.words:
        if word.replaced:
            current.append(word)
        elif current:
            runs.append(current)
            current = []
    if current:
        runs.append(current)
    assert [(s.start, s.end) for s in detection.replaced_spans] == [(r[0].start, r[-1].end) for r in runs]
    assert [s.score for s in detection.replaced_spans] == [max(w.score for w in r) for r in runs]
    assert any(len(r) > 1 for r in runs), "the threshold should give at least one run of several words"


@pytest.mark.parametrize("text", UNICODE_TEXTS)
@pytest.mark.parametrize(
    ("unit", "encoding", "width"), [("utf8_byte", "utf-8", 1), ("utf16_code_unit", "utf-16-le", 2)]
)
def test_offsets_in_the_clients_unit_slice_the_encoded_text(
    detector: ReplacementDetector, text: str, unit: str, encoding: str, width: int
) -> None:
    in_points = detect(detector, text, threshold=0.0)
    in_unit = detect(detector, text, threshold=0.0, offset_unit=unit)
    assert in_unit.offset_unit == unit
    encoded = text.encode(encoding)
    for points, units in (
        (in_points.tokens, in_unit.tokens),
        (in_points.words, in_unit.words),
        (in_points.replaced_spans, in_unit.replaced_spans),
    ):
        assert len(points) == len(units)
        for a, b in zip(points, units, strict=True):
            assert encoded[b.start * width : b.end * width].decode(encoding) == text[a.start : a.end]
    assert [w.text for w in in_unit.words] == [text[w.start : w.end] for w in in_points.words]


def test_suggestions_equal_the_generator_under_transformers(suggesting: ReplacementDetector) -> None:
    detection = detect(suggesting, TEXT, threshold=0.5, suggestions=5)
    replaced = [w for w in detection.words if w.replaced]
    assert replaced, "the embedded discriminator flags the banana"
    tokenizer = AutoTokenizer.from_pretrained(TINY_ELECTRA_GENERATOR)
    model = ElectraForMaskedLM.from_pretrained(TINY_ELECTRA_GENERATOR).eval()
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    specials = set(tokenizer.all_special_ids)
    for word in replaced:
        masked = TEXT[: word.start] + tokenizer.mask_token + TEXT[word.end :]
        encoded = tokenizer(masked, return_tensors="pt")
        position = encoded["input_ids"][0].tolist().index(tokenizer.mask_token_id)
        with torch.inference_mode():
            probabilities = model(**encoded).logits[0, position].softmax(dim=-1)
        ranked = [
            (pieces[i], p)
            for i, p in sorted(enumerate(probabilities.tolist()), key=lambda ip: -ip[1])
            if i not in specials and not pieces[i].startswith("##") and any(c.isalnum() for c in pieces[i])
        ]
        expected = [(t, p) for t, p in ranked if t != word.text.lower()][:5]
        assert [s.text for s in word.suggestions] == [t for t, _ in expected]
        assert [s.probability for s in word.suggestions] == pytest.approx([p for _, p in expected], abs=1e-5)
    assert all(not w.suggestions for w in detection.words if not w.replaced)


def test_a_word_is_never_suggested_for_itself_however_it_is_written(suggesting: ReplacementDetector) -> None:
    """The generator ranks "value" fifth for this gap; written "Valúe", the
    word is still "value" to the uncased tokenizer, so it is left out."""
    assert suggesting.generator is not None
    for word in ("value", "Value", "Valúe"):
        text = f"Return the {word} of the attribute unless it is missing."
        start = text.index(word)
        (found,) = suggesting.generator.suggest([(text, start, start + len(word), 5)])
        assert len(found) == 5 and "value" not in [s.text for s in found], (word, found)


def test_no_suggestions_unless_asked(suggesting: ReplacementDetector) -> None:
    detection = detect(suggesting, TEXT, threshold=0.5)
    assert detection.suggestions_made == 0


def test_tokenize_matches_what_the_models_read(generator: T5Generator, detector: ReplacementDetector) -> None:
    prompt = "translate English to German: the small dog </s> sleeps"
    tokenization = generator.tokenize(prompt)
    assert [t.id for t in tokenization.tokens] == list(generator.prepare(GenerationRequest(prompt)).input_ids)
    assert tokenization.tokens[-1].special and tokenization.tokens[-1].id == generator.tokenizer.eos_token_id
    assert tokenization.max_tokens == generator.limits.max_generation_input_tokens
    electra = detector.tokenize(TEXT)
    assert [t.token for t in electra.tokens] == [t.token for t in detect(detector, TEXT).tokens]
    assert [(t.start, t.end) for t in electra.tokens] == [(t.start, t.end) for t in detect(detector, TEXT).tokens]


def test_model_descriptions(generator: T5Generator, suggesting: ReplacementDetector) -> None:
    t5, electra = generator.describe(), suggesting.describe()
    assert (t5.kind, t5.architecture, t5.device, t5.dtype) == ("t5", "t5", "cpu", "float32")
    assert t5.parameters == sum(p.numel() for p in generator.model.parameters())
    assert t5.parameters_accepted["top_logprobs"] == "0..10, needs logprobs"
    assert electra.suggestion_generator == "tiny-electra-generator"
    assert electra.parameters_accepted["suggestions"] == "0..10"
