"""Fuzz every operation of the OpenAPI document with requests generated from that document.

For each operation in `schema.api_document()` (the document served at /openapi.json),
hypothesis draws requests from the document itself: path and query parameters from their
schemas, JSON bodies from the request body's schema. Then it bends them: wrong types,
numbers past 64 bits, unicode, NUL, empty strings, missing and extra fields, malformed
JSON, oversized bodies, other content types, and for admin operations the right token, a
wrong one, none, a malformed header, or a service without ADMIN_TOKEN. Each request goes
to the real application (embedded PostgreSQL and Redis), and:

1. the answer is never a 5xx (except a legitimate 503, see LEGITIMATE_503) and always JSON;
2. its status is one the document lists for the operation;
3. a refused request (4xx) stores nothing: the event store, the catalog, the
   recommendations log and the user's data are as they were;
4. a 2xx answer validates against the documented response schema, and its effect on the
   store is what the answer says (events accepted, events erased);
5. whatever was accepted can be projected: the read models catch up after the test;
6. the document and the validation agree: a JSON body valid for the documented schema is
   not refused as invalid (but for what a schema cannot say: UNDOCUMENTABLE), and one
   the schema refuses is not accepted.

Seeded (`derandomize=True`), so a failure replays. `pytest -s` prints the number of cases
per operation and in total (FUZZ_CASE_COUNT).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from cinemate.app import Services, api_document, build_app
from tests.projection_helpers import GENRES, wait_caught_up
from tests.test_fuzz_commands import FIELDS, wild_body, wild_value
from tests.test_recommend import COMEDIES, HORRORS, planted_model

DOCUMENT = api_document()
DEFS: dict[str, Any] = DOCUMENT["components"]["schemas"]
TOKEN = "fuzz-admin-token"
MAX_BODY = 1024 * 1024


class Op:
    """One operation of the document."""

    def __init__(self, method: str, path: str, spec: dict[str, Any]) -> None:
        self.method, self.path, self.spec = method, path, spec

    def __repr__(self) -> str:
        return f"{self.method.upper()} {self.path}"

    @property
    def id(self) -> str:
        return str(self.spec["operationId"])

    @property
    def tag(self) -> str:
        return str(self.spec["tags"][0])

    @property
    def admin(self) -> bool:
        return "security" in self.spec

    @property
    def body_schema(self) -> dict[str, Any] | None:
        body = self.spec.get("requestBody")
        return body["content"]["application/json"]["schema"] if body else None

    def params(self, where: str) -> list[dict[str, Any]]:
        return [p for p in self.spec.get("parameters", []) if p["in"] == where]

    def answer_schema(self, status: int) -> dict[str, Any] | None:
        documented = self.spec["responses"][str(status)]
        content = documented.get("content", {}).get("application/json")
        return content["schema"] if content else None


OPERATIONS = [
    Op(method, path, spec)
    for path, ops in DOCUMENT["paths"].items()
    for method, spec in ops.items()
]

# Examples per operation. Every operation of the document is fuzzed: a new one falls in
# its tag's group (an unknown tag fails here, at import). The dangerous admin operations
# (rebuild a read model, swap the model, erase a user) are fuzzed too, fewer times.
DANGEROUS = {
    "post_api_v1_admin_projections_name_rebuild",
    "post_model_reload",
    "delete_api_v1_users_user_id",
    "put_api_v1_admin_experiment",
    "delete_api_v1_admin_experiment",
}
GROUPS: dict[str, int] = {
    "commands": 150,
    "queries": 100,
    "admin": 100,
    "light": 30,
    "dangerous": 40,
}
_GROUP_OF_TAG = {"commands": "commands", "queries": "queries", "admin": "admin"}
_GROUP_OF_TAG |= {"model": "light", "health": "light"}


def group_of(op: Op) -> str:
    return "dangerous" if op.id in DANGEROUS else _GROUP_OF_TAG[op.tag]


EXAMPLES: dict[str, int] = {op.id: GROUPS[group_of(op)] for op in OPERATIONS}
FUZZ_CASE_COUNT = 2220  # requests planned (hypothesis examples), all operations together
assert FUZZ_CASE_COUNT == sum(EXAMPLES.values()), sum(EXAMPLES.values())
assert DANGEROUS <= set(EXAMPLES)
RAN: Counter[str] = Counter()  # requests actually sent, per operation
STATUSES: dict[str, Counter[int]] = {}  # and what they were answered

# 503 is an answer of its own for these, not a failure:
LEGITIMATE_503 = {
    # Readiness and health probes answer 503 (with a Health body) when PostgreSQL is down:
    # telling the load balancer so is their job.
    "get_api_v1_health": "down",
    "get_api_v1_health_ready": "down",
    # Forgetting waits for a rebuild (which could swap the user's rows back in): one the
    # fuzzed admin rebuilds started may still be running. Nothing is erased then.
    "delete_api_v1_users_user_id": "rebuild_running",
}

# ---------------------------------------------------------------------------------------
# What the test database holds before the first case: users and movies that exist, so
# generated requests reach the 200 paths (features, streams, personal recommendations).

KNOWN_USERS = ["fan", "viewer.1", "a:b-c_d", "u1"]
KNOWN_MOVIES = [*COMEDIES[:6], *HORRORS[:6], "unknown-movie"]
FIXED_EVENT_IDS = [
    "3fa85f64-5717-4562-b3fc-2c963f66afa6",
    "00000000-0000-0000-0000-000000000001",
]
HINTS: dict[str, list[Any]] = {  # values that exist, by field or parameter name
    "user_id": KNOWN_USERS,
    "movie_id": KNOWN_MOVIES,
    "clicked_movie_id": KNOWN_MOVIES,
    "results": KNOWN_MOVIES,
    "genre": [*GENRES, "comedy"],
    "genres": GENRES,
    "name": [
        "user_features",
        "item_stats",
        "audit",
        "model_feedback",
        "recommendation_outcomes",
        "nope",
    ],
    "recommendation_id": ["r1"],
    "query": ["horror", "comedy"],
    # Placeholders, replaced by real paths when the request is sent.
    "path": ["<model>", "<missing>", "<corrupt>", "", "<not-a-model>", "<directory>", "<model>"],
    "model": ["<model>", "<missing>", "<corrupt>", "planted.npz", "popularity", "<model>"],
}


def mostly(common: Any, *rare: Any, weight: int = 6) -> st.SearchStrategy[Any]:
    """`common` most of the time. Hypothesis favours the ends of a choice, so the common
    value is at both ends and the rare ones in the middle."""
    return st.sampled_from([common] * weight + list(rare) + [common] * weight)


def one_in(n: int) -> st.SearchStrategy[bool]:
    return mostly(False, True, weight=max(1, (n - 1) // 2))


def either(
    common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], n: int
) -> st.SearchStrategy[Any]:
    """Draws from `rare` about once in `n`, else from `common` (with `|`, hypothesis
    would choose the weights)."""
    return one_in(n).flatmap(lambda pick: rare if pick else common)


# ---------------------------------------------------------------------------------------
# Strategies from JSON schema (the subset pydantic writes into the document).

# Integers where storage changes: 32 and 64 bits, signed and unsigned, and past them.
EDGES = [
    -(2**63) - 1,
    -(2**31),
    2**31 - 1,
    2**31,
    2**32,
    2**53 + 1,
    2**63 - 1,
    2**63,
    2**64 - 1,
    2**64,
    10**30,
]
NO_SURROGATES = st.characters(codec="utf-8")  # no lone surrogates
ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30))]
)
JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(NO_SURROGATES, max_size=20),
)
JSON_ANY = st.recursive(
    JSON_LEAF,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
WILD = st.one_of(
    st.randoms(use_true_random=False).map(wild_value),  # the command fuzz test's values
    JSON_ANY,
    st.sampled_from(
        [2**63, 2**64, -(2**63) - 1, 10**30, 1e308, -0.0, math.nan, math.inf, "", " ", "\u202e",
         "😀" * 70, "\x00", "\ud800", True, [], {}, "1", "0.5", "x" * 65]
    ),
)  # fmt: skip


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = DEFS[node["$ref"].rsplit("/", 1)[1]]
    return node


def from_schema(node: dict[str, Any], name: str | None = None) -> st.SearchStrategy[Any]:
    """Values valid for `node`, mixed with existing ids where the name says what they are."""
    node = resolve(node)
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    alternatives = node.get("anyOf") or node.get("oneOf")
    if alternatives:
        values = [from_schema(alt, name) for alt in alternatives if alt != {"type": "null"}]
        if len(values) < len(alternatives):  # nullable: null now and then
            return either(st.one_of(values), st.none(), 4)
        return st.one_of(values)
    kind = node.get("type")
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low, high = node.get("minimum"), node.get("maximum")
        edges = [e for e in EDGES if (low is None or e >= low) and (high is None or e <= high)]
        return st.integers(low, high) | st.sampled_from(
            [*edges, *(e for e in (low, high) if e is not None)]
        )
    if kind == "number":
        low, high, step = node.get("minimum"), node.get("maximum"), node.get("multipleOf")
        if step and low is not None and high is not None:
            return st.integers(math.ceil(low / step), math.floor(high / step)).map(
                lambda k: k * step
            )
        return st.floats(low, high, allow_nan=False, allow_infinity=False)
    if kind == "string":
        return _string(node, name)
    if kind == "array":
        items = from_schema(node.get("items", {}), name)
        low = node.get("minItems", 0)
        return st.lists(items, min_size=low, max_size=min(node.get("maxItems", 4), low + 4))
    if kind == "object":
        properties = node.get("properties", {})
        if not properties:
            return st.dictionaries(st.text(max_size=8), JSON_LEAF, max_size=4)
        # A const property is a tag (a batch item's `type`): always sent.
        required = set(node.get("required", [])) | {
            k for k, v in properties.items() if "const" in v
        }
        return _object(
            {k: from_schema(v, k) for k, v in properties.items() if k in required},
            {k: from_schema(v, k) for k, v in properties.items() if k not in required},
        )
    return JSON_ANY


@st.composite
def _object(
    draw: st.DrawFn, required: dict[str, st.SearchStrategy[Any]], optional: dict[str, Any]
) -> dict[str, Any]:
    # (fixed_dictionaries leaves optional keys out most of the time)
    document = {key: draw(values) for key, values in required.items()}
    for key, values in optional.items():
        if not draw(one_in(3)):
            document[key] = draw(values)
    return document


def _string(node: dict[str, Any], name: str | None) -> st.SearchStrategy[str]:
    low, high = node.get("minLength", 0), node.get("maxLength", 300)
    if node.get("format") == "uuid":
        return st.uuids().map(str) | st.sampled_from(FIXED_EVENT_IDS)
    if node.get("format") == "date-time":
        moments = st.datetimes(datetime(1999, 1, 1), datetime(2030, 1, 1), timezones=ZONES)
        anywhen = st.datetimes(timezones=ZONES | st.none())  # years 1 to 9999, naive too
        return st.one_of(moments, moments, anywhen).map(datetime.isoformat) | st.sampled_from(
            ["0001-01-01T00:00:00+02:00", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59-05:00",
             "1970-01-01T00:00:00Z", "2026-01-01T00:00:00.123456+14:00", "2026-01-01 00:00:00Z",
             "2026-01-01t00:00:00z", "2026-01-01T00:00:00.1234567Z", "2026-01-01T00:00:00+0200",
             "2026-01-01T00:00Z", "2026-01-01", "1767225600"]
        )  # fmt: skip
    if "pattern" in node:
        text = st.from_regex(node["pattern"], fullmatch=True).filter(
            lambda s: low <= len(s) <= high
        )
    else:
        text = st.text(NO_SURROGATES, min_size=low, max_size=min(high, 40))
    hint = HINTS.get(name or "")
    return either(st.sampled_from(hint), text, 3) if hint else text


# ---------------------------------------------------------------------------------------
# Requests.


@dataclasses.dataclass(frozen=True)
class Case:
    path_params: dict[str, str]
    query: list[tuple[str, str]]
    raw_query: str
    headers: dict[str, bytes]
    content: bytes | None
    auth: str  # correct | wrong | none | malformed | unset (service without ADMIN_TOKEN)
    chunked: bool = False  # sent without Content-Length
    oversize: bool = False  # padded with whitespace past 1 MiB when sent


def _path_value(param: dict[str, Any]) -> st.SearchStrategy[str]:
    # A value routed to this operation: a slash would make it another path, an empty one
    # too (the router's 404 is not this operation's answer).
    wild = st.one_of(
        st.text(NO_SURROGATES.filter(lambda c: c != "/"), min_size=1, max_size=80),
        st.sampled_from(
            ["x" * 64, "x" * 65, "x" * 300, "bad id!", "émile", "\x00", "a\x00b", ".", "..", "-",
             "9" * 40, "u1;DROP TABLE movies", "%", "?", "#", " ", "\u202e", "😀"]
        ),
    )  # fmt: skip
    return either(from_schema(param["schema"], param["name"]), wild, 3)


def _query_value(param: dict[str, Any]) -> st.SearchStrategy[str]:
    schema = param["schema"]
    if schema.get("type") == "integer":
        valid = st.integers(schema.get("minimum"), schema.get("maximum")).map(str)
        wild = st.integers().map(str) | st.sampled_from(
            ["", "-1", "0", "1.5", "1e3", "abc", " 5", "0x10", "٣", "9" * 5000, str(2**63),
             "+7", "1_0", "NaN", "\x00"]
        )  # fmt: skip
        return either(valid, wild, 3)
    if param["name"] == "exclude":
        ids = st.lists(
            st.sampled_from(KNOWN_MOVIES) | st.text(NO_SURROGATES, max_size=70), max_size=5
        )
        return ids.map(",".join)
    wild = st.text(NO_SURROGATES, max_size=40) | st.sampled_from(["", "\x00", "a\x00b", "x" * 5000])
    return either(from_schema(schema, param["name"]), wild, 3)


def _slots(value: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every value inside a JSON document."""
    found: list[tuple[Any, ...]] = [at] if at else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _slots(item, (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _slots(item, (*at, index))
    return found


def _container(value: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        value = value[step]
    return value


def _dumps(value: Any, ascii_only: bool) -> bytes:
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


MALFORMED = st.one_of(
    st.sampled_from(
        [b"", b"{", b"[]", b"null", b"42", b'{"a":', b"\xff\xfe", b"{'a': 1}", b'{"a": 1,}',
         b"NaN", b'{"user_id": "u1" "movie_id": "m1"}', b"[" * 3000 + b"]" * 3000,
         b'{"a": ' * 500 + b"1" + b"}" * 500, b"\xef\xbb\xbf{}"]
    ),
    st.binary(max_size=40),
)  # fmt: skip
BODY_KINDS = [
    *["valid"] * 4,
    *["wrong_value"] * 3,
    *["drop"] * 2,
    *["extra", "wild", "malformed", "truncated", "huge_number"],
    *["not_object", "duplicate_key", "big_batch"],
    *["valid"] * 4,
]


@st.composite
def json_body(draw: st.DrawFn, op: Op) -> bytes:
    schema = op.body_schema
    assert schema is not None
    document = draw(from_schema(schema))
    kinds = list(BODY_KINDS)
    if op.path in FIELDS:
        kinds.insert(len(kinds) // 2, "command")
    kind = draw(st.sampled_from(kinds))
    slots = _slots(document)
    keyed = [s for s in slots if isinstance(_container(document, s), dict)]
    if kind == "wrong_value" and slots:
        slot = draw(st.sampled_from(slots))
        _container(document, slot)[slot[-1]] = draw(WILD)
    elif kind == "drop" and keyed:
        slot = draw(st.sampled_from(keyed))
        del _container(document, slot)[slot[-1]]
    elif kind == "extra":
        inner = [v for s in slots if isinstance(v := _container(document, (*s, None)), dict)]
        target = draw(st.sampled_from([document, *inner])) if isinstance(document, dict) else {}
        target[draw(st.sampled_from(["unexpected", "type", "event_id", "", "__proto__"]))] = draw(
            WILD
        )
    elif kind == "wild":
        document = draw(WILD)
    elif kind == "malformed":
        return draw(MALFORMED)
    elif kind == "command":  # the command fuzz test's bodies, for the operations it knows
        return wild_body(draw(st.randoms(use_true_random=False)), FIELDS[op.path])
    elif kind == "not_object":
        document = draw(st.sampled_from([[document], "text", 1, None, True]))
    encoded = _dumps(document, draw(st.booleans()))
    if kind == "truncated" and len(encoded) > 1:
        return encoded[: draw(st.integers(1, len(encoded) - 1))]
    if kind == "huge_number" and slots:
        slot = draw(st.sampled_from(slots))
        _container(document, slot)[slot[-1]] = "@@huge@@"
        literal = draw(
            st.sampled_from([b"1" + b"0" * 400, b"1e400", b"-1e400", b"18446744073709551616"])
        )
        return _dumps(document, True).replace(b'"@@huge@@"', literal)
    if kind == "duplicate_key" and encoded.startswith(b"{") and len(encoded) > 2:
        return encoded[:-1] + b', "user_id": 5}'
    if kind == "big_batch" and isinstance(document, dict) and document.get("events"):
        event = {k: v for k, v in document["events"][0].items() if k != "event_id"}
        document["events"] = [event] * 1001
        return _dumps(document, True)
    return encoded


CONTENT_TYPES = mostly(
    "application/json",
    "application/json; charset=utf-8",
    "Application/JSON",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/jsonx",
    "",
    None,
)
AUTH = mostly("correct", "wrong", "none", "malformed", "unset", weight=3)


@st.composite
def requests(draw: st.DrawFn, op: Op) -> Case:
    path_params = {p["name"]: draw(_path_value(p), label=p["name"]) for p in op.params("path")}
    query: list[tuple[str, str]] = []
    for param in op.params("query"):
        for _ in range(draw(st.sampled_from([1, 0, 2, 1]))):
            query.append((param["name"], draw(_query_value(param))))
    if draw(one_in(10)):
        query.append(
            (draw(st.sampled_from(["unexpected", "limit", ""])), draw(st.text(max_size=10)))
        )
    raw_query = draw(mostly("", "limit=%FF", "genre=%00", "%zz=1", "&&=&", "after=%C3%A9"))

    headers: dict[str, bytes] = {}
    content: bytes | None = None
    if op.body_schema is not None:
        content = draw(json_body(op))
        content_type = draw(CONTENT_TYPES)
        if content_type is not None:
            headers["content-type"] = content_type.encode()
        declared = draw(mostly(None, "abc", "-1", "99999999999", "1.5", " 12", weight=10))
        if declared is not None:
            headers["content-length"] = declared.encode()
    elif draw(one_in(10)):  # a body where none is expected: ignored
        content = draw(st.sampled_from([b"{}", b"garbage", b"\xff", b'{"path": 1}']))
        headers["content-type"] = b"application/json"

    auth = draw(AUTH)
    header = {
        "correct": [b"Bearer " + TOKEN.encode(), b"bearer " + TOKEN.encode()],
        "unset": [b"Bearer " + TOKEN.encode(), b""],
        "wrong": [b"Bearer wrong", b"Bearer " + TOKEN.encode() + b"x", b"Bearer \xe9", b"Bearer  " + TOKEN.encode()],
        "malformed": [b"Basic Zm9vOmJhcg==", b"Bearer", b"Bearer ", TOKEN.encode(), b"Token " + TOKEN.encode()],
        "none": [b""],
    }[auth]  # fmt: skip
    value = draw(st.sampled_from(header))
    if value:
        headers["authorization"] = value
    if draw(st.booleans()):
        request_id = draw(
            st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=200)
        )
        headers["x-request-id"] = request_id.encode("latin-1")
    chunked = content is not None and draw(one_in(10))
    oversize = content is not None and draw(one_in(20))
    return Case(path_params, query, raw_query, headers, content, auth, chunked, oversize)


# ---------------------------------------------------------------------------------------
# Checking answers.

_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "array": list,
    "object": dict,
    "null": type(None),
}


UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")
# RFC 3339 5.6, with what its notes allow: lower case t and z, a space for the T.
RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


def problems(value: Any, node: dict[str, Any], where: str = "$", formats: bool = True) -> list[str]:
    """Where `value` departs from the JSON schema `node` (the subset the document uses,
    read strictly: formats as RFC 3339 and canonical UUIDs, OpenAPI discriminators)."""
    node = resolve(node)
    tag = node.get("discriminator", {})
    if tag:  # OpenAPI: the tag property names the alternative, and must be there
        chosen = (
            tag["mapping"].get(value.get(tag["propertyName"])) if isinstance(value, dict) else None
        )
        return (
            problems(value, {"$ref": chosen}, where, formats)
            if chosen
            else [f"{where}: no valid tag"]
        )
    alternatives = node.get("anyOf") or node.get("oneOf")
    if alternatives:
        if any(not problems(value, alt, where, formats) for alt in alternatives):
            return []
        return [f"{where}: {value!r:.80} matches none of the alternatives"]
    if "const" in node and value != node["const"]:
        return [f"{where}: {value!r:.80} is not {node['const']!r}"]
    if "enum" in node and value not in node["enum"]:
        return [f"{where}: {value!r:.80} is not one of {node['enum']}"]
    kind = node.get("type")
    if kind is not None and (
        not isinstance(value, _TYPES[kind])
        or (kind in ("integer", "number") and isinstance(value, bool))
    ):
        return [f"{where}: {type(value).__name__} where the document says {kind}"]
    found = _constraints(value, node, where, formats)
    if isinstance(value, dict):
        properties = node.get("properties", {})
        missing = [k for k in node.get("required", []) if k not in value]
        if missing:
            found.append(f"{where}: required {missing} missing")
        extra = node.get("additionalProperties", True)
        for key, item in value.items():
            if key in properties:
                found += problems(item, properties[key], f"{where}.{key}", formats)
            elif isinstance(extra, dict):
                found += problems(item, extra, f"{where}.{key}", formats)
            elif extra is False:
                found.append(f"{where}: {key!r} is not documented")
    elif isinstance(value, list) and "items" in node:
        for index, item in enumerate(value):
            found += problems(item, node["items"], f"{where}[{index}]", formats)
    return found


def _constraints(value: Any, node: dict[str, Any], where: str, formats: bool) -> list[str]:
    broken: list[str] = []
    if isinstance(value, str):
        form = node.get("format") if formats else None
        if form == "uuid" and not UUID_TEXT.fullmatch(value):
            broken.append("not a uuid")
        if form == "date-time":
            try:
                datetime.fromisoformat(value.upper()).astimezone(UTC)
            except (ValueError, OverflowError):
                broken.append("not a date-time")
            if not RFC3339.fullmatch(value):
                broken.append("not RFC 3339")
        if "pattern" in node and not re.fullmatch(node["pattern"], value):
            broken.append("pattern")
        if not node.get("minLength", 0) <= len(value) <= node.get("maxLength", math.inf):
            broken.append("length")
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not node.get("minimum", -math.inf) <= value <= node.get("maximum", math.inf):
            broken.append("range")
        step = node.get("multipleOf")
        if step and not (value / step).is_integer():
            broken.append("multipleOf")
    if isinstance(value, list):
        if not node.get("minItems", 0) <= len(value) <= node.get("maxItems", math.inf):
            broken.append("items")
    return [f"{where}: {value!r:.80} breaks {b}" for b in broken]


def json_request(op: Op, case: Case) -> tuple[bool, Any]:
    """(True, value) when the request carries a JSON body the service should read as such:
    JSON content type, a sound size, strict JSON (UTF-8, no NaN, no repeated key)."""
    media = case.headers.get("content-type", b"").split(b";")[0].strip().lower()
    declared = case.headers.get("content-length", b"0")
    if op.body_schema is None or case.content is None or case.oversize or b"<" in case.content:
        return False, None  # (placeholders: the paths they stand for are checked by the service)
    if media != b"application/json" or not declared.isdigit():
        return False, None

    def refuse(*_: Any) -> Any:
        raise ValueError("not JSON")

    def no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in pairs}) < len(pairs):
            raise ValueError("repeated key")
        return dict(pairs)

    try:
        text = case.content.decode("utf-8")
        return True, json.loads(text, parse_constant=refuse, object_pairs_hook=no_repeats)
    except (ValueError, RecursionError):
        return False, None


