"""Run by test_tritonclient.py with a Python of its own, where tritonclient
is installed (it pins protobuf below the server's): calls the server as a
Triton user would and prints what it saw as JSON."""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException


def main(address: str, prompts: list[str], sentence: str) -> None:
    client = triton.InferenceServerClient(address)
    seen: dict[str, object] = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "t5_ready": client.is_model_ready("t5"),
        "electra_inputs": [i.name for i in client.get_model_metadata("electra").inputs],
    }
    text = triton.InferInput("text", [len(prompts)], "BYTES")
    text.set_data_from_numpy(np.array(prompts, dtype=np.object_))
    result = client.infer("t5", [text], parameters={"max_new_tokens": 12, "repetition_penalty": 1.0})
    seen["t5_text"] = [t.decode() for t in result.as_numpy("text")]
    seen["t5_tokens"] = result.as_numpy("generated_tokens").tolist()
    text = triton.InferInput("text", [1], "BYTES")
    text.set_data_from_numpy(np.array([sentence], dtype=np.object_))
    result = client.infer("electra", [text], outputs=[triton.InferRequestedOutput("scores")])
    seen["electra_scores"] = result.as_numpy("scores").tolist()
    try:
        client.infer("gpt", [text])
    except InferenceServerException as error:
        seen["unknown"] = [error.status(), error.message()]
    print(json.dumps(seen))


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]), sys.argv[3])
