"""The gRPC-facing deployment: one method per RPC, named as in the protos,
which Ray Serve's gRPC proxy calls with the request proto.

Each method converts the proto to a domain request, forwards it to a model
deployment through its handle (the replica validates and tokenizes it, once),
records the :class:`Reply` it gets and converts it back. Every failure goes
through :func:`status.to_status_code`; nothing else here decides a status code.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager, aclosing, asynccontextmanager

import grpc
from grpc_health.v1 import health_pb2
from ray.serve.grpc_util import RayServegRPCContext
from ray.serve.handle import DeploymentHandle
from ray.serve.metrics import Counter, Gauge, Histogram

from t5electra.protocol import SERVICE_OF_RPC
from t5electra.protocol.v1 import detection_pb2, generation_pb2, models_pb2
from t5electra.server.domain import Detection, DetectionRequest
from t5electra.server.errors import ModelNotReady

from . import bounded, names, wire
from .auth import TokenTable
from .calls import Call, answered, deadline, metadata_value, request_id, unary
from .gate import Asked, Gate
from .health import LIVENESS, REQUEST_MAX_AGE_S, Readiness, Snapshot
from .hop import Hop
from .inference_ingress import OpenInferenceMethods
from .replies import Reply
from .servicers import DETECTION_SERVICE, GENERATION_SERVICE, MODELS_SERVICE
from .settings import Settings
from .status import retry_hint, to_status_code
from .tracing import Carrier, Tracing

logger = logging.getLogger("ray.serve")

_LATENCY_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000, 60000]


class StreamFailed(Exception):
    """Ends a stream whose status code is already set on the context."""


class IngressDeployment(OpenInferenceMethods):
    """Proto in, domain request out to a model deployment, its Reply back
    into the proto. A plain class, made a Serve deployment by ``app.py``;
    ``read_status`` (Serve's status API unless given) says which models
    have running replicas, so that tests run it without Ray."""

    def __init__(
        self,
        t5: DeploymentHandle,
        electra: DeploymentHandle,
        settings: Settings,
        read_status: Callable[[], Snapshot] | None = None,
    ) -> None:
        self._t5 = t5
        self._electra = electra
        self._tokens = TokenTable.load(settings.auth.tokens_file, settings.auth.tokens_env)
        self._readiness = Readiness(
            settings.app_name,
            {GENERATION_SERVICE: names.TEXT_GENERATOR, DETECTION_SERVICE: names.DETECTOR},
            read_status,
        )
        self._scales_to_zero = {
            service
            for service, model in ((GENERATION_SERVICE, settings.t5), (DETECTION_SERVICE, settings.electra))
            if model.autoscaling.min_replicas == 0
        }
        self._inference_names = settings.open_inference
        self._tracing = Tracing.from_environment(names.INGRESS)
        self._detect_hop = self._hop(settings)
        self._t5_gate = Gate(settings.limits.max_new_tokens, settings.limits.max_num_return_sequences)
        self._requests = Counter("t5electra_requests", "RPCs answered", ("rpc", "code"))
        self._latency = Histogram("t5electra_latency_ms", "RPC latency inside the server", _LATENCY_BUCKETS, ("rpc",))
        self._replicas = Gauge("t5electra_replicas", "Running replicas per model deployment", ("model_deployment",))
        self._extras = Counter(
            "t5electra_extras", "Token log-probabilities and word suggestions returned", ("rpc", "kind")
        )

    @unary(generation_pb2.GenerateResponse)
    async def Generate(
        self, call: Call, request: generation_pb2.GenerateRequest, grpc_context: RayServegRPCContext
    ) -> generation_pb2.GenerateResponse:
        self._admit(call, grpc_context)
        domain = wire.generation_request(request, call.request_id, deadline(grpc_context))
        await self._require(GENERATION_SERVICE)
        self._t5_gate.check(Asked.of(domain, stream=False), time.time())
        with call.model_call(), self._traced(call, "generate") as trace:
            reply = await bounded.answer(self._t5.generate.remote(domain, trace), domain.deadline, self._t5_gate.learn)
        call.record(reply, logprobs=sum(len(s.tokens) for s in reply.payload.sequences))
        return wire.generate_response(reply)

    async def GenerateStream(
        self, request: generation_pb2.GenerateRequest, grpc_context: RayServegRPCContext
    ) -> AsyncIterator[generation_pb2.GenerateStreamResponse]:
        async with self._answering("GenerateStream", grpc_context, stream=True) as call:
            self._admit(call, grpc_context)
            domain = wire.generation_request(request, call.request_id, deadline(grpc_context))
            await self._require(GENERATION_SERVICE)
            self._t5_gate.check(Asked.of(domain, stream=True), time.time())
            with call.model_call(), self._traced(call, "generate_stream") as trace:
                stream = self._t5.options(stream=True).generate_stream.remote(domain, trace)
                async with aclosing(bounded.pieces(stream, domain.deadline, self._t5_gate.learn)) as messages:
                    async for message in messages:
                        if isinstance(message, Reply):
                            call.record(message, logprobs=len(message.payload.tokens))
                            # Serve's proxy applies the context with each message
                            # it receives: a stream's trailers go with its last one.
                            answered(call, grpc_context, call.elapsed_ms())
                            yield wire.last_stream_response(message)
                        else:
                            call.logprobs += len(message.tokens)
                            yield wire.stream_response(message)

    @unary(detection_pb2.DetectReplacementsResponse)
    async def DetectReplacements(
        self, call: Call, request: detection_pb2.DetectReplacementsRequest, grpc_context: RayServegRPCContext
    ) -> detection_pb2.DetectReplacementsResponse:
        self._admit(call, grpc_context)
        domain = wire.detection_request(request, call.request_id, deadline(grpc_context))
        await self._require(DETECTION_SERVICE)
        with call.model_call(), self._traced(call, "detect", names.DETECTOR) as trace:
            reply = await self._detect(domain, trace)
        call.record(reply, suggestions=reply.payload.suggestions_made)
        return wire.detect_response(reply)

    @unary(models_pb2.TokenizeResponse)
    async def Tokenize(
        self, call: Call, request: models_pb2.TokenizeRequest, grpc_context: RayServegRPCContext
    ) -> models_pb2.TokenizeResponse:
        self._admit(call, grpc_context)
        kind, text = wire.tokenize_request(request)
        service, handle = (GENERATION_SERVICE, self._t5) if kind == "t5" else (DETECTION_SERVICE, self._electra)
        await self._require(service)
        with call.model_call():
            reply = await handle.tokenize.remote(text)
        call.usage, call.model = reply.usage, reply.model
        return wire.tokenize_response(reply)

    @unary(models_pb2.GetModelInfoResponse)
    async def GetModelInfo(
        self, call: Call, request: models_pb2.GetModelInfoRequest, grpc_context: RayServegRPCContext
    ) -> models_pb2.GetModelInfoResponse:
        self._admit(call, grpc_context)
        wire.model_info_request(request)
        await self._require(GENERATION_SERVICE)
        await self._require(DETECTION_SERVICE)
        with call.model_call():
            models = await asyncio.gather(self._t5.describe.remote(), self._electra.describe.remote())
        return wire.model_info_response(list(models))

    async def Check(
        self, request: health_pb2.HealthCheckRequest, grpc_context: RayServegRPCContext
    ) -> health_pb2.HealthCheckResponse:
        """grpc.health.v1: SERVING once every model the service needs has a
        running replica; NOT_SERVING before that and while the app drains.
        ``liveness`` is SERVING as long as the proxy and an ingress answer."""
        known = {"", GENERATION_SERVICE, DETECTION_SERVICE, MODELS_SERVICE, LIVENESS}
        if request.service not in known:
            grpc_context.set_code(grpc.StatusCode.NOT_FOUND)
            grpc_context.set_details(f"unknown service {request.service!r}; known: {sorted(known)}")
            return health_pb2.HealthCheckResponse()
        if request.service == LIVENESS:
            return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
        snapshot = await self._readiness.snapshot()
        for deployment, count in snapshot.replicas.items():
            self._replicas.set(count, tags={"model_deployment": deployment})
        serving = snapshot.serving(None if request.service in ("", MODELS_SERVICE) else request.service)
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        return health_pb2.HealthCheckResponse(status=status)

    def __del__(self) -> None:
        """Serve calls this as the replica stops: spans still buffered are exported."""
        self._tracing.shutdown()

    def _hop(self, settings: Settings) -> Hop[tuple[DetectionRequest, Carrier | None]] | None:
        """DetectReplacements' shared calls (``hop.py``), when configured:
        ``electra.ingress_calls_per_replica`` calls out to each running ELECTRA replica."""
        electra = settings.electra
        per_replica = electra.ingress_calls()
        if not per_replica:
            return None

        def max_waiting() -> int | None:
            """What Ray would have held without shared calls: each replica's
            ``max_ongoing_requests`` and the router's queue."""
            if electra.max_queued_requests < 0:
                return None
            return electra.ongoing_limit() * self._readiness.replicas(names.DETECTOR) + electra.max_queued_requests

        return Hop(
            self._electra.detect_many.remote,
            lambda: per_replica * self._readiness.replicas(names.DETECTOR),
            electra.max_batch_size,
            max_waiting,
        )

    async def _detect(self, request: DetectionRequest, trace: Carrier | None) -> Reply[Detection]:
        if self._detect_hop is None:
            return await bounded.answer(self._electra.detect.remote(request, trace), request.deadline)
        return await bounded.shared(self._detect_hop.call((request, trace)), request.deadline)

    def _admit(self, call: Call, grpc_context: RayServegRPCContext) -> None:
        """Checks the caller's bearer token when authentication is on; health
        checks never come here, so probes need no token."""
        if self._tokens is not None:
            call.caller = self._tokens.authorize(metadata_value(grpc_context, "authorization"), call.rpc).name

    async def _require(self, service: str) -> None:
        """Fails fast with UNAVAILABLE when the model behind ``service`` has no
        running replica, instead of letting the call wait on a handle until the
        client's deadline. Deployments that may scale to zero are exempt: their
        first request is what starts a replica."""
        if service in self._scales_to_zero:
            return
        snapshot = await self._readiness.snapshot(REQUEST_MAX_AGE_S)
        if not snapshot.serving(service):
            raise ModelNotReady(f"{snapshot.services[service]} has no running replica yet")

    @asynccontextmanager
    async def _answering(
        self, rpc: str, grpc_context: RayServegRPCContext, *, stream: bool = False
    ) -> AsyncIterator[Call]:
        """Runs one RPC's body: a failure sets the status code and is
        swallowed (a unary method, see :func:`calls.unary`, then answers its
        empty response) or, on a stream, ends it; every call ends with
        trailing metadata, metrics and its log line."""
        call = Call(rpc, request_id(grpc_context))
        service = SERVICE_OF_RPC[rpc]
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc, "request_id": call.request_id}
        with self._tracing.rpc(f"{service}/{rpc}", grpc_context.invocation_metadata(), attributes) as call.trace:
            try:
                yield call
            except (asyncio.CancelledError, GeneratorExit):
                call.code = grpc.StatusCode.CANCELLED
                raise
            except Exception as error:  # every failure is answered with a status
                self._fail(call, grpc_context, error)
                if stream:
                    # Serve's proxy takes a stream's status from the context only
                    # along with a yielded message, or from an exception raised
                    # after the code was set: raising is how a stream fails.
                    raise StreamFailed(f"{call.code.name}: {error}") from error
            finally:
                self._finish(call, grpc_context)

    def _traced(self, call: Call, method: str, deployment: str = names.TEXT_GENERATOR) -> AbstractContextManager:
        """The span of a call to a model deployment's ``method``; yields the
        trace carrier the replica continues from (None when not tracing)."""
        return self._tracing.model_call(call.trace, f"{deployment}.{method}")

    def _fail(self, call: Call, grpc_context: RayServegRPCContext, error: Exception) -> None:
        code, message = to_status_code(error)
        call.code = code
        if code == grpc.StatusCode.INTERNAL:
            logger.exception("request %s (%s) failed", call.request_id, call.rpc, exc_info=error)
        grpc_context.set_code(code)
        grpc_context.set_details(message)
        grpc_context.set_trailing_metadata([("x-request-id", call.request_id), *retry_hint(error, code)])

    def _finish(self, call: Call, grpc_context: RayServegRPCContext) -> None:
        """Trailing metadata, metrics and the one log line of a request."""
        elapsed_ms = call.elapsed_ms()
        if call.code == grpc.StatusCode.OK:
            answered(call, grpc_context, elapsed_ms)
        self._requests.inc(tags={"rpc": call.rpc, "code": call.code.name})
        for kind, count in (("logprobs", call.logprobs), ("suggestions", call.suggestions)):
            if count:
                self._extras.inc(count, tags={"rpc": call.rpc, "kind": kind})
        self._latency.observe(elapsed_ms, tags={"rpc": call.rpc})
        Tracing.rpc_outcome(call.trace, call.code, call.span_attributes())
        logger.info(json.dumps(call.log_record(elapsed_ms)))