# What a JSON schema cannot say, and so a documented body may still be refused for:
UNDOCUMENTABLE = {
    "occurred_at",  # at most 5 minutes ahead of the server's clock
    "context",  # at most 2 KB encoded, 64-bit numbers, no NUL
    "variants",  # an experiment's shares sum to 1
}


SNAPSHOT_SQL = """
SELECT (SELECT count(*) FROM interaction_events) AS events,
       (SELECT count(*) FROM movies) AS movies,
       (SELECT count(*) FROM recommendations) AS recommendations,
       (SELECT count(*) FROM interaction_events WHERE originator_id = $1) AS user_events,
       (SELECT count(*) FROM user_features WHERE user_id = $1) AS user_features,
       (SELECT count(*) FROM user_items WHERE user_id = $1) AS user_items,
       (SELECT md5(m::text) FROM movies AS m WHERE movie_id = $2) AS movie
"""


async def snapshot(db: asyncpg.Connection, case: Case) -> dict[str, Any]:
    # PostgreSQL text cannot hold NUL: such an id names nothing stored.
    user = case.path_params.get("user_id", "")
    movie = case.path_params.get("movie_id", "")
    row = await db.fetchrow(SNAPSHOT_SQL, user.replace("\x00", "?"), movie.replace("\x00", "?"))
    return dict(row)


