"""Open Inference Protocol tensors <-> requests and answers, without a
server: the encodings tritonclient uses, Triton's error wording, and the
parameters' types."""

from __future__ import annotations

import struct

import pytest

from t5electra.deployments import inference_wire
from t5electra.protocol import bytes_tensor
from t5electra.protocol.inference import open_inference_pb2 as oip
from t5electra.server.domain import (
    Detection,
    FinishReason,
    GeneratedSequence,
    GenerationResult,
    TokenScore,
)
from t5electra.server.errors import InvalidInput

pytestmark = pytest.mark.unit


def _request(texts: list[bytes], *, datatype: str = "BYTES", shape: list[int] | None = None, raw: bool = True):
    request = oip.ModelInferRequest(model_name="t5")
    tensor = request.inputs.add(name="text", datatype=datatype, shape=shape if shape is not None else [len(texts)])
    if raw:
        request.raw_input_contents.append(bytes_tensor.pack(texts))
    else:
        tensor.contents.bytes_contents.extend(texts)
    return request


def test_bytes_elements_are_length_prefixed_little_endian_as_tritonclient_sends_them() -> None:
    assert bytes_tensor.pack([b"ab", "cé".encode()]) == bytes.fromhex("0200000061620300000063c3a9")
    assert inference_wire.decode_bytes(bytes.fromhex("0200000061620300000063c3a9"), "x") == [b"ab", "cé".encode()]
    with pytest.raises(InvalidInput):
        inference_wire.decode_bytes(b"\x05\x00\x00\x00ab", "x")


@pytest.mark.parametrize("raw", [True, False])
def test_texts_come_from_raw_contents_or_bytes_contents_with_their_shape(raw: bool) -> None:
    given = inference_wire.inputs(_request([b"one", b"two"], shape=[2, 1], raw=raw), "t5")
    assert given.texts == ("one", "two") and given.shape == (2, 1)


@pytest.mark.parametrize(
    ("request_", "words"),
    [
        (_request([b"x"], datatype="FP32"), "data-type is 'FP32', but model 't5' expects 'BYTES'"),
        (_request([b"x", b"y"], shape=[3]), "unexpected shape for input 'text'"),
        (_request([b"\xff"]), "not UTF-8"),
    ],
)
def test_malformed_inputs_are_invalid_argument_in_tritons_words(request_, words: str) -> None:
    with pytest.raises(InvalidInput, match=words):
        inference_wire.inputs(request_, "t5")


def test_an_input_of_another_name_is_refused() -> None:
    request = oip.ModelInferRequest(model_name="t5")
    request.inputs.add(name="prompt", datatype="BYTES", shape=[1])
    with pytest.raises(InvalidInput, match="unexpected inference input 'prompt' for model 't5'"):
        inference_wire.inputs(request, "t5")


def test_parameters_take_the_models_types_and_unknown_ones_are_refused() -> None:
    request = _request([b"a", b"b"])
    request.parameters["max_new_tokens"].int64_param = 5
    request.parameters["temperature"].double_param = 0.7  # tritonclient sends a float as a double
    request.parameters["do_sample"].bool_param = True
    asked = inference_wire.generation_requests(inference_wire.inputs(request, "t5"), "rid", deadline=12.0)
    assert [a.text for a in asked] == ["a", "b"] and [a.request_id for a in asked] == ["rid/0", "rid/1"]
    assert asked[0].parameters.max_new_tokens == 5 and asked[0].parameters.temperature == 0.7
    assert asked[0].parameters.do_sample is True and asked[0].deadline == 12.0
    request.parameters["max_new_tokens"].string_param = "five"
    with pytest.raises(InvalidInput, match=r"parameters\.max_new_tokens"):
        inference_wire.generation_requests(inference_wire.inputs(request, "t5"), "rid", None)
    request.parameters.pop("max_new_tokens")
    request.parameters["beams"].int64_param = 2
    with pytest.raises(InvalidInput, match=r"parameters\.beams: not a parameter of this model"):
        inference_wire.generation_requests(inference_wire.inputs(request, "t5"), "rid", None)


