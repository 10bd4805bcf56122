"""Where PostgreSQL and Redis are: the configured URLs, or embedded servers in the data dir."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from cinemate.embedded import EmbeddedPostgres, EmbeddedRedis
from cinemate.settings import Settings

log = logging.getLogger("cinemate.infrastructure")


@dataclass
class Infrastructure:
    database_url: str
    redis_url: str
    _embedded: list[EmbeddedPostgres | EmbeddedRedis] = field(default_factory=list)

    @classmethod
    def start(cls, settings: Settings) -> Infrastructure:
        """Blocking: an embedded server takes about a second to start the first time."""
        embedded: list[EmbeddedPostgres | EmbeddedRedis] = []
        try:
            database_url = settings.database_url
            if database_url is None:
                postgres = EmbeddedPostgres(settings.data_dir)
                database_url = postgres.start()
                embedded.append(postgres)
                log.info("embedded PostgreSQL ready", extra={"pgdata": str(postgres.pgdata)})
            redis_url = settings.redis_url
            if redis_url is None:
                redis = EmbeddedRedis(settings.data_dir)
                redis_url = redis.start()
                embedded.append(redis)
                log.info("embedded Redis ready", extra={"socket": str(redis.socket)})
        except BaseException:
            for server in reversed(embedded):
                server.stop()
            raise
        return cls(database_url, redis_url, embedded)

    def stop(self) -> None:
        for server in reversed(self._embedded):
            server.stop()
        self._embedded.clear()
