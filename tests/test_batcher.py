"""The replica batcher on its own, in a plain event loop: how batches form
under load, what callers get, and what happens to those who leave."""

from __future__ import annotations

import asyncio

import pytest

from t5electra.deployments.batcher import Batch, DynamicBatcher

pytestmark = pytest.mark.unit


class Recorder:
    """A handler that doubles each item after ``work_s`` and records batches."""

    def __init__(self, work_s: float = 0.01) -> None:
        self.work_s = work_s
        self.batches: list[list[int]] = []
        self.running = 0
        self.most_running = 0

    async def __call__(self, batch: Batch[int]) -> None:
        self.batches.append(list(batch.items))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.work_s)
            for index, item in enumerate(batch.items):
                batch.emit(index, item * 2)
        finally:
            self.running -= 1


def run(coroutine):
    return asyncio.run(coroutine)


def test_callers_that_return_while_a_batch_runs_share_the_next_batch() -> None:
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch_size=16, wait_timeout_s=0.001)

    async def caller(first: int) -> list[int]:
        return [await batcher.call(first + i) for i in range(5)]

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(caller(100 * c) for c in range(8)))

    answers = run(main())
    assert answers == [[2 * (100 * c + i) for i in range(5)] for c in range(8)]
    # Eight closed-loop callers: after the first batch every batch holds all
    # eight, because nobody forms a batch while the model is busy.
    assert [len(b) for b in recorder.batches[1:]] == [8] * (len(recorder.batches) - 1)
    assert sum(len(b) for b in recorder.batches) == 40


def test_batches_never_exceed_the_maximum_and_keep_arrival_order() -> None:
    recorder = Recorder()
    batcher = DynamicBatcher(recorder, max_batch_size=4, wait_timeout_s=0.05)

    async def main() -> list[int]:
        return await asyncio.gather(*(batcher.call(i) for i in range(10)))

    assert run(main()) == [2 * i for i in range(10)]
    assert recorder.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_concurrent_batches_are_bounded() -> None:
    recorder = Recorder(work_s=0.05)
    batcher = DynamicBatcher(recorder, max_batch_size=2, wait_timeout_s=0, max_concurrent_batches=2)

    async def main() -> None:
        await asyncio.gather(*(batcher.call(i) for i in range(12)))

    run(main())
    assert recorder.most_running == 2


def test_a_caller_that_leaves_before_its_batch_starts_is_dropped() -> None:
    recorder = Recorder(work_s=0.05)
    batcher = DynamicBatcher(recorder, max_batch_size=8, wait_timeout_s=0)

    async def main() -> list[int]:
        busy = asyncio.create_task(batcher.call(1))
        await asyncio.sleep(0.01)  # the model is busy with item 1
        leaver = asyncio.create_task(batcher.call(2))
        stayer = asyncio.create_task(batcher.call(3))
        await asyncio.sleep(0.01)
        leaver.cancel()
        return [await busy, await stayer]

    assert run(main()) == [2, 6]
    assert recorder.batches == [[1], [3]]


def test_a_failing_batch_fails_its_callers_and_the_next_batch_runs() -> None:
    async def handler(batch: Batch[int]) -> None:
        if 0 in batch.items:
            raise ValueError("model broke")
        for index, item in enumerate(batch.items):
            batch.emit(index, item)

    batcher = DynamicBatcher(handler, max_batch_size=2, wait_timeout_s=0.01)

    async def main() -> tuple[list[object], int]:
        failed = await asyncio.gather(batcher.call(0), batcher.call(1), return_exceptions=True)
        return failed, await batcher.call(5)

    failed, later = run(main())
    assert [type(f) for f in failed] == [ValueError, ValueError]
    assert later == 5


def test_streams_receive_pieces_and_end_when_finished_not_with_the_batch() -> None:
    abandoned_seen: list[bool] = []

    async def handler(batch: Batch[int]) -> None:
        # Item i gets i pieces, then its stream ends while longer ones go on.
        for step in range(max(batch.items)):
            await asyncio.sleep(0.005)
            for index, item in enumerate(batch.items):
                if step < item:
                    batch.emit(index, f"{item}:{step}")
                if step + 1 == item:
                    batch.finish(index)
        abandoned_seen.extend(batch.abandoned(i) for i in range(len(batch.items)))

    batcher = DynamicBatcher(handler, max_batch_size=4, wait_timeout_s=0.01)

    async def collect(item: int) -> tuple[list[str], float]:
        pieces = [piece async for piece in batcher.stream(item)]
        return pieces, asyncio.get_running_loop().time()

    async def main() -> list[tuple[list[str], float]]:
        return await asyncio.gather(collect(1), collect(3))

    (short, short_end), (long, long_end) = run(main())
    assert short == ["1:0"] and long == ["3:0", "3:1", "3:2"]
    assert short_end < long_end
    assert abandoned_seen[0]  # its caller had long finished reading


def test_a_stream_closed_early_is_reported_abandoned_to_the_handler() -> None:
    seen: list[bool] = []

    async def main() -> None:
        gate = asyncio.Event()

        async def handler(batch: Batch[int]) -> None:
            batch.emit(0, "first")
            await gate.wait()
            seen.append(batch.abandoned(0))

        batcher = DynamicBatcher(handler, max_batch_size=1, wait_timeout_s=0)
        stream = batcher.stream(7)
        assert await anext(stream) == "first"
        await stream.aclose()
        gate.set()
        await asyncio.sleep(0.01)

    run(main())
    assert seen == [True]


@pytest.mark.parametrize("emitted", [0, 2])
def test_a_unary_call_with_other_than_one_output_is_an_error(emitted: int) -> None:
    async def handler(batch: Batch[int]) -> None:
        for _ in range(emitted):
            batch.emit(0, "x")

    batcher = DynamicBatcher(handler, max_batch_size=1, wait_timeout_s=0)
    with pytest.raises(RuntimeError, match=f"emitted {emitted} outputs"):
        run(batcher.call(1))


def test_a_cost_budget_cuts_batches_and_an_oversized_request_runs_alone() -> None:
    """Requests queued while the model is busy form batches whose summed cost
    (here the item itself, as tokens) stays within the budget."""
    gate = asyncio.Event()
    batches: list[list[int]] = []

    async def handler(batch: Batch[int]) -> None:
        batches.append(list(batch.items))
        await gate.wait()
        for index, item in enumerate(batch.items):
            batch.emit(index, item)

    batcher = DynamicBatcher(handler, max_batch_size=8, wait_timeout_s=0, cost=lambda item: item, max_batch_cost=10)

    async def main() -> list[int]:
        first = asyncio.ensure_future(batcher.call(1))
        while not batches:  # the first batch holds the only slot
            await asyncio.sleep(0)
        rest = [asyncio.ensure_future(batcher.call(cost)) for cost in (4, 5, 2, 30, 3, 3, 3, 3)]
        gate.set()
        return await asyncio.gather(first, *rest)

    assert run(main()) == [1, 4, 5, 2, 30, 3, 3, 3, 3]
    assert batches == [[1], [4, 5], [2], [30], [3, 3, 3], [3]]
