"""What the sync and async clients share: channel options, credentials,
metadata, the retry policy and request building."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from t5electra.protocol import SERVICE_NAMES, bytes_tensor
from t5electra.protocol.inference import open_inference_pb2 as oip
from t5electra.protocol.v1 import detection_pb2, generation_pb2, models_pb2

from .results import T5ElectraError

# Large enough for a detection of a maximal text; keepalive pings spaced so
# that servers with gRPC's default ping policy do not answer GOAWAY.
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 0),
]
RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})
# gRPC clamps a retryPolicy's maxAttempts to 5; a policy that wants more
# (riding over a replica restart) is carried out by the client itself.
GRPC_MAX_ATTEMPTS = 5
SERVICE_CONFIG = Path(__file__).with_name("service_config.json")
GENERATION_FIELDS = frozenset(generation_pb2.GenerationParameters.DESCRIPTOR.fields_by_name)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, on UNAVAILABLE and
    RESOURCE_EXHAUSTED only: both mean the request was not processed.
    ``max_attempts`` counts the first try."""

    max_attempts: int = 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    multiplier: float = 2.0

    def service_config(self) -> dict[str, Any] | None:
        """The same policy as a gRPC service config, which any gRPC client
        (Go, Java, …) can be given; None when gRPC cannot carry it out (one
        attempt, or more than gRPC allows). gRPC's backoff is full jitter
        too, and it waits ``grpc-retry-pushback-ms`` when the server says."""
        if not 1 < self.max_attempts <= GRPC_MAX_ATTEMPTS:
            return None
        return {
            "methodConfig": [
                {
                    "name": [{"service": service} for service in SERVICE_NAMES],
                    "retryPolicy": {
                        "maxAttempts": self.max_attempts,
                        "initialBackoff": f"{self.initial_backoff_s:g}s",
                        "maxBackoff": f"{self.max_backoff_s:g}s",
                        "backoffMultiplier": self.multiplier,
                        "retryableStatusCodes": sorted(code.name for code in RETRYABLE),
                    },
                }
            ]
        }

    def backoff(self, attempt: int, hint_ms: str | None = None) -> float:
        ceiling = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier**attempt)
        delay = random.uniform(0, ceiling)
        if hint_ms and hint_ms.isdigit():
            delay = max(delay, int(hint_ms) / 1000)
        return delay


NO_RETRY = RetryPolicy(max_attempts=1)


