"""Stopping tasks: a task that swallows its first cancellation (as asyncpg can,
MagicStack/asyncpg#873) still ends."""

from __future__ import annotations

import asyncio

from event_store.stopping import cancel_and_wait


async def swallows_cancellations(times: int, ended: list[str]) -> None:
    """Sleeps until cancelled, carrying on past the first `times` cancellations."""
    swallowed = 0
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            if swallowed == times:
                ended.append("cancelled")
                raise
            swallowed += 1


async def test_one_cancel_leaves_a_swallowing_task_running() -> None:
    """Why the helper exists: cancelling once and waiting would wait forever."""
    ended: list[str] = []
    task = asyncio.create_task(swallows_cancellations(1, ended))
    await asyncio.sleep(0)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=0.2)
    assert not done and ended == []
    await cancel_and_wait([task], retry_seconds=0.05)


async def test_tasks_that_swallow_cancellations_are_cancelled_until_they_end() -> None:
    ended: list[str] = []
    tasks = [asyncio.create_task(swallows_cancellations(n, ended)) for n in (0, 1, 3)]
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel_and_wait(tasks, retry_seconds=0.05), timeout=5)
    assert all(task.cancelled() for task in tasks)
    assert ended == ["cancelled"] * 3


async def test_finished_and_failed_tasks_are_waited_for_quietly() -> None:
    async def fails() -> None:
        raise ValueError("already failed")

    failed = asyncio.create_task(fails())
    finished = asyncio.create_task(asyncio.sleep(0))
    await asyncio.sleep(0.01)
    await cancel_and_wait([failed, finished])
    assert failed.done() and finished.done() and not finished.cancelled()