def test_stop_sequences_travel_as_json_and_what_the_outputs_cannot_carry_is_refused() -> None:
    request = _request([b"a"])
    request.parameters["stop_sequences"].string_param = '[".", "\\n"]'
    (asked,) = inference_wire.generation_requests(inference_wire.inputs(request, "t5"), "rid", None)
    assert asked.parameters.stop_sequences == (".", "\n")
    for wrong in ("[1, 2]", "not json", '"."'):
        request.parameters["stop_sequences"].string_param = wrong
        with pytest.raises(InvalidInput, match=r"parameters\.stop_sequences: must be a JSON list of strings"):
            inference_wire.generation_requests(inference_wire.inputs(request, "t5"), "rid", None)
    request.parameters.pop("stop_sequences")
    request.parameters["logprobs"].bool_param = True
    with pytest.raises(InvalidInput, match=r"parameters\.logprobs: log-probabilities are not offered"):
        inference_wire.generation_requests(inference_wire.inputs(request, "t5"), "rid", None)
    detect = _request([b"a"])
    detect.parameters["offset_unit"].string_param = "UTF16_CODE_UNIT"
    detect.parameters["threshold"].double_param = 0.3
    (asked,) = inference_wire.detection_requests(inference_wire.inputs(detect, "electra"), "rid", None)
    assert asked.offset_unit == "utf16_code_unit" and asked.threshold == 0.3
    detect.parameters["word_scoring"].string_param = "mean"
    with pytest.raises(InvalidInput, match=r"parameters\.word_scoring: ModelInfer answers tokens"):
        inference_wire.detection_requests(inference_wire.inputs(detect, "electra"), "rid", None)


def test_every_output_goes_back_raw_in_the_order_of_outputs_and_a_subset_when_asked() -> None:
    results = [
        GenerationResult((GeneratedSequence("Hallo", FinishReason.EOS_TOKEN, 3),), 5),
        GenerationResult((GeneratedSequence("Welt", FinishReason.LENGTH, 4),), 6),
    ]
    outputs = inference_wire.generation_outputs(results, (2,), 1)
    request = _request([b"a", b"b"])
    response = inference_wire.infer_response(request, "t5", "1", "rid", outputs)
    assert [o.name for o in response.outputs] == ["text", "generated_tokens", "finish_reason"]
    assert len(response.raw_output_contents) == 3 and response.id == "rid"
    assert inference_wire.decode_bytes(response.raw_output_contents[0], "x") == [b"Hallo", b"Welt"]
    assert struct.unpack("<2q", response.raw_output_contents[1]) == (3, 4)
    assert inference_wire.decode_bytes(response.raw_output_contents[2], "x") == [b"eos_token", b"length"]
    request.outputs.add(name="generated_tokens")
    request.id = "mine"
    response = inference_wire.infer_response(request, "t5", "1", "rid", outputs)
    assert [o.name for o in response.outputs] == ["generated_tokens"] and response.id == "mine"
    request.outputs.add(name="logits")
    with pytest.raises(InvalidInput, match="unexpected inference output 'logits'"):
        inference_wire.infer_response(request, "t5", "1", "rid", outputs)


def test_several_sequences_per_text_take_a_last_dimension() -> None:
    two = GenerationResult(
        (GeneratedSequence("Hallo", FinishReason.EOS_TOKEN, 3), GeneratedSequence("Hi", FinishReason.LENGTH, 2)), 5
    )
    text, tokens, reasons = inference_wire.generation_outputs([two, two], (2,), 2)
    assert text.shape == tokens.shape == reasons.shape == (2, 2)
    assert inference_wire.decode_bytes(text.raw, "x") == [b"Hallo", b"Hi", b"Hallo", b"Hi"]
    assert struct.unpack("<4q", tokens.raw) == (3, 2, 3, 2)


def test_detections_are_padded_to_the_longest_row() -> None:
    long = Detection((TokenScore("a", 0, 1, 0.9, True), TokenScore("b", 2, 3, 0.1, False)), (), 0.5)
    short = Detection((TokenScore("c", 0, 1, 0.2, False),), (), 0.0)
    tokens, scores, offsets, replaced, count = inference_wire.detection_outputs([long, short])
    assert tokens.shape == scores.shape == replaced.shape == (2, 2) and count.shape == (2,)
    assert offsets.shape == (2, 2, 2) and struct.unpack("<8i", offsets.raw) == (0, 1, 2, 3, 0, 1, -1, -1)
    assert inference_wire.decode_bytes(tokens.raw, "x") == [b"a", b"b", b"c", b""]
    assert struct.unpack("<4f", scores.raw) == pytest.approx((0.9, 0.1, 0.2, 0.0))
    assert replaced.raw == bytes([1, 0, 0, 0]) and struct.unpack("<2q", count.raw) == (2, 1)
