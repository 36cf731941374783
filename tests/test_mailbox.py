"""The hand-off between a replica's event loop and its model thread, with
the test playing the model thread's part on the event loop itself (every
mailbox call is thread-safe, so no thread is needed to exercise it)."""

from __future__ import annotations

import asyncio

import pytest

from t5electra.deployments.mailbox import Mailbox

pytestmark = pytest.mark.unit


async def _settle() -> None:
    """Lets callbacks the mailbox scheduled on this loop run."""
    for _ in range(3):
        await asyncio.sleep(0)


def test_a_call_gets_its_last_output_and_a_stream_every_output_in_order() -> None:
    async def main() -> tuple[object, list[list[str]]]:
        mailbox: Mailbox[str] = Mailbox()
        call = asyncio.ensure_future(mailbox.call("unary"))
        received: list[list[str]] = []

        async def read() -> None:
            async for values in mailbox.stream("stream"):
                received.append(values)

        reader = asyncio.ensure_future(read())
        await _settle()
        arrived, departed = mailbox.collect()
        assert [letter.item for letter in arrived] == ["unary", "stream"] and departed == []
        unary, stream = arrived
        mailbox.send([(unary, "draft"), (unary, "answer"), (stream, "a")])
        await _settle()
        mailbox.send([(stream, "b"), (stream, "c")], ended=[unary, stream])
        await asyncio.gather(call, reader)
        return call.result(), received

    answer, received = asyncio.run(main())
    assert answer == "answer"
    assert received == [["a"], ["b", "c"]], "what arrived while the reader waited comes together"


def test_a_slow_reader_gets_fewer_larger_answers() -> None:
    async def main() -> list[list[int]]:
        mailbox: Mailbox[str] = Mailbox()
        received: list[list[int]] = []
        stream = mailbox.stream("s")
        first = asyncio.ensure_future(anext(stream))
        await _settle()
        (letter,), _ = mailbox.collect()
        for step in range(12):  # twelve steps while the reader is busy elsewhere
            mailbox.send([(letter, step)])
        mailbox.send(ended=[letter])
        received.append(await first)
        received += [values async for values in stream]
        return received

    received = asyncio.run(main())
    assert [v for values in received for v in values] == list(range(12))
    assert len(received) < 12


def test_a_failure_is_raised_to_its_caller_and_others_are_unaffected() -> None:
    async def main() -> None:
        mailbox: Mailbox[str] = Mailbox()
        doomed = asyncio.ensure_future(mailbox.call("doomed"))
        fine = asyncio.ensure_future(mailbox.call("fine"))
        await _settle()
        (bad, good), _ = mailbox.collect()
        mailbox.send([(good, 1)], ended=[good], failed=[bad], error=ValueError("model broke"))
        with pytest.raises(ValueError, match="model broke"):
            await doomed
        assert await fine == 1

    asyncio.run(main())


def test_a_caller_that_leaves_is_reported_as_departed_and_one_that_finished_is_not() -> None:
    async def main() -> None:
        mailbox: Mailbox[str] = Mailbox()
        stream = mailbox.stream("leaver")
        first = asyncio.ensure_future(anext(stream))
        finisher = asyncio.ensure_future(mailbox.call("finisher"))
        await _settle()
        (leaver, done), _ = mailbox.collect()
        mailbox.send([(leaver, "piece"), (done, "answer")], ended=[done])
        assert await first == ["piece"] and await finisher == "answer"
        await stream.aclose()
        assert mailbox.collect() == ([], [leaver])

    asyncio.run(main())


def test_a_call_ended_without_an_answer_is_an_error() -> None:
    async def main() -> None:
        mailbox: Mailbox[str] = Mailbox()
        call = asyncio.ensure_future(mailbox.call("x"))
        await _settle()
        (letter,), _ = mailbox.collect()
        mailbox.send(ended=[letter])
        with pytest.raises(RuntimeError, match="without an answer"):
            await call

    asyncio.run(main())