class Env:
    def __init__(
        self,
        services: Services,
        db: asyncpg.Connection,
        open: httpx.AsyncClient,  # the service as the `client` fixture has it: no ADMIN_TOKEN
        secured: httpx.AsyncClient,  # the same service with ADMIN_TOKEN set
        paths: dict[str, str],  # model file placeholders -> files
    ) -> None:
        self.services, self.db, self.open, self.secured = services, db, open, secured
        self.paths = paths

    def __repr__(self) -> str:
        return "Env()"


@pytest.fixture(scope="session")
def model_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("fuzz-models")
    corrupt = folder / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    return {
        "<model>": str(planted_model(folder / "planted.npz")),
        "<missing>": str(folder / "missing.npz"),
        "<corrupt>": str(corrupt),
        "<not-a-model>": __file__,
        "<directory>": str(folder),
    }


@pytest.fixture
async def env(
    services: Services,
    client: httpx.AsyncClient,
    db: asyncpg.Connection,
    model_files: dict[str, str],
) -> AsyncIterator[Env]:
    await db.executemany(
        "INSERT INTO movies (movie_id, title, genres) VALUES ($1, $2, $3)",
        [(m, f"Comedy {m}", ["Comedy"]) for m in COMEDIES]
        + [(m, f"Horror {m}", ["Horror"]) for m in HORRORS],
    )
    events: list[dict[str, Any]] = []
    for n, user in enumerate(KNOWN_USERS):
        events += [
            {"type": "rating", "user_id": user, "movie_id": COMEDIES[n], "rating": 4.5},
            {"type": "watch", "user_id": user, "movie_id": COMEDIES[n + 1], "progress": 0.95},
            {"type": "favorite", "user_id": user, "movie_id": HORRORS[n], "action": "add"},
            {"type": "search", "user_id": user, "query": "horror"},
            {"type": "feedback", "user_id": user, "movie_id": COMEDIES[n], "recommendation_id": "r1", "action": "click"},
        ]  # fmt: skip
    seeded = await client.post("/api/v1/events/batch", json={"events": events})
    assert seeded.status_code == 202, seeded.text
    await services.models.load(Path(model_files["<model>"]))
    await wait_caught_up(services.pool)
    secured = dataclasses.replace(
        services, settings=dataclasses.replace(services.settings, admin_token=TOKEN)
    )
    transport = httpx.ASGITransport(app=build_app(secured))
    async with httpx.AsyncClient(transport=transport, base_url="http://cinemate") as http:
        yield Env(services, db, client, http, model_files)
    # 5. Whatever was accepted can be projected: no event stops the read models.
    await wait_caught_up(services.pool, within=20)


