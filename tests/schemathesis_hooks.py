"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.schemathesis_hooks) for what JSON Schema
cannot say and the schema therefore only describes in words (SPEC: `occurred_at` at most
5 minutes ahead of the server's clock; `context` at most 2 KB once encoded, no NUL, numbers
within 64 bits; an experiment's shares sum to 1). A generated body breaking only these is brought back within them, so the
run's `positive_data_acceptance` check tests everything else; the limits themselves are
tested in tests/test_validation.py. Nothing else is changed: a body that breaks the
schema stays as broken as it was generated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis
from pydantic import TypeAdapter, ValidationError

from schema.commands import Context

_CONTEXT: TypeAdapter[Any] = TypeAdapter(Context)


def _within_limits(command: Any) -> Any:
    if not isinstance(command, dict):
        return command
    command = dict(command)
    when = command.get("occurred_at")
    if isinstance(when, str):
        try:
            parsed = datetime.fromisoformat(when)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            try:
                ahead = parsed - datetime.now(UTC) > timedelta(minutes=4)
            except OverflowError:
                ahead = False
            if ahead:
                command["occurred_at"] = datetime.now(UTC).isoformat()
    context = command.get("context")
    if isinstance(context, dict):
        try:
            _CONTEXT.validate_python(context)
        except ValidationError:
            command["context"] = {"device": "tv"}
    return command


def _shares_summing_to_one(body: dict[str, Any]) -> dict[str, Any]:
    variants = body["variants"]
    found = [v.get("share") if isinstance(v, dict) else None for v in variants]
    shares = [float(s) for s in found if isinstance(s, int | float) and not isinstance(s, bool)]
    if len(shares) < len(found) or not all(0 < s <= 1 for s in shares):
        return body  # broken otherwise: left as generated
    total = sum(shares)
    scaled = [s / total for s in shares]
    if not all(s > 0 for s in scaled):
        scaled = [1 / len(shares)] * len(shares)
    return {**body, "variants": [{**v, "share": s} for v, s in zip(variants, scaled, strict=True)]}


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Every phase's requests (the coverage phase's bodies do not pass map_body)."""
    body = getattr(case, "body", None)
    if isinstance(body, dict) and isinstance(body.get("variants"), list) and body["variants"]:
        case.body = _shares_summing_to_one(body)


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    if isinstance(body, dict) and isinstance(body.get("events"), list):
        return {**body, "events": [_within_limits(item) for item in body["events"]]}
    return _within_limits(body)
