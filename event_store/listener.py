"""The commit listener: one LISTEN connection per process that wakes every follower.

The store's insert trigger notifies the channel when an append commits. Followers also
poll, so a notice lost while reconnecting only adds latency, never a skipped event.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

log = logging.getLogger("cinemate.event_store")

CHANNEL = "interaction_events"


class StoreListener:
    """One LISTEN connection that wakes every projector when events commit."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.events: list[asyncio.Event] = []
        self._conn: asyncpg.Connection | None = None

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        self.events.append(event)
        return event

    def _notify(self, *_: object) -> None:
        for event in self.events:
            event.set()

    async def run(self) -> None:
        """Listen, reconnecting after failures; projectors also poll, so a gap only adds latency."""
        while True:
            try:
                closed = asyncio.Event()
                self._conn = await asyncpg.connect(self.database_url)
                self._conn.add_termination_listener(lambda _, done=closed: done.set())
                await self._conn.add_listener(CHANNEL, self._notify)
                self._notify()
                await closed.wait()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("store listener reconnecting", extra={"error": repr(exc)})
                await asyncio.sleep(1.0)
            finally:
                if self._conn is not None and not self._conn.is_closed():
                    await self._conn.close()