def _url(op: Op, case: Case) -> str:
    path = op.path
    for name, value in case.path_params.items():
        # Every byte escaped, dots too: "." and ".." would otherwise be path steps.
        escaped = "".join(f"%{b:02X}" for b in value.encode())
        path = path.replace("{" + name + "}", escaped)
    # The query built here: httpx would drop the raw part when given params.
    query = "&".join(part for part in (urlencode(case.query), case.raw_query) if part)
    return path + ("?" + query if query else "")


async def _chunks(content: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(content), 65536):
        yield content[start : start + 65536]


async def send_and_check(env: Env, op: Op, case: Case) -> None:
    content = case.content
    if content is not None and op.id in ("post_model_reload", "put_api_v1_admin_experiment"):
        for placeholder, path in env.paths.items():
            content = content.replace(placeholder.encode(), path.encode())
    if content is not None and case.oversize:  # whitespace is valid JSON: only the size is wrong
        content += b" " * (MAX_BODY + 1 - len(content))
    before = await snapshot(env.db, case)
    http = env.open if case.auth == "unset" else env.secured
    answer = await http.request(
        op.method.upper(),
        _url(op, case),
        headers={name.encode(): value for name, value in case.headers.items()},
        content=_chunks(content) if case.chunked and content is not None else content,
    )
    after = await snapshot(env.db, case)
    RAN[op.id] += 1
    status = answer.status_code
    STATUSES.setdefault(op.id, Counter())[status] += 1
    said = f"{op.method.upper()} {op.path} {case!r}\n -> {status} {answer.text[:500]}"

    # 1. No 5xx but a legitimate 503; every answer is JSON.
    assert answer.headers.get("content-type", "").startswith("application/json"), said
    try:
        body = answer.json()
    except ValueError:
        raise AssertionError(f"answer is not JSON: {said}") from None
    if status >= 500:
        assert status == 503 and op.id in LEGITIMATE_503, said
        assert LEGITIMATE_503[op.id] in (body.get("error"), body.get("status")), said

    # 2. A documented status.
    assert str(status) in op.spec["responses"], f"undocumented status: {said}"
    if op.admin and case.auth != "correct":
        expected = {"none": {401}, "malformed": {401, 403}, "wrong": {403}, "unset": {403}}
        assert status in expected[case.auth], said

    # 3. A refusal stores nothing.
    if status >= 400:
        assert after == before, f"refused, yet stored: {before} -> {after}\n{said}"
    else:
        _effect_matches(op, before, after, body, said)

    # 6. The document and the validation agree on the body: one the document accepts is
    # not refused as invalid (but for what a schema cannot say), one it refuses is not
    # accepted.
    is_json, value = json_request(op, case)
    if is_json and (case.auth == "correct" or not op.admin):
        schema = op.body_schema
        assert schema is not None
        broken = problems(value, schema)
        if status < 300:  # (accepting more date-time spellings than RFC 3339's is fine)
            loose = problems(value, schema, formats=False)
            assert not loose, f"accepted a body the document refuses: {loose}\n{said}"
        elif not broken and status == 422 and body["error"] == "validation_error":
            unexplained = [
                item
                for item in body["detail"]
                if item["loc"][:1] == ["body"]
                and not UNDOCUMENTABLE & set(map(str, item["loc"]))
                and item["type"] != "duplicate_event_id"  # ids repeated inside a batch
            ]
            assert not unexplained, f"refused a body the document accepts\n{said}"

    # 4. The documented shape (errors: the error envelope).
    schema = op.answer_schema(status)
    if schema is not None:
        found = problems(body, schema)
        assert not found, f"{found}\n{said}"
    if status >= 400:
        assert isinstance(body, dict) and {"error", "detail"} <= set(body), said


