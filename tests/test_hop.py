"""The ingress → model hop that shares one Ray call among requests
(``deployments/hop.py``), driven by a fake deployment whose calls the test
answers by hand: who leaves at once, who waits for company, what a leaving
caller takes with it, and how a call's failure reaches its requests."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from ray.serve.exceptions import BackPressureError

from t5electra.deployments import bounded
from t5electra.deployments.hop import Hop
from t5electra.deployments.refusals import DeadlineExceeded
from t5electra.deployments.status import to_status_code
from t5electra.server.errors import InvalidInput

pytestmark = pytest.mark.unit


class FakeDeployment:
    """Records each call's requests; each call's answer is a future the
    test resolves (or that a cancel cancels, as Ray's response does)."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.responses: list[asyncio.Future] = []
        self.sent = asyncio.Event()

    def send(self, requests: list[str]) -> asyncio.Future:
        self.calls.append(list(requests))
        self.responses.append(asyncio.get_running_loop().create_future())
        self.sent.set()
        return self.responses[-1]

    def answer(self, index: int) -> None:
        self.responses[index].set_result([f"answer to {request}" for request in self.calls[index]])

    async def made(self, count: int) -> None:
        """Returns once ``count`` calls have been sent."""
        while len(self.calls) < count:
            self.sent.clear()
            await self.sent.wait()


async def _started(hop: Hop[str], request: str) -> asyncio.Task:
    task = asyncio.get_running_loop().create_task(hop.call(request))
    await asyncio.sleep(0)  # the request joins the queue (or leaves in a call)
    return task


def test_a_lone_request_leaves_at_once_and_later_ones_share_the_next_call() -> None:
    async def scenario() -> None:
        model = FakeDeployment()
        hop = Hop(model.send, lambda: 1, max_requests=3)
        first = await _started(hop, "a")
        assert model.calls == [["a"]]
        waiting = [await _started(hop, request) for request in "bcde"]
        assert model.calls == [["a"]], "nothing else leaves while the one call allowed is out"
        model.answer(0)
        assert await first == "answer to a"
        await model.made(2)
        assert model.calls[1] == ["b", "c", "d"], "everything that waited leaves together, up to max_requests"
        model.answer(1)
        await model.made(3)
        assert model.calls[2] == ["e"]
        model.answer(2)
        assert await asyncio.gather(*waiting) == [f"answer to {r}" for r in "bcde"]

    asyncio.run(scenario())


def test_calls_in_flight_is_asked_each_time_so_it_can_follow_the_replicas() -> None:
    async def scenario() -> None:
        model = FakeDeployment()
        replicas = [1]
        hop = Hop(model.send, lambda: 2 * replicas[0], max_requests=8)
        tasks = [await _started(hop, request) for request in "abc"]
        assert model.calls == [["a"], ["b"]]
        replicas[0] = 2
        tasks.append(await _started(hop, "d"))
        assert model.calls == [["a"], ["b"], ["c", "d"]], "room for more calls: what waited leaves with the newcomer"
        for index in range(3):
            model.answer(index)
        assert await asyncio.gather(*tasks) == [f"answer to {r}" for r in "abcd"]

    asyncio.run(scenario())


def test_no_replica_known_yet_still_lets_one_call_out() -> None:
    async def scenario() -> None:
        model = FakeDeployment()
        hop = Hop(model.send, lambda: 0, max_requests=8)
        task = await _started(hop, "a")
        assert model.calls == [["a"]]
        model.answer(0)
        assert await task == "answer to a"

    asyncio.run(scenario())


def test_a_caller_that_leaves_before_its_call_is_never_sent() -> None:
    async def scenario() -> None:
        model = FakeDeployment()
        hop = Hop(model.send, lambda: 1, max_requests=8)
        first = await _started(hop, "a")
        leaving = await _started(hop, "b")
        staying = await _started(hop, "c")
        leaving.cancel()
        await asyncio.sleep(0)
        model.answer(0)
        await first
        await model.made(2)
        assert model.calls[1] == ["c"]
        model.answer(1)
        assert await staying == "answer to c"
        assert leaving.cancelled()

    asyncio.run(scenario())


def test_a_call_whose_callers_all_left_is_cancelled_and_the_next_one_goes_out() -> None:
    async def scenario() -> None:
        model = FakeDeployment()
        hop = Hop(model.send, lambda: 2, max_requests=8)
        kept, leaving = await _started(hop, "a"), await _started(hop, "b")
        waiting = await _started(hop, "c")
        assert model.calls == [["a"], ["b"]]
        leaving.cancel()
        await model.made(3)
        assert model.responses[1].cancelled(), "the only caller of that call left"
        assert model.calls[2] == ["c"], "its place went to the request waiting"
        model.answer(0)
        model.answer(2)
        assert [await kept, await waiting] == ["answer to a", "answer to c"]

    asyncio.run(scenario())


def test_each_request_gets_its_own_answer_or_failure_and_a_failed_call_fails_them_all() -> None:
    async def scenario() -> None:
        model = FakeDeployment()
        hop = Hop(model.send, lambda: 1, max_requests=8)
        busy = await _started(hop, "busy")
        good, bad = await _started(hop, "good"), await _started(hop, "bad")
        model.answer(0)
        await busy
        await model.made(2)
        model.responses[1].set_result(["fine", InvalidInput("text", "too long")])
        assert await bounded.shared(good, None) == "fine"
        with pytest.raises(InvalidInput, match="too long"):
            await bounded.shared(bad, None)

        holding = await _started(hop, "hold")
        doomed = [await _started(hop, request) for request in "xy"]
        model.answer(2)
        await holding
        await model.made(4)
        assert model.calls[3] == ["x", "y"]
        model.responses[3].set_exception(RuntimeError("the replica died"))
        for task in doomed:
            with pytest.raises(RuntimeError, match="died"):
                await task

    asyncio.run(scenario())


def test_a_caller_stops_waiting_at_its_deadline_and_its_request_is_not_sent() -> None:
    async def scenario() -> None:
        model = FakeDeployment()
        hop = Hop(model.send, lambda: 1, max_requests=8)
        patient = asyncio.get_running_loop().create_task(bounded.shared(hop.call("patient"), None))
        await asyncio.sleep(0)
        with pytest.raises(DeadlineExceeded):
            await bounded.shared(hop.call("hurried"), deadline=time.time() + 0.05)
        later = await _started(hop, "later")
        model.answer(0)
        assert await patient == "answer to patient"
        await model.made(2)
        assert model.calls[1] == ["later"]
        model.answer(1)
        await later

    asyncio.run(scenario())


def test_a_request_beyond_the_waiting_bound_is_refused_as_rays_router_refuses_it() -> None:
    async def scenario() -> None:
        model = FakeDeployment()
        hop = Hop(model.send, lambda: 1, max_requests=8, max_waiting=lambda: 2)
        tasks = [await _started(hop, request) for request in "abc"]
        with pytest.raises(BackPressureError):
            await hop.call("d")
        assert to_status_code(BackPressureError(2, 2))[0] == grpc.StatusCode.RESOURCE_EXHAUSTED
        model.answer(0)
        await model.made(2)
        assert model.calls[1] == ["b", "c"]
        model.answer(1)
        assert await asyncio.gather(*tasks) == [f"answer to {r}" for r in "abc"]

    asyncio.run(scenario())
