"""The ingress's methods for the Open Inference Protocol
(``inference.GRPCInferenceService``), mixed into :class:`IngressDeployment`:
they use its readiness, authentication, admission gate, model handles and
the one place that turns failures into status codes, as the project's own
RPCs do. Tensors <-> domain requests and answers: ``inference_wire.py``.
Probes (ServerLive, ServerReady, ModelReady) need no token, as health
checks do not.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

import grpc
from ray.serve.grpc_util import RayServegRPCContext
from ray.serve.handle import DeploymentHandle

from t5electra.protocol.inference import open_inference_pb2 as oip

from . import bounded, inference_wire, names
from .calls import Call, answered, deadline, unary
from .gate import Asked
from .replies import Reply
from .servicers import DETECTION_SERVICE, GENERATION_SERVICE
from .status import to_status_code

logger = logging.getLogger("ray.serve")

_VERSION = importlib.metadata.version("t5-electra-serve")
_MODEL_VERSION = "1"
"""Each model has one version: the checkpoint the deployment serves."""


class OpenInferenceMethods:
    """The seven RPCs; ``self`` is the ingress, whose attributes they use."""

    async def ServerLive(
        self, request: oip.ServerLiveRequest, grpc_context: RayServegRPCContext
    ) -> oip.ServerLiveResponse:
        return oip.ServerLiveResponse(live=True)

    async def ServerReady(
        self, request: oip.ServerReadyRequest, grpc_context: RayServegRPCContext
    ) -> oip.ServerReadyResponse:
        snapshot = await self._readiness.snapshot()
        return oip.ServerReadyResponse(ready=snapshot.serving())

    @unary(oip.ModelReadyResponse)
    async def ModelReady(
        self, call: Call, request: oip.ModelReadyRequest, grpc_context: RayServegRPCContext
    ) -> oip.ModelReadyResponse:
        service, _ = self._inference_model(request.name)
        snapshot = await self._readiness.snapshot()
        return oip.ModelReadyResponse(ready=snapshot.serving(service))

    @unary(oip.ServerMetadataResponse)
    async def ServerMetadata(
        self, call: Call, request: oip.ServerMetadataRequest, grpc_context: RayServegRPCContext
    ) -> oip.ServerMetadataResponse:
        self._admit(call, grpc_context)
        return oip.ServerMetadataResponse(name="t5electra", version=_VERSION)

    @unary(oip.ModelMetadataResponse)
    async def ModelMetadata(
        self, call: Call, request: oip.ModelMetadataRequest, grpc_context: RayServegRPCContext
    ) -> oip.ModelMetadataResponse:
        self._admit(call, grpc_context)
        service, handle = self._inference_model(request.name)
        await self._require(service)
        with call.model_call():
            model = await handle.describe.remote()
        inputs, outputs = (
            (inference_wire.T5_INPUTS, inference_wire.T5_OUTPUTS)
            if service == GENERATION_SERVICE
            else (inference_wire.ELECTRA_INPUTS, inference_wire.ELECTRA_OUTPUTS)
        )
        properties = {"checkpoint": model.name, "dtype": model.dtype, "device": model.device}
        return inference_wire.model_metadata(request.name, _MODEL_VERSION, inputs, outputs, properties)

    @unary(oip.ModelInferResponse)
    async def ModelInfer(
        self, call: Call, request: oip.ModelInferRequest, grpc_context: RayServegRPCContext
    ) -> oip.ModelInferResponse:
        """Every element of the ``text`` input is one request to the model,
        through the same admission, deadline and batching as Generate's and
        DetectReplacements'; the call fails as one request (the first
        failure's status, the other texts cancelled)."""
        self._admit(call, grpc_context)
        return await self._infer(call, request, grpc_context)

    async def ModelStreamInfer(
        self, requests: AsyncIterator[oip.ModelInferRequest], grpc_context: RayServegRPCContext
    ) -> AsyncIterator[oip.ModelStreamInferResponse]:
        """Requests on one stream, answered in turn: a T5 request of one text
        streams its text as GenerateStream does, any other gets ModelInfer's
        answer. A request that fails is answered with its error and the
        stream goes on, as Triton's does; the stream's status is OK unless
        the stream itself fails (authentication). Serve's proxy applies the
        context with each message it receives and drops what is set after
        the last one, so every message goes with the trailers as they stand
        (the last request's reply included)."""
        async with self._answering("ModelStreamInfer", grpc_context, stream=True) as call:
            self._admit(call, grpc_context)
            async for request in requests:
                try:
                    async for answer in self._streamed(call, request, grpc_context):
                        answered(call, grpc_context, call.elapsed_ms())
                        yield oip.ModelStreamInferResponse(infer_response=answer)
                except Exception as error:  # one request's failure, answered on the stream
                    code, message = to_status_code(error)
                    if code == grpc.StatusCode.INTERNAL:
                        logger.exception("request %s (ModelStreamInfer) failed", call.request_id, exc_info=error)
                    answered(call, grpc_context, call.elapsed_ms())
                    yield oip.ModelStreamInferResponse(error_message=f"{code.name}: {message}")

    async def _streamed(
        self, call: Call, request: oip.ModelInferRequest, grpc_context: RayServegRPCContext
    ) -> AsyncIterator[oip.ModelInferResponse]:
        name = inference_wire.model_name(request)
        service, _ = self._inference_model(name)
        given = inference_wire.inputs(request, name)
        if service != GENERATION_SERVICE or len(given.texts) != 1:
            yield await self._infer(call, request, grpc_context)
            return
        ends = deadline(grpc_context)
        await self._require(service)
        (one,) = inference_wire.generation_requests(given, call.request_id, ends)
        self._t5_gate.check(Asked.of(one, stream=True), time.time())
        with call.model_call(), self._traced(call, "generate_stream") as trace:
            stream = self._t5.options(stream=True).generate_stream.remote(one, trace)
            async with aclosing(bounded.pieces(stream, ends, self._t5_gate.learn)) as messages:
                async for message in messages:
                    if isinstance(message, Reply):
                        call.record(message)
                        message = message.payload
                    yield inference_wire.streamed_piece(request, name, _MODEL_VERSION, call.request_id, message)

    async def _infer(
        self, call: Call, request: oip.ModelInferRequest, grpc_context: RayServegRPCContext
    ) -> oip.ModelInferResponse:
        name = inference_wire.model_name(request)
        service, _ = self._inference_model(name)
        given = inference_wire.inputs(request, name)
        ends = deadline(grpc_context)
        await self._require(service)
        generation = service == GENERATION_SERVICE
        method, deployment = ("generate", names.TEXT_GENERATOR) if generation else ("detect", names.DETECTOR)
        with call.model_call(), self._traced(call, method, deployment) as trace:
            if generation:
                generations = inference_wire.generation_requests(given, call.request_id, ends)
                for one in generations:
                    self._t5_gate.check(Asked.of(one, stream=False), time.time())
                replies = await bounded.together(
                    bounded.answer(self._t5.generate.remote(one, trace), ends, self._t5_gate.learn)
                    for one in generations
                )
                per_text = generations[0].parameters.num_return_sequences if generations else 1
                outputs = inference_wire.generation_outputs([r.payload for r in replies], given.shape, per_text)
            else:
                detections = inference_wire.detection_requests(given, call.request_id, ends)
                replies = await bounded.together(self._detect(one, trace) for one in detections)
                outputs = inference_wire.detection_outputs([r.payload for r in replies])
        for reply in replies:
            call.record(reply)
        return inference_wire.infer_response(request, name, _MODEL_VERSION, call.request_id, outputs)

    def _inference_model(self, name: str) -> tuple[str, DeploymentHandle]:
        """The service and handle behind an Open Inference model name; NOT_FOUND for another."""
        if name == self._inference_names.t5_model_name:
            return GENERATION_SERVICE, self._t5
        if name == self._inference_names.electra_model_name:
            return DETECTION_SERVICE, self._electra
        raise inference_wire.unknown(name)
