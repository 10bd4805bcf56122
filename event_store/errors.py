"""Which failures mean "the store cannot be reached", and which are worth retrying.

One list for every caller: the command side answers 503 with Retry-After, followers wait
and retry, the query side answers 503. Anything else is a bug or bad data.
"""

from __future__ import annotations

import asyncio

import asyncpg

UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    # A connection cut mid-operation can leave asyncpg's protocol in a state it reports
    # this way; the outcome is unknown, so the client retries with the same event id.
    asyncpg.InternalClientError,
)

# A deadlock or serialization failure rolled the whole transaction back: running it again
# is safe and, once the other transaction has finished, succeeds.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (asyncpg.TransactionRollbackError,)


class StoreUnavailable(RuntimeError):
    """The event store could not be reached: nothing of the request was stored."""
