"""One timer per worker cancels handlers past their deadline, like asyncio.timeout would."""

from __future__ import annotations

import asyncio

import pytest

from consumers.runtime.deadlines import Deadlines


async def run(deadlines: Deadlines, seconds: float) -> str:
    """A handler sleeping ``seconds`` under ``deadlines``: "done", "timeout" or "cancelled"."""
    task = deadlines.enter()
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        if deadlines.leave(task):
            return "timeout"
        raise
    deadlines.leave(task)
    return "done"


async def test_handlers_past_their_deadline_time_out_and_the_others_finish() -> None:
    deadlines = Deadlines(0.05)
    results = await asyncio.gather(
        run(deadlines, 0.2), run(deadlines, 0.01), run(deadlines, 0.2), run(deadlines, 0)
    )
    assert list(results) == ["timeout", "done", "timeout", "done"]


async def test_one_timer_serves_handlers_that_start_later() -> None:
    deadlines = Deadlines(0.05)
    first = asyncio.create_task(run(deadlines, 0.2))
    await asyncio.sleep(0.03)
    second = asyncio.create_task(run(deadlines, 0.2))  # its deadline is 30 ms after the first's
    assert await first == "timeout"
    assert not second.done()
    assert await second == "timeout"
    deadlines.close()


async def test_a_cancel_from_elsewhere_stays_a_cancel() -> None:
    deadlines = Deadlines(10)
    task = asyncio.create_task(run(deadlines, 1))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    deadlines.close()


async def test_an_outside_cancel_during_the_timeout_is_not_swallowed() -> None:
    deadlines = Deadlines(0.02)

    async def handler_cancelled_twice() -> str:
        task = deadlines.enter()
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            task.cancel()  # e.g. shutdown, at the same moment as the deadline
            if deadlines.leave(task):
                return "timeout"
            raise
        return "done"

    with pytest.raises(asyncio.CancelledError):
        await asyncio.create_task(handler_cancelled_twice())
