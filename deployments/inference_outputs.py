"""The answer side of the Open Inference Protocol: this server's results as
output tensors, the responses that carry them and the models' metadata,
which names the same tensors (a streamed piece is checked against it).
Requests are read in ``inference_wire.py``. Outputs:

- T5, for an input of shape S and K = ``num_return_sequences`` (1 unless
  given): ``text`` (BYTES), ``generated_tokens`` (INT64) and
  ``finish_reason`` (BYTES: length, eos_token, stop_sequence), each of shape
  S + [K], a text's sequences best first.
- ELECTRA: for N texts of up to T tokens, ``tokens`` (BYTES [N, T]),
  ``scores`` (FP32 [N, T]), ``offsets`` (INT32 [N, T, 2], start and end in
  ``offset_unit``) and ``replaced`` (BOOL [N, T]), padded with "", 0, -1
  and false; ``token_count`` (INT64 [N]) says how many of each row are real.

Every output goes back in ``raw_output_contents``, in the order of the
outputs, as tritonclient reads it (a BYTES element is its length in 4 bytes,
little endian, then its bytes). Errors use Triton's wording, so that
clients written against Triton read them the same.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from t5electra.protocol import bytes_tensor
from t5electra.protocol.inference import open_inference_pb2 as oip
from t5electra.server.domain import Detection, GenerationResult, StreamPiece
from t5electra.server.errors import InvalidInput

TEXT = "text"
"""Each model's one input, and T5's first output."""


@dataclass(frozen=True)
class Tensor:
    """One output: name, datatype, shape and its raw bytes."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    raw: bytes


@dataclass(frozen=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]


T5_INPUTS = (TensorSpec(TEXT, "BYTES", (-1,)),)
T5_OUTPUTS = (
    TensorSpec(TEXT, "BYTES", (-1, -1)),
    TensorSpec("generated_tokens", "INT64", (-1, -1)),
    TensorSpec("finish_reason", "BYTES", (-1, -1)),
)
ELECTRA_INPUTS = (TensorSpec(TEXT, "BYTES", (-1,)),)
ELECTRA_OUTPUTS = (
    TensorSpec("tokens", "BYTES", (-1, -1)),
    TensorSpec("scores", "FP32", (-1, -1)),
    TensorSpec("offsets", "INT32", (-1, -1, 2)),
    TensorSpec("replaced", "BOOL", (-1, -1)),
    TensorSpec("token_count", "INT64", (-1,)),
)


def model_metadata(
    name: str, version: str, inputs_: Sequence[TensorSpec], outputs: Sequence[TensorSpec], properties: dict[str, str]
) -> oip.ModelMetadataResponse:
    response = oip.ModelMetadataResponse(name=name, versions=[version], platform="pytorch", properties=properties)
    for spec in inputs_:
        response.inputs.add(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))
    for spec in outputs:
        response.outputs.add(name=spec.name, datatype=spec.datatype, shape=list(spec.shape))
    return response


def generation_outputs(results: Sequence[GenerationResult], shape: tuple[int, ...], per_text: int) -> list[Tensor]:
    """Each text's ``per_text`` sequences (``num_return_sequences``) along a last dimension."""
    shape = (*shape, per_text)
    sequences = [sequence for result in results for sequence in result.sequences]
    return [
        Tensor(TEXT, "BYTES", shape, bytes_tensor.pack([s.text.encode() for s in sequences])),
        Tensor(
            "generated_tokens",
            "INT64",
            shape,
            struct.pack(f"<{len(sequences)}q", *(s.generated_tokens for s in sequences)),
        ),
        Tensor(
            "finish_reason",
            "BYTES",
            shape,
            bytes_tensor.pack([s.finish_reason.name.lower().encode() for s in sequences]),
        ),
    ]


def streamed_piece(
    request: oip.ModelInferRequest, model: str, version: str, request_id: str, piece: StreamPiece
) -> oip.ModelInferResponse:
    """One piece of a streamed T5 answer, as a Triton decoupled model sends
    it: its new text as ``text`` [1, 1]; the last piece also has
    ``generated_tokens`` and ``finish_reason``, and the parameter
    ``triton_final_response`` (false on the others). Outputs the request
    names are the only ones sent, as far as the piece has them."""
    outputs = [Tensor(TEXT, "BYTES", (1, 1), bytes_tensor.pack([piece.text.encode()]))]
    if piece.finish_reason is not None:
        outputs += [
            Tensor("generated_tokens", "INT64", (1, 1), struct.pack("<q", piece.generated_tokens)),
            Tensor("finish_reason", "BYTES", (1, 1), bytes_tensor.pack([piece.finish_reason.name.lower().encode()])),
        ]
    wanted = {output.name for output in request.outputs}
    unknown_names = sorted(wanted - {spec.name for spec in T5_OUTPUTS})
    if unknown_names:
        raise InvalidInput("outputs", f"unexpected inference output '{unknown_names[0]}' for model '{model}'")
    response = oip.ModelInferResponse(model_name=model, model_version=version, id=request.id or request_id)
    for tensor in outputs:
        if not wanted or tensor.name in wanted:
            response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
            response.raw_output_contents.append(tensor.raw)
    response.parameters["triton_final_response"].bool_param = piece.finish_reason is not None
    return response


def detection_outputs(detections: Sequence[Detection]) -> list[Tensor]:
    rows, width = len(detections), max((len(d.tokens) for d in detections), default=0)

    def padded(pick: Callable[[Any], Any], fill: Any) -> list[Any]:
        return [value for d in detections for value in [*map(pick, d.tokens), *[fill] * (width - len(d.tokens))]]

    tokens = padded(lambda t: t.token.encode(), b"")
    scores = padded(lambda t: t.score, 0.0)
    offsets = [edge for pair in padded(lambda t: (t.start, t.end), (-1, -1)) for edge in pair]
    replaced = padded(lambda t: t.replaced, False)
    return [
        Tensor("tokens", "BYTES", (rows, width), bytes_tensor.pack(tokens)),
        Tensor("scores", "FP32", (rows, width), struct.pack(f"<{len(scores)}f", *scores)),
        Tensor("offsets", "INT32", (rows, width, 2), struct.pack(f"<{len(offsets)}i", *offsets)),
        Tensor("replaced", "BOOL", (rows, width), bytes(int(value) for value in replaced)),
        Tensor("token_count", "INT64", (rows,), struct.pack(f"<{rows}q", *(len(d.tokens) for d in detections))),
    ]


def infer_response(
    request: oip.ModelInferRequest, model: str, version: str, request_id: str, outputs: list[Tensor]
) -> oip.ModelInferResponse:
    """The outputs asked for (all when none are), each in raw_output_contents."""
    wanted = [output.name for output in request.outputs]
    by_name = {tensor.name: tensor for tensor in outputs}
    for name in wanted:
        if name not in by_name:
            raise InvalidInput("outputs", f"unexpected inference output '{name}' for model '{model}'")
    chosen = [by_name[name] for name in wanted] if wanted else outputs
    response = oip.ModelInferResponse(model_name=model, model_version=version, id=request.id or request_id)
    for tensor in chosen:
        response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=list(tensor.shape))
        response.raw_output_contents.append(tensor.raw)
    return response
