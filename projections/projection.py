"""What a projection is: a name, the tables it owns, and how it applies a batch of events."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg

from event_store.feed import StoredRecord
from schema import events


@dataclass(frozen=True, slots=True)
class Batch:
    """Stored records and their decoded events, in the same order."""

    records: Sequence[StoredRecord]
    events: Sequence[events.InteractionEvent]


@dataclass
class Changes:
    """What a batch changed, handed to `after_commit` once the transaction is durable."""

    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The documents' JSON, when the projection encoded them already.
    encoded: dict[str, bytes] = field(default_factory=dict)
    # The cache epoch known when the documents were computed (schema.cache.FeatureCache).
    cache_token: str | None = None


class Projection(Protocol):
    name: str
    tables: tuple[str, ...]

    async def apply(
        self,
        conn: asyncpg.Connection,
        batch: Batch,
        tables: Mapping[str, str],
        *,
        defer: bool = False,
    ) -> Changes:
        """Write the batch's effects inside the caller's transaction. With `defer` (a
        rebuild, whose tables nobody reads yet) stateful projections may keep their
        changes in memory until `flush`, so each row is written once, not per batch;
        the batch is then a stretch of the store, in its order, with nothing left out."""
        ...

    async def flush(self, conn: asyncpg.Connection, tables: Mapping[str, str]) -> None:
        """Write what deferred batches kept in memory."""
        ...

    def discard(self, tables: Mapping[str, str]) -> None:
        """Forget what deferred batches kept in memory (an abandoned rebuild)."""
        ...

    async def after_commit(self, changes: Changes) -> None:
        """Side effects outside PostgreSQL (caches, topics), only for the live tables."""
        ...

    async def after_swap(self) -> None:
        """A rebuilt table replaced the live one: drop anything derived from the old one."""
        ...
