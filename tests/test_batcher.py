"""The ELECTRA batcher: the planner's decisions with made-up times (no
threads), then its worker threads end to end, synchronised by events the
test controls (no sleeps)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from t5electra.deployments.batcher import Batcher, BatchPlanner
from t5electra.deployments.records import Request
from t5electra.deployments.refusals import DeadlineExceeded

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class Item:
    value: int
    deadline: float | None = None


def queued(
    planner: BatchPlanner[Item], *values: int, at: float = 0.0, deadline: float | None = None
) -> list[Request[Item]]:
    requests = [Request(Item(value, deadline), arrived=at) for value in values]
    for request in requests:
        planner.submit(request)
    return requests


def taken(planner: BatchPlanner[Item], now: float = 0.0, wall: float = 0.0) -> list[int]:
    return [r.item.value for r in planner.next_batch(now, wall).batch]


def test_batches_never_exceed_the_maximum_and_keep_arrival_order() -> None:
    planner: BatchPlanner[Item] = BatchPlanner(max_batch_size=4)
    queued(planner, *range(10))
    assert [taken(planner), taken(planner), taken(planner), taken(planner)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9], []]


def test_an_idle_worker_waits_for_company_until_the_batch_is_full_or_the_wait_ends() -> None:
    planner: BatchPlanner[Item] = BatchPlanner(max_batch_size=3, wait_timeout_s=0.5)
    queued(planner, 1, at=10.0)
    take = planner.next_batch(now=10.2, wall=0.0)
    assert not take.batch and take.wait_s == pytest.approx(0.3)
    queued(planner, 2, at=10.3)
    assert taken(planner, now=10.6) == [1, 2]
    queued(planner, 3, 4, 5, at=20.0)
    assert taken(planner, now=20.0) == [3, 4, 5], "a full batch never waits"
    assert planner.next_batch(now=21.0, wall=0.0).wait_s is None, "nothing queued: wait for an arrival"


def test_a_cost_budget_cuts_batches_and_an_oversized_request_runs_alone() -> None:
    planner: BatchPlanner[Item] = BatchPlanner(max_batch_size=8, cost=lambda item: item.value, max_batch_cost=10)
    queued(planner, 1, 4, 5, 2, 30, 3, 3, 3, 3)
    batches = [taken(planner) for _ in range(6)]
    assert batches == [[1, 4, 5], [2], [30], [3, 3, 3], [3], []]


def test_callers_that_left_and_requests_past_their_deadline_never_run() -> None:
    planner: BatchPlanner[Item] = BatchPlanner(max_batch_size=8)
    _, leaver = queued(planner, 1, 2)
    queued(planner, 3, deadline=50.0)
    planner.leave(leaver)
    take = planner.next_batch(now=0.0, wall=60.0)
    assert [r.item.value for r in take.batch] == [1] and [r.item.value for r in take.expired] == [3]


class Gate:
    """A model whose batches wait for the test's go-ahead and record themselves."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.started = threading.Semaphore(0)
        self.release = threading.Event()
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    def __call__(self, items: Sequence[Item]) -> list[int]:
        with self._lock:
            self.batches.append([i.value for i in items])
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        self.started.release()
        self.release.wait()
        with self._lock:
            self.running -= 1
        if any(i.value < 0 for i in items):
            raise ValueError("model broke")
        return [2 * i.value for i in items]


async def _until_started(gate: Gate, batches: int) -> None:
    for _ in range(batches):
        await asyncio.to_thread(gate.started.acquire)


def test_requests_that_arrive_while_the_model_is_busy_share_the_next_batch() -> None:
    gate = Gate()
    batcher = Batcher(gate, BatchPlanner(max_batch_size=16))

    async def main() -> list[int]:
        first = asyncio.ensure_future(batcher.call(Item(1)))
        await _until_started(gate, 1)
        rest = [asyncio.ensure_future(batcher.call(Item(v))) for v in range(2, 10)]
        await asyncio.sleep(0)  # the posts reach the mailbox
        gate.release.set()
        return [output.payload for output in await asyncio.gather(first, *rest)]

    assert asyncio.run(main()) == [2 * v for v in range(1, 10)]
    assert gate.batches == [[1], list(range(2, 10))]


def test_concurrent_batches_are_bounded_by_the_workers() -> None:
    gate = Gate()
    batcher = Batcher(gate, BatchPlanner(max_batch_size=2), workers=2)

    async def main() -> None:
        calls = [asyncio.ensure_future(batcher.call(Item(v))) for v in range(8)]
        await _until_started(gate, 2)
        gate.release.set()
        await asyncio.gather(*calls)

    asyncio.run(main())
    assert gate.most_running == 2 and sorted(v for b in gate.batches for v in b) == list(range(8))


def test_a_failing_batch_fails_its_callers_and_the_next_batch_runs() -> None:
    gate = Gate()
    batcher = Batcher(gate, BatchPlanner(max_batch_size=2))

    async def main() -> tuple[list[object], int]:
        busy = asyncio.ensure_future(batcher.call(Item(0)))
        await _until_started(gate, 1)
        doomed = asyncio.gather(batcher.call(Item(-1)), batcher.call(Item(1)), return_exceptions=True)
        await asyncio.sleep(0)  # both are posted while the model is busy: one batch
        gate.release.set()
        failed = await doomed
        await busy
        later = await batcher.call(Item(5))
        return [type(f) for f in failed], later.payload

    failed, later = asyncio.run(main())
    assert failed == [ValueError, ValueError] and later == 10


def test_a_caller_that_leaves_before_its_batch_starts_is_dropped() -> None:
    gate = Gate()
    batcher = Batcher(gate, BatchPlanner(max_batch_size=8))

    async def main() -> list[int]:
        busy = asyncio.ensure_future(batcher.call(Item(1)))
        await _until_started(gate, 1)
        leaver = asyncio.ensure_future(batcher.call(Item(2)))
        stayer = asyncio.ensure_future(batcher.call(Item(3)))
        await asyncio.sleep(0)
        leaver.cancel()
        await asyncio.gather(leaver, return_exceptions=True)
        gate.release.set()
        return [(await busy).payload, (await stayer).payload]

    assert asyncio.run(main()) == [2, 6]
    assert gate.batches == [[1], [3]]


def test_an_expired_request_gets_deadline_exceeded_without_running() -> None:
    gate = Gate()
    gate.release.set()
    batcher = Batcher(gate, BatchPlanner(max_batch_size=8))

    async def main() -> None:
        with pytest.raises(DeadlineExceeded):
            await batcher.call(Item(1, deadline=0.0))

    asyncio.run(main())
    assert gate.batches == []
