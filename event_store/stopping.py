"""Stopping tasks that talk to PostgreSQL: cancel until they have ended.

asyncpg can swallow a cancellation that lands at the wrong moment in a query's await
chain (MagicStack/asyncpg#873, open): the task goes on as if nothing happened, and a
caller that cancelled once and then awaited it waits forever. A store follower did so
here in 4 of 300 cycles of a harness starting it and cancelling it at a random moment
(later runs, 1,250 cycles in all, had none: it depends on timing); the second
cancellation always ended it. So every stop cancels again, every `retry_seconds`, until
each task is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]], retry_seconds: float = 1.0) -> None:
    """Cancel the tasks and wait until every one has ended (their results and errors are
    dropped: a stopped task has nothing more to say)."""
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=retry_seconds)
    await asyncio.gather(*tasks, return_exceptions=True)
