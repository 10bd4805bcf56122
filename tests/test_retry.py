"""The one retry policy: its waits, what it retries and what it lets through."""

from __future__ import annotations

import asyncio
import logging

import pytest

from projections import retry


def test_waits_double_from_the_first_and_stop_growing_at_the_cap() -> None:
    waits = [retry.wait_after(n) for n in range(1, 10)]
    assert waits == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0, 5.0]


async def test_waiting_out_retries_the_given_errors_until_the_call_succeeds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionRefusedError("down")
        return "done"

    log = logging.getLogger("test.retry")
    with caplog.at_level(logging.WARNING, logger="test.retry"):
        started = asyncio.get_running_loop().time()
        assert await retry.waiting_out(flaky, (OSError,), log, "waiting") == "done"
        waited = asyncio.get_running_loop().time() - started
    assert calls == 3 and waited >= 0.2 + 0.4
    assert [r.getMessage() for r in caplog.records] == ["waiting", "waiting"]


async def test_waiting_out_lets_other_errors_through_at_once() -> None:
    calls = 0

    async def broken() -> None:
        nonlocal calls
        calls += 1
        raise KeyError("a bug, not an outage")

    with pytest.raises(KeyError):
        await retry.waiting_out(broken, (OSError,), logging.getLogger("t"), "waiting")
    assert calls == 1


async def test_attempts_stop_at_the_count_and_raise_the_last_error() -> None:
    errors = iter([ValueError("first"), ValueError("second"), ValueError("last")])
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise next(errors)

    with pytest.raises(ValueError, match="last"):
        await retry.attempts(3, failing)
    assert calls == 3


async def test_a_cancelled_call_is_not_retried() -> None:
    calls = 0

    async def cancelled() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await retry.attempts(3, cancelled)
    assert calls == 1


async def test_a_lambda_returning_a_coroutine_is_awaited_on_every_attempt() -> None:
    """The call sites pass `lambda: self.apply(batch)`: each try must run it."""
    runs: list[int] = []

    async def apply(n: int) -> int:
        runs.append(n)
        if len(runs) < 2:
            raise OSError("store down")
        return n

    assert await retry.attempts(3, lambda: apply(7)) == 7
    assert await retry.waiting_out(lambda: apply(8), (OSError,), logging.getLogger("t"), "w") == 8
    assert runs == [7, 7, 8]
