"""The Open Inference Protocol through real gRPC, on the session's server:
the same port, the same models and answers as the project's own RPCs, and
Triton's status codes. (tritonclient itself: test_tritonclient.py.)"""

from __future__ import annotations

import struct

import grpc
import pytest

from t5electra.deployments import inference_wire
from t5electra.protocol import bytes_tensor
from t5electra.protocol.inference import open_inference_pb2 as oip
from t5electra.protocol.inference import open_inference_pb2_grpc

from support.reference import PROMPTS, SENTENCES
from support.serving import ServerUnderTest
from support.waiting import wait_for

pytestmark = pytest.mark.serve


def _infer(model: str, texts: list[str], **parameters: int) -> oip.ModelInferRequest:
    request = oip.ModelInferRequest(model_name=model, id="call-1")
    request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
    request.raw_input_contents.append(bytes_tensor.pack([t.encode() for t in texts]))
    for name, value in parameters.items():
        request.parameters[name].int64_param = value
    return request


def test_probes_and_metadata(server: ServerUnderTest) -> None:
    with server.channel() as channel:
        stub = open_inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        assert stub.ServerLive(oip.ServerLiveRequest()).live
        assert stub.ServerReady(oip.ServerReadyRequest()).ready
        assert stub.ModelReady(oip.ModelReadyRequest(name="t5")).ready
        assert stub.ModelReady(oip.ModelReadyRequest(name="electra")).ready
        assert stub.ServerMetadata(oip.ServerMetadataRequest()).name == "t5electra"
        metadata = stub.ModelMetadata(oip.ModelMetadataRequest(name="electra"))
        assert [i.name for i in metadata.inputs] == ["text"] and metadata.inputs[0].datatype == "BYTES"
        assert [o.name for o in metadata.outputs] == ["tokens", "scores", "offsets", "replaced", "token_count"]
        assert metadata.versions == ["1"] and metadata.properties["checkpoint"] == "tiny-electra"
        for call, message in ((stub.ModelReady, oip.ModelReadyRequest), (stub.ModelMetadata, oip.ModelMetadataRequest)):
            with pytest.raises(grpc.RpcError) as raised:
                call(message(name="gpt"))
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND
            assert raised.value.details() == "Request for unknown model: 'gpt' is not found"


def test_model_infer_answers_what_generate_and_detect_answer(server: ServerUnderTest) -> None:
    with server.client() as client:
        expected = [client.generate(p, max_new_tokens=12) for p in PROMPTS[:3]]
        detected = client.detect_replacements(SENTENCES[0])
    with server.channel() as channel:
        stub = open_inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        response = stub.ModelInfer(_infer("t5", list(PROMPTS[:3]), max_new_tokens=12), timeout=60)
        assert response.model_name == "t5" and response.id == "call-1"
        texts = inference_wire.decode_bytes(response.raw_output_contents[0], "text")
        assert [t.decode() for t in texts] == [g.text for g in expected]
        tokens = struct.unpack("<3q", response.raw_output_contents[1])
        assert list(tokens) == [g.sequences[0].generated_tokens for g in expected]
        response = stub.ModelInfer(_infer("electra", [SENTENCES[0]]), timeout=60)
        names = [o.name for o in response.outputs]
        width = response.outputs[names.index("scores")].shape[1]
        scores = struct.unpack(f"<{width}f", response.raw_output_contents[names.index("scores")])
        assert width == len(detected.tokens)
        assert scores == pytest.approx([t.score for t in detected.tokens], abs=1e-6)


