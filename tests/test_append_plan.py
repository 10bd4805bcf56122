"""The append decision (versions, duplicates, conflicts) as a pure function."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import UUID, uuid4

from command_side.event_store import Known, plan_append
from command_side.new_events import NewEvent


def event(user: str, body: bytes = b"a", event_id: UUID | None = None) -> NewEvent:
    return NewEvent(event_id or uuid4(), user, "watch", "t", 2, "{}", body, datetime.now(UTC))


def test_versions_continue_each_stream_in_request_order() -> None:
    a1, b1, a2 = event("a"), event("b"), event("a")
    plan = plan_append([[a1, b1], [a2]], known={}, heads={"a": 7})
    assert [(e.user_id, v) for e, v in plan.inserts] == [("a", 8), ("b", 1), ("a", 9)]
    assert [[r.outcome for r in answers] for answers in plan.results] == [
        ["accepted", "accepted"],
        ["accepted"],
    ]


def test_known_event_with_same_body_is_a_duplicate_with_its_original_place() -> None:
    again = event("a", b"same")
    plan = plan_append([[again]], known={again.event_id: Known(41, 3, b"same")}, heads={"a": 3})
    assert plan.inserts == []
    (result,) = plan.results[0]
    assert (result.outcome, result.position, result.stream_version) == ("duplicate", 41, 3)


def test_conflict_rejects_the_whole_request_but_not_others() -> None:
    clash = event("a", b"new body")
    innocent_neighbour, other_request = event("a"), event("a")
    plan = plan_append(
        [[innocent_neighbour, clash], [other_request]],
        known={clash.event_id: Known(5, 1, b"old body")},
        heads={"a": 1},
    )
    assert [r.outcome for r in plan.results[0]] == ["rejected", "conflict"]
    assert [(e.event_id, v) for e, v in plan.inserts] == [(other_request.event_id, 2)]
