"""The model replicas as plain classes, without Ray: each built with a fake
engine (what a replica serves is injected) and driven through its methods
as Serve calls them, with its real decoding loop or batcher threads. What
the serve tier covers end to end, here in a second: replies carry usage,
timing and the admission horizon; a stream's first piece goes at once and
later ones coalesce within the interval; admission refuses as a returned
value; a caller that leaves cancels its row under its request's id;
ELECTRA's answers carry their batch's timing. Steps wait on a semaphore the
test releases, so nothing depends on how fast this machine is."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from t5electra.deployments.deployment_settings import ElectraSettings, T5Settings
from t5electra.deployments.electra_replica import DetectorDeployment
from t5electra.deployments.refusals import DeadlineTooShort
from t5electra.deployments.replies import Reply, Usage
from t5electra.deployments.t5_replica import TextGeneratorDeployment
from t5electra.server.detector import PreparedDetection
from t5electra.server.domain import (
    Detection,
    DetectionRequest,
    FinishReason,
    GeneratedSequence,
    GenerationParameters,
    GenerationRequest,
    GenerationResult,
    PreparedGeneration,
    StreamPiece,
    Tokenization,
    TokenPiece,
)
from t5electra.server.limits import Limits
from t5electra.server.session import StepEvent

from support.waiting import wait_for

pytestmark = pytest.mark.unit


class EchoSession:
    """Decodes each request's prompt back, a word a step (cycling), until
    its ``max_new_tokens``; each step first takes a permit from ``gate``
    when there is one."""

    def __init__(self, gate: threading.Semaphore | None) -> None:
        self._gate = gate
        self._requests: dict[int, PreparedGeneration] = {}
        self._made: dict[int, list[str]] = {}
        self.added: list[int] = []
        self.cancelled: list[int] = []

    @property
    def done(self) -> bool:
        return not self._requests

    @property
    def rows(self) -> int:
        return len(self._requests)

    def add(self, prepared: PreparedGeneration, key: int) -> int:
        self._requests[key], self._made[key] = prepared, []
        self.added.append(key)
        return key

    def cancel(self, key: int) -> None:
        self._requests.pop(key, None)
        self.cancelled.append(key)

    def step(self) -> list[StepEvent]:
        if self._gate is not None:
            self._gate.acquire()
        events = []
        for key, prepared in list(self._requests.items()):
            words, made = prepared.request.text.split(), self._made[key]
            piece = (" " if made else "") + words[len(made) % len(words)]
            made.append(piece.strip())
            if len(made) < prepared.parameters.max_new_tokens:
                events.append(StepEvent(key, StreamPiece(piece, len(made)) if prepared.stream else None))
                continue
            del self._requests[key]
            sequence = GeneratedSequence(" ".join(made), FinishReason.LENGTH, len(made))
            result = GenerationResult((sequence,), len(prepared.input_ids))
            last = StreamPiece(piece, len(made), FinishReason.LENGTH, result.input_tokens) if prepared.stream else None
            events.append(StepEvent(key, last, result))
        return events


class EchoGenerator:
    """A T5 engine as a replica uses it, answering with :class:`EchoSession`s."""

    name, device, precision = "echo-t5", "cpu", "float32"

    def __init__(self, step_s: float = 0.001, gate: threading.Semaphore | None = None) -> None:
        self._step_s, self._gate = step_s, gate
        self.sessions: list[EchoSession] = []

    def warm_up(self) -> list[float]:
        return [self._step_s] * 4

    def session(self) -> EchoSession:
        self.sessions.append(EchoSession(self._gate))
        return self.sessions[-1]

    def prepare(self, request: GenerationRequest, stream: bool = False) -> PreparedGeneration:
        return PreparedGeneration(request, tuple(range(len(request.text.split()))), seed=0, stream=stream)


class CountingDetector:
    """An ELECTRA engine as a replica uses it: a token per word, nothing replaced."""

    name, device, precision = "counting-electra", "cpu", "float32"

    def __init__(self) -> None:
        self.batches: list[int] = []

    def warm_up(self) -> float:
        return 0.0

    def prepare(self, request: DetectionRequest) -> PreparedDetection:
        words = request.text.split()
        return PreparedDetection(request, tuple(range(len(words))), ((0, 0),) * len(words), tuple(range(len(words))))

    def tokenize(self, text: str) -> Tokenization:
        return Tokenization(tuple(TokenPiece(i, w, 0, 0, False) for i, w in enumerate(text.split())), 512)

    def detect(self, batch: list[PreparedDetection]) -> list[Detection]:
        self.batches.append(len(batch))
        return [Detection((), (), 0.0, input_tokens=p.tokens) for p in batch]


@pytest.fixture(autouse=True)
def _switch_interval() -> Iterator[None]:
    """The T5 replica sets the interpreter's switch interval; put it back."""
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def _t5(engine: EchoGenerator, **settings: object) -> TextGeneratorDeployment:
    return TextGeneratorDeployment(T5Settings(**settings), Limits(), engine=lambda s, limits: engine)  # type: ignore[arg-type, return-value]