def test_model_infer_refuses_what_triton_refuses(server: ServerUnderTest) -> None:
    with server.channel() as channel:
        stub = open_inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(_infer("gpt", ["x"]), timeout=30)
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
        wrong = _infer("t5", ["x"])
        wrong.inputs[0].datatype = "FP32"
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(wrong, timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "data-type is 'FP32', but model 't5' expects 'BYTES'" in raised.value.details()
        with pytest.raises(grpc.RpcError) as raised:
            stub.ModelInfer(_infer("t5", ["x"], max_new_tokens=0), timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "max_new_tokens" in raised.value.details()


def test_model_stream_infer_streams_t5_and_answers_each_request_in_turn(server: ServerUnderTest) -> None:
    with server.client() as client:
        expected = client.generate(PROMPTS[0], max_new_tokens=12)
        detected = client.detect_replacements(SENTENCES[0])
    requests = [
        _infer("t5", [PROMPTS[0]], max_new_tokens=12),
        _infer("gpt", ["x"]),
        _infer("electra", [SENTENCES[0]]),
    ]
    with server.channel() as channel:
        stub = open_inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        answers = list(stub.ModelStreamInfer(iter(requests), timeout=60))
    pieces = [a.infer_response for a in answers[:-2]]
    assert pieces and all(not a.error_message for a in answers[:-2])
    assert "".join(inference_wire.decode_bytes(p.raw_output_contents[0], "text")[0].decode() for p in pieces) == (
        expected.text
    )
    assert [p.parameters["triton_final_response"].bool_param for p in pieces] == [False] * (len(pieces) - 1) + [True]
    last = pieces[-1]
    assert [o.name for o in last.outputs] == ["text", "generated_tokens", "finish_reason"]
    assert struct.unpack("<q", last.raw_output_contents[1]) == (expected.output_tokens,)
    assert answers[-2].error_message == "NOT_FOUND: Request for unknown model: 'gpt' is not found"
    electra = answers[-1].infer_response
    names = [o.name for o in electra.outputs]
    width = electra.outputs[names.index("scores")].shape[1]
    scores = struct.unpack(f"<{width}f", electra.raw_output_contents[names.index("scores")])
    assert scores == pytest.approx([t.score for t in detected.tokens], abs=1e-6)


TRAILERS = {"x-request-id", "model", "queue-ms", "inference-ms", "batch-size", "server-timing"}
"""What a successful Generate's trailers carry; ModelInfer's and ModelStreamInfer's carry the same."""


def _timed(trailers: dict[str, str]) -> None:
    assert trailers.keys() >= TRAILERS, trailers
    assert int(trailers["batch-size"]) >= 1 and float(trailers["inference-ms"]) > 0, trailers
    assert "replica;dur=" in trailers["server-timing"], trailers


def test_model_infer_and_model_stream_infer_trailers_carry_the_replicas_figures(server: ServerUnderTest) -> None:
    with server.channel() as channel:
        stub = open_inference_pb2_grpc.GRPCInferenceServiceStub(channel)
        _, call = stub.ModelInfer.with_call(_infer("electra", list(SENTENCES[:2])), timeout=60)
        trailers = dict(call.trailing_metadata())
        _timed(trailers)
        assert trailers["model"] == "tiny-electra"
        _, call = stub.ModelInfer.with_call(_infer("t5", list(PROMPTS[:2]), max_new_tokens=8), timeout=60)
        _timed(dict(call.trailing_metadata()))
        requests = [_infer("t5", [PROMPTS[0]], max_new_tokens=8), _infer("electra", [SENTENCES[0]])]
        stream = stub.ModelStreamInfer(iter(requests), timeout=60)
        assert all(not answer.error_message for answer in stream)
        _timed(dict(stream.trailing_metadata()))


def test_a_model_infer_fails_as_one_request_and_its_other_texts_leave_the_batch(server: ServerUnderTest) -> None:
    """One text of four is too long: the call answers its INVALID_ARGUMENT
    and the three others, forced to 512 tokens, stop decoding at once
    instead of decoding for nobody until they finish."""
    server.wait_until_idle()
    steps_before = server.t5_info()["steps"]
    texts = [PROMPTS[0], PROMPTS[1], "reverse words: " + "apple " * 2000, PROMPTS[2]]
    with server.channel() as channel, pytest.raises(grpc.RpcError) as raised:
        open_inference_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(
            _infer("t5", texts, max_new_tokens=512, min_new_tokens=512), timeout=120
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, raised.value.details()
    assert raised.value.details().startswith("text:")
    wait_for(lambda: server.t5_info()["decoding"] == 0, what="the other texts' rows to leave the batch")
    assert server.t5_info()["steps"] - steps_before < 512
