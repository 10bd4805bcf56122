"""Event ids for events whose client gave none: random (version 4) UUIDs, cheaply.

`uuid.uuid4()` makes one system call per id; on the ingest path that is a measurable
share of a request. The bytes still come from the operating system's CSPRNG (ids must
not be guessable: a guessed id, sent first with another body, would turn a stranger's
event into a conflict), only 4 KiB at a time.
"""

from __future__ import annotations

import os
from uuid import UUID

_CHUNK = 4096
_buffer = b""
_offset = _CHUNK


def _forget_buffer() -> None:
    # A forked child must not hand out the ids its parent will hand out too.
    global _offset
    _offset = _CHUNK


os.register_at_fork(after_in_child=_forget_buffer)


def new_event_id() -> UUID:
    global _buffer, _offset
    if _offset >= _CHUNK:
        _buffer, _offset = os.urandom(_CHUNK), 0
    raw = _buffer[_offset : _offset + 16]
    _offset += 16
    return UUID(bytes=raw, version=4)
