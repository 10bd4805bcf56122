"""The feature-document cache in Redis: the one protocol its writers and readers share.

Redis can come back from an outage holding documents it should not: restarted from a
snapshot (`shutdown save`), resumed after a freeze (SIGSTOP) with old memory and with a
write that had timed out running late, or reached again after a partition that dropped
writes. A cache that only refuses to go back in version cannot notice the writes it
missed. So every cached value belongs to an *epoch*:

- `cache:epoch` holds the current epoch, a random token (never reused: an old snapshot
  brought back must not make its epoch current again).
- Each value is `<epoch> <position> <document>` (`cached_value`); a reader accepts it
  only when its epoch is the current one, read in the same script (one round trip).
- A process installs a new epoch when it starts, and whenever it may have missed a write:
  a cache write, delete or read of its failed or timed out. Until then it is *suspect*:
  it caches nothing and reads PostgreSQL; once Redis answers it installs a new epoch
  before writing anything else, so every value from before, including a late write that
  runs on resume, is ignored.
- Writes carry the epoch their process knew when the document was computed (before its
  transaction), and are refused when another epoch is current: a document computed
  before an epoch began is never cached under it.
- A restart is detected even by a process that saw no error (redis-py reconnects
  quietly): its scripts carry a nonce of its own, so after Redis restarts their first
  call fails with NOSCRIPT, and the process treats that as an outage. Scripts are loaded
  before the epoch is installed, in one transaction, so a process whose scripts run
  knows the epoch was installed after this server started.
- Within an epoch, set-if-newer compares store positions (they never repeat, unlike
  stream versions after a forget). Forgetting a user leaves a tombstone positioned past
  their last event, so a write of the old stream still in flight cannot bring them back.

Bound: a process that noticed the outage never reads a stale value; one that noticed
nothing reads PostgreSQL after a restart (NOSCRIPT), and after a freeze or partition
until the failing writer installs its new epoch (at most `RECOVER_MAX_WAIT` after Redis
answers again). Values carry a TTL, so those of old epochs go away by themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Mapping
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

log = logging.getLogger("cinemate.cache")

FEATURES_PREFIX = "features:"
EPOCH_KEY = "cache:epoch"
DOCUMENT_TTL_SECONDS = 24 * 3600
RECOVER_MAX_WAIT = 0.25

# KEYS: the epoch key, a document key. The value if it belongs to the current epoch.
READ_SCRIPT = """
local epoch = redis.call('GET', KEYS[1])
if not epoch then return false end
local value = redis.call('GET', KEYS[2])
if value and string.sub(value, 1, #epoch + 1) == epoch .. ' ' then return value end
return false
"""

# KEYS: the epoch key, then document keys. ARGV: the writer's epoch, the TTL, then a
# (position, value) pair per document key, each value `<epoch> <position> <document>`
# made by the writer. Returns {1, written} or, when another epoch is current, {0, that
# epoch} and writes nothing. It reads only the head of each current value (GETRANGE) and
# stores the values as they came: every string a script handles is interned by Lua, and
# a whole document read back or built by concatenation was interned once more.
WRITE_SCRIPT = """
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then return {0, epoch or ''} end
local prefix = epoch .. ' '
local written = 0
for i = 2, #KEYS do
  local position = ARGV[2 * i - 1]
  local head = redis.call('GETRANGE', KEYS[i], 0, 63)  -- an epoch and a position
  local known = nil
  if string.sub(head, 1, #prefix) == prefix then
    local stop = string.find(head, ' ', #prefix + 1, true)
    known = stop and tonumber(string.sub(head, #prefix + 1, stop - 1))
  end
  if not known or known <= tonumber(position) then
    redis.call('SET', KEYS[i], ARGV[2 * i], 'EX', ARGV[2])
    written = written + 1
  end
end
return {1, written}
"""

# Lua hashes a long string by 32 of its bytes, at a stride set by its length, so values
# of one length and shape (a batch of new users' documents) share one hash chain, and
# interning each walked it: in a catch-up of 1,000-event batches, that walk (memcmp under
# luaS_newlstr) was 9% of the machine's CPU, Redis 13%. Values carry 0-15 trailing spaces
# by position, which JSON ignores: sixteen lengths, chains a sixteenth as long. With this
# and the script above, Redis spent 19-23 us an event in such a catch-up, against 37-46.
SPREAD = 16


def cached_value(epoch: str, position: int, document: bytes) -> bytes:
    """A value as readers expect it: `<epoch> <position> <document>`, where an empty
    document is a tombstone."""
    spread = b" " * (position % SPREAD) if document else b""
    return b"%s %d %s%s" % (epoch.encode(), position, document, spread)


CACHE_ERRORS: tuple[type[BaseException], ...] = (aioredis.RedisError, OSError)


def features_key(user_id: str) -> str:
    return FEATURES_PREFIX + user_id


class _Script:
    """A script with this process's nonce in it, so its SHA is this process's own."""

    def __init__(self, body: str, nonce: str) -> None:
        self.text = f"-- cinemate process {nonce}\n{body}"
        self.sha = hashlib.sha1(self.text.encode()).hexdigest()


class FeatureCache:
    """One per process, shared by the projector (writes), forgetting (tombstones) and the
    query side (reads)."""

    def __init__(self, redis: aioredis.Redis, *, ttl_seconds: int = DOCUMENT_TTL_SECONDS) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds
        nonce = secrets.token_hex(8)
        self._read = _Script(READ_SCRIPT, nonce)
        self._write = _Script(WRITE_SCRIPT, nonce)
        self._epoch: str | None = None
        self._suspect_since: str | None = "not started"
        self._recovering: asyncio.Task[None] | None = None

    @property
    def suspect(self) -> str | None:
        """Why the cache is not trusted right now, or None."""
        return self._suspect_since

    def token(self) -> str | None:
        """The epoch a document computed from now on may be cached under (None: do not
        cache it). Take it before reading what the document is made of."""
        return None if self._suspect_since else self._epoch

    async def start(self) -> None:
        """A new epoch for this process; if Redis does not answer, keep trying."""
        if not await self._install():
            self._ensure_recovering()

    async def close(self) -> None:
        if self._recovering is not None:
            self._recovering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._recovering
            self._recovering = None

    async def read(self, user_id: str) -> dict[str, Any] | None:
        """The cached document, or None when PostgreSQL must answer (a miss, a forgotten
        user's tombstone, a value of another epoch, or a cache not trusted now)."""
        if self._suspect_since:
            return None
        try:
            value = await self.redis.evalsha(self._read.sha, 2, EPOCH_KEY, features_key(user_id))
        except NoScriptError:
            self._mark_suspect("Redis lost this process's scripts: it restarted")
            return None
        except CACHE_ERRORS as exc:
            self._mark_suspect(f"a cache read failed: {exc!r}")
            return None
        if value is None:
            return None
        document = value.split(b" ", 2)[2]
        if not document:  # a tombstone
            return None
        found: dict[str, Any] = orjson.loads(document)
        return found

    async def store(
        self,
        token: str | None,
        documents: Mapping[str, dict[str, Any]],
        encoded: Mapping[str, bytes] | None = None,
    ) -> None:
        """Cache these documents if `token` is still the epoch; best effort: PostgreSQL is
        the truth and reads fall back to it. `encoded`: their JSON, if already made."""
        if documents:
            known = encoded or {}
            await self._write_values(
                token,
                {
                    user: (doc["position"], known.get(user) or orjson.dumps(doc))
                    for user, doc in documents.items()
                },
            )

    async def erase(self, token: str | None, user_id: str, last_position: int) -> None:
        """The user was forgotten: a tombstone past `last_position` (their last erased
        event), so no write of their old documents still in flight lands after it."""
        await self._write_values(token, {user_id: (last_position + 1, b"")})

    async def invalidate(self) -> None:
        """Drop every cached document at once (a rebuilt table replaced the live one)."""
        if not await self._install():
            self._mark_suspect("could not start a new cache epoch")

    async def _write_values(
        self, token: str | None, values: Mapping[str, tuple[int, bytes]]
    ) -> None:
        if token is None:
            return
        args: list[Any] = [token, self.ttl_seconds]
        for position, document in values.values():
            args += [position, cached_value(token, position, document)]
        keys = [EPOCH_KEY, *(features_key(user) for user in values)]
        try:
            done, detail = await self.redis.evalsha(self._write.sha, len(keys), *keys, *args)
        except NoScriptError:
            self._mark_suspect("Redis lost this process's scripts: it restarted")
            return
        except CACHE_ERRORS as exc:
            self._mark_suspect(f"a cache write failed: {exc!r}")
            return
        if done:
            return
        # Another process began an epoch since this document was computed: it is not
        # cached, and later documents go under that epoch (unless there is none).
        current = detail.decode() if isinstance(detail, bytes) else str(detail)
        if not current:
            self._mark_suspect("the cache epoch is gone (flushed or evicted)")
        elif not self._suspect_since:
            self._epoch = current

    async def _install(self) -> bool:
        epoch = secrets.token_hex(8)
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.script_load(self._read.text)
                pipe.script_load(self._write.text)
                pipe.set(EPOCH_KEY, epoch)
                await pipe.execute()
        except CACHE_ERRORS as exc:
            log.debug("no new cache epoch yet: %r", exc)
            return False
        self._epoch = epoch
        if self._suspect_since and self._suspect_since != "not started":
            log.warning("features cache trusted again under a new epoch")
        self._suspect_since = None
        return True

    def _mark_suspect(self, reason: str) -> None:
        if not self._suspect_since:
            log.warning("features cache not trusted until Redis answers: %s", reason)
            self._suspect_since = reason
        self._ensure_recovering()

    def _ensure_recovering(self) -> None:
        if self._recovering is None or self._recovering.done():
            self._recovering = asyncio.create_task(self._recover(), name="cache-recovery")

    async def _recover(self) -> None:
        wait = 0.02
        while not await self._install():
            await asyncio.sleep(wait)
            wait = min(RECOVER_MAX_WAIT, wait * 2)