def _effect_matches(
    op: Op, before: dict[str, Any], after: dict[str, Any], body: Any, said: str
) -> None:
    added = after["events"] - before["events"]
    if op.tag == "commands":
        results = body["results"] if "results" in body else [body]
        accepted = sum(r["status"] == "accepted" for r in results)
        assert added == accepted, f"{accepted} accepted, {added} stored\n{said}"
    elif op.id == "delete_api_v1_users_user_id":
        assert -added == body["erased_events"] == before["user_events"], said
        assert after["user_events"] == after["user_features"] == 0, said
    else:
        assert added == 0, f"a query stored events\n{said}"
    if op.id != "put_api_v1_movies_movie_id":
        assert after["movies"] == before["movies"], said


@pytest.fixture(scope="module", autouse=True)
def report_case_counts() -> Iterator[None]:
    yield
    print("\nfuzz cases per operation (planned), statuses:")
    for op in OPERATIONS:
        statuses = " ".join(f"{k}x{v}" for k, v in sorted(STATUSES.get(op.id, {}).items()))
        print(
            f"  {op.method.upper():6} {op.path:42} {RAN[op.id]:4} ({EXAMPLES[op.id]})  {statuses}"
        )
    print(f"fuzz case count: {sum(RAN.values())} (FUZZ_CASE_COUNT = {FUZZ_CASE_COUNT})")


async def test_the_fuzzed_document_is_the_served_one(client: httpx.AsyncClient) -> None:
    assert (await client.get("/openapi.json")).json() == DOCUMENT


def _fuzz_test(group: str) -> Any:
    ops = [op for op in OPERATIONS if group_of(op) == group]
    assert ops, group

    @pytest.mark.parametrize("operation", ops, ids=[op.id for op in ops])
    @settings(
        max_examples=GROUPS[group],
        derandomize=True,  # fixed seed: a failure replays
        database=None,
        deadline=None,
        # The fixtures (one database, one app) are shared by the examples on purpose.
        suppress_health_check=[HealthCheck.function_scoped_fixture],
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
        print_blob=False,
    )
    @given(data=st.data())
    async def test(env: Env, operation: Op, data: st.DataObject) -> None:
        await send_and_check(env, operation, data.draw(requests(operation), label="request"))

    test.__name__ = test.__qualname__ = f"test_{group}_endpoints"
    return test


test_commands_endpoints = _fuzz_test("commands")
test_queries_endpoints = _fuzz_test("queries")
test_admin_endpoints = _fuzz_test("admin")
test_light_endpoints = _fuzz_test("light")  # model info and health
test_dangerous_endpoints = _fuzz_test("dangerous")