def _words(count: int) -> GenerationParameters:
    return GenerationParameters(max_new_tokens=count)


def test_a_reply_carries_the_result_the_usage_the_timing_and_the_admission_horizon() -> None:
    replica = _t5(EchoGenerator())
    reply = asyncio.run(replica.generate(GenerationRequest("alpha beta gamma", _words(3))))
    assert isinstance(reply, Reply)
    assert reply.payload.sequences[0].text == "alpha beta gamma"
    assert (reply.model, reply.usage) == ("echo-t5", Usage(3, 3))
    assert reply.timing.steps == 3 and reply.timing.replica_ms >= reply.timing.inference_ms > 0
    assert reply.horizon is not None


def test_a_streams_first_piece_goes_at_once_and_the_rest_coalesce_within_the_interval() -> None:
    gate = threading.Semaphore(0)
    replica = _t5(EchoGenerator(gate=gate), stream_interval_s=3600.0)

    async def main() -> tuple[object, list[object]]:
        stream = replica.generate_stream(GenerationRequest("one two three four", _words(4)))
        gate.release()
        first = await anext(stream)
        for _ in range(3):
            gate.release()
        return first, [message async for message in stream]

    first, rest = asyncio.run(main())
    assert first == StreamPiece("one", 1)
    (last,) = rest
    assert isinstance(last, Reply) and last.payload.text == " two three four"
    assert last.payload.finish_reason is FinishReason.LENGTH and last.usage == Usage(4, 4)


def test_with_no_interval_a_reader_that_keeps_up_gets_every_step() -> None:
    gate = threading.Semaphore(0)
    replica = _t5(EchoGenerator(gate=gate), stream_interval_s=0.0)

    async def main() -> list[str]:
        texts = []
        async for message in replica.generate_stream(GenerationRequest("one two three", _words(3))):
            texts.append(message.payload.text if isinstance(message, Reply) else message.text)
            gate.release()
        return texts

    gate.release()
    assert asyncio.run(main()) == ["one", " two", " three"]


def test_admission_refuses_what_cannot_meet_its_deadline_as_a_returned_value() -> None:
    engine = EchoGenerator(step_s=0.1)
    replica = _t5(engine)
    forced = GenerationParameters(min_new_tokens=512, max_new_tokens=512)
    # 512 steps of 0.1 s cannot fit 5 s, however slowly this machine gets the request there.
    answer = asyncio.run(replica.generate(GenerationRequest("a b", forced, deadline=time.time() + 5.0)))
    assert isinstance(answer, DeadlineTooShort) and "512 steps" in str(answer)
    assert answer.horizon is not None, "the ingress learns the replica's admission from the refusal"
    assert engine.sessions == [] or engine.sessions[0].added == []


def test_a_stream_left_early_cancels_its_row_under_its_request_id() -> None:
    gate = threading.Semaphore(0)
    engine = EchoGenerator(gate=gate)
    replica = _t5(engine)

    def cancelled() -> bool:
        gate.release()  # steps go on until the loop has handed the departure to the session
        return bool(engine.sessions[0].cancelled)

    async def main() -> None:
        stream = replica.generate_stream(GenerationRequest("on and on", _words(100_000)))
        gate.release()
        await anext(stream)
        await stream.aclose()
        # Waited for on this loop's executor: the steps before the cancel
        # still send their pieces to this (running) loop.
        await asyncio.to_thread(wait_for, cancelled, what="the departed caller's row cancelled")

    asyncio.run(main())
    assert engine.sessions[0].cancelled == engine.sessions[0].added


def test_detections_come_back_with_their_batchs_timing() -> None:
    engine = CountingDetector()
    replica = DetectorDeployment(ElectraSettings(), Limits(), engine=lambda s, limits: engine)  # type: ignore[arg-type, return-value]
    texts = ["the cat sat", "a dog", "one two three four"]
    replies = asyncio.run(replica.detect_many([(DetectionRequest(text), None) for text in texts]))
    assert [r.usage for r in replies if isinstance(r, Reply)] == [Usage(3), Usage(2), Usage(4)]
    assert sum(engine.batches) == 3
    for reply in replies:
        assert isinstance(reply, Reply) and reply.model == "counting-electra"
        assert 1 <= reply.timing.batch_size <= 3 and reply.timing.replica_ms >= reply.timing.inference_ms >= 0


def test_a_tokenization_is_billed_as_input_and_names_its_model() -> None:
    replica = DetectorDeployment(ElectraSettings(), Limits(), engine=lambda s, limits: CountingDetector())  # type: ignore[arg-type, return-value]
    reply = replica.tokenize("three short words")
    assert (reply.model, reply.usage, len(reply.payload.tokens)) == ("counting-electra", Usage(3), 3)
