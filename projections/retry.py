"""The one retry policy for everything that waits out PostgreSQL or Kafka (tenacity).

Exponential backoff without jitter: 0.2 s after the first failure, doubling, never more
than 5 s. No jitter because the waiters are a handful of long-lived loops per process,
not a crowd of clients contending for one server.

Two shapes use it:
- a call retried until it succeeds, or until its errors are not the kind to wait out
  (`waiting_out`), or a few times (`attempts`): tenacity does all of it;
- a loop that runs forever (the relay, a consumer, a projector) and counts failures
  from its last healthy moment: tenacity counts attempts within one call and cannot
  start again while the call still runs, so such a loop keeps its own counter and asks
  `wait_after(failures)` how long to sleep, from the same tenacity strategy.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

FIRST_WAIT = 0.2
MAX_WAIT = 5.0
BACKOFF = wait_exponential(multiplier=FIRST_WAIT, max=MAX_WAIT)
_POLICY = AsyncRetrying(wait=BACKOFF)
T = TypeVar("T")


def wait_after(failures: int) -> float:
    """Seconds to sleep after `failures` consecutive failures (1 for the first)."""
    state = RetryCallState(_POLICY, None, (), {})
    state.attempt_number = failures
    return float(BACKOFF(state))


async def waiting_out(
    work: Callable[[], Awaitable[T]],
    errors: tuple[type[BaseException], ...],
    log: logging.Logger,
    message: str,
) -> T:
    """Await `work()` again for as long as it fails with `errors`, logging each wait; any
    other error (and cancellation) goes straight to the caller."""

    def warn(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(message, extra={"error": repr(error), "attempt": state.attempt_number})

    policy = AsyncRetrying(
        retry=retry_if_exception_type(errors), wait=BACKOFF, before_sleep=warn, reraise=True
    )
    return await policy(_awaiting(work))


async def attempts(count: int, work: Callable[[], Awaitable[T]]) -> T:
    """Await `work()` at most `count` times while it raises, the policy's wait between
    tries; the last error is raised as it was."""
    policy = AsyncRetrying(
        stop=stop_after_attempt(count),
        retry=retry_if_exception_type(Exception),
        wait=BACKOFF,
        reraise=True,
    )
    return await policy(_awaiting(work))


def _awaiting(work: Callable[[], Awaitable[T]]) -> Callable[[], Coroutine[Any, Any, T]]:
    # tenacity awaits only what a coroutine function returns: a plain callable such as
    # `lambda: self.apply(batch)` would have its coroutine taken as the result, unawaited.
    async def attempt() -> T:
        return await work()

    return attempt
