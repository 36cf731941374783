"""Run by test_tritonclient.py with a Python of its own, where tritonclient
is installed (it pins protobuf below the server's): calls the server as a
Triton user would and prints what it saw as JSON."""

from __future__ import annotations

import json
import queue
import sys
from collections.abc import Callable

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def _texts(texts: list[str], datatype: str = "BYTES") -> triton.InferInput:
    tensor = triton.InferInput("text", [len(texts)], datatype)
    tensor.set_data_from_numpy(np.array(texts, dtype=np.object_))
    return tensor


def _refusal(call: Callable[[], object]) -> list[str]:
    """The status code and message of a call that must fail."""
    try:
        call()
    except InferenceServerException as error:
        return [str(error.status()), str(error.message())]
    return ["OK", ""]


def main(address: str, prompts: list[str], sentences: list[str]) -> None:
    client = triton.InferenceServerClient(address)
    seen: dict[str, object] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "t5_ready": client.is_model_ready("t5"),
        "electra_inputs": [i.name for i in client.get_model_metadata("electra").inputs],
        "t5_outputs": [[o.name, list(o.shape)] for o in client.get_model_metadata("t5").outputs],
    }
    greedy = {"max_new_tokens": 12, "repetition_penalty": 1.0}
    for count in (1, len(prompts)):
        result = client.infer("t5", [_texts(prompts[:count])], parameters=greedy)
        seen[f"t5_shape_{count}"] = list(result.as_numpy("text").shape)
        seen[f"t5_text_{count}"] = [t.decode() for t in result.as_numpy("text")[:, 0]]
        seen[f"t5_tokens_{count}"] = result.as_numpy("generated_tokens")[:, 0].tolist()
    beams = client.infer("t5", [_texts(prompts[:1])], parameters={"num_beams": 2, "num_return_sequences": 2})
    seen["t5_two_sequences_shape"] = list(beams.as_numpy("text").shape)
    for count in (1, len(sentences)):
        result = client.infer("electra", [_texts(sentences[:count])], parameters={"offset_unit": "utf16_code_unit"})
        seen[f"electra_scores_{count}"] = result.as_numpy("scores").tolist()
        seen[f"electra_offsets_{count}"] = result.as_numpy("offsets").tolist()
        seen[f"electra_count_{count}"] = result.as_numpy("token_count").tolist()
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=lambda result, error: answers.put((result, error)))
    client.async_stream_infer("t5", [_texts(prompts[:1])], parameters=greedy)
    pieces = []
    while True:
        result, error = answers.get(timeout=60)
        if error is not None:
            raise error
        pieces.append(result.as_numpy("text")[0, 0].decode())
        if result.get_response().parameters["triton_final_response"].bool_param:
            break
    client.stop_stream()
    seen["t5_streamed"] = pieces
    floats = triton.InferInput("text", [1], "FP32")
    floats.set_data_from_numpy(np.array([1.0], dtype=np.float32))
    cut = _texts(sentences[:1])
    cut.set_shape([2])
    seen["refused"] = {
        "unknown_model": _refusal(lambda: client.infer("gpt", [_texts(sentences[:1])])),
        "wrong_datatype": _refusal(lambda: client.infer("t5", [floats])),
        "wrong_shape": _refusal(lambda: client.infer("electra", [cut])),
        "unknown_parameter": _refusal(lambda: client.infer("t5", [_texts(prompts[:1])], parameters={"beams": 2})),
        "logprobs": _refusal(lambda: client.infer("t5", [_texts(prompts[:1])], parameters={"logprobs": True})),
    }
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]))