def deadline_after(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def remaining(deadline: float | None) -> float | None:
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def pause_before_retry(policy: RetryPolicy, failure: T5ElectraError, attempt: int, deadline: float | None) -> float:
    """Seconds to wait before retrying attempt number ``attempt`` (from 0);
    raises ``failure`` when it is not retryable, the attempts are used up or
    the pause would outlast the deadline."""
    if failure.code not in RETRYABLE or attempt + 1 >= policy.max_attempts:
        raise failure
    pause = policy.backoff(attempt, failure.metadata.get("retry-after-ms"))
    if deadline is not None and time.monotonic() + pause >= deadline:
        raise failure
    return pause


@dataclass(frozen=True)
class ClientConfig:
    """Everything about how calls are made, besides the address."""

    timeout: float | None = 30.0
    tls: bool = False
    root_certificates: bytes | None = None
    token: str | None = None
    application: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Call as a plain gRPC client would: a deadline, and none of this
    # project's metadata (no x-request-id, no x-request-timeout-ms).
    plain: bool = False

    def channel_options(self) -> list[tuple[str, Any]]:
        """The channel's retries carry out the policy wherever gRPC can.
        Without a policy for gRPC, retries stay enabled all the same: gRPC
        then only retries, transparently, calls that never reached the server."""
        config = self.retry.service_config()
        if config is None:
            return list(CHANNEL_OPTIONS)
        return [*CHANNEL_OPTIONS, ("grpc.enable_retries", 1), ("grpc.service_config", json.dumps(config))]

    @property
    def own_retries(self) -> RetryPolicy:
        """What the client's own retry loop does: the policy when gRPC cannot
        carry it out, else a single attempt (the channel retries)."""
        return self.retry if self.retry.service_config() is None else NO_RETRY

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not self.tls and self.root_certificates is None:
            return None
        return grpc.ssl_channel_credentials(root_certificates=self.root_certificates)

    def metadata(self, request_id: str | None, remaining: float | None = None) -> list[tuple[str, str]]:
        """``remaining``: seconds left of the call's deadline, sent so that the
        server stops generating then even if the cancel is lost on the way."""
        pairs = [] if self.plain else [("x-request-id", request_id or uuid.uuid4().hex)]
        if remaining is not None and not self.plain:
            pairs.append(("x-request-timeout-ms", str(int(remaining * 1000))))
        if self.application:
            # Ray Serve routes by this key when it runs several applications.
            pairs.append(("application", self.application))
        if self.token:
            pairs.append(("authorization", f"Bearer {self.token}"))
        return pairs


def generate_request(text: str, params: dict[str, Any]) -> generation_pb2.GenerateRequest:
    """Only the parameters given are set, so the server applies its defaults
    to the others."""
    unknown = set(params) - GENERATION_FIELDS
    if unknown:
        raise TypeError(f"unknown generation parameters: {sorted(unknown)}; known: {sorted(GENERATION_FIELDS)}")
    given = {k: v for k, v in params.items() if v is not None}
    stops = given.pop("stop_sequences", ())
    if isinstance(stops, str):
        stops = [stops]
    message = generation_pb2.GenerateRequest(text=text, parameters=generation_pb2.GenerationParameters(**given))
    message.parameters.stop_sequences.extend(stops)
    return message


def detect_request(
    text: str,
    threshold: float | None,
    word_scoring: str | None = None,
    offset_unit: str | None = None,
    suggestions: int | None = None,
) -> detection_pb2.DetectReplacementsRequest:
    """``word_scoring`` (max, first, mean) and ``offset_unit`` (code_point,
    utf8_byte, utf16_code_unit) by name, in either case."""
    message = detection_pb2.DetectReplacementsRequest(text=text)
    if threshold is not None:
        message.threshold = threshold
    if word_scoring is not None:
        message.word_scoring = detection_pb2.WordScoring.Value(word_scoring.upper())
    if offset_unit is not None:
        message.offset_unit = detection_pb2.OffsetUnit.Value(offset_unit.upper())
    if suggestions is not None:
        message.suggestions = suggestions
    return message


def infer_request(model: str, texts: Sequence[str], parameters: Mapping[str, Any]) -> oip.ModelInferRequest:
    """An Open Inference Protocol request: ``texts`` as the BYTES input
    ``text`` of shape [N] (each element length-prefixed, as the protocol's
    raw contents carry BYTES); each parameter in the field of its type, a
    list (``stop_sequences``) as a JSON string, as the server reads them."""
    request = oip.ModelInferRequest(model_name=model)
    request.inputs.add(name="text", datatype="BYTES", shape=[len(texts)])
    request.raw_input_contents.append(bytes_tensor.pack(text.encode() for text in texts))
    for name, value in parameters.items():
        if value is None:
            continue
        slot = request.parameters[name]
        if isinstance(value, bool):
            slot.bool_param = value
        elif isinstance(value, int):
            slot.int64_param = value
        elif isinstance(value, float):
            slot.double_param = value
        elif isinstance(value, str):
            slot.string_param = value
        else:
            slot.string_param = json.dumps(list(value))
    return request


def tokenize_request(text: str, model: str) -> models_pb2.TokenizeRequest:
    """``model`` is t5 or electra, in either case."""
    return models_pb2.TokenizeRequest(text=text, model=models_pb2.ModelKind.Value(model.upper()))
