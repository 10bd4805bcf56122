"""Hyper-parameters of the service's recommender."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Params:
    """Defaults are a good start on ml-latest-small; `model.tuning` chooses per data set.

    Item vocabulary and EASE: l2 is the ridge strength; min_item_users / max_items bound
    the item vocabulary, which bounds the (cubic) training cost and the artifact size.

    Reading a history (serving and training alike): the newest `max_history` movies
    (0 = all), each with weight sign(w) |w|^value_power from its signal weight w
    (value_power 0 reads every movie as +-1, as plain EASE does; 1 reads the signal).

    Scoring: the EASE block sees the history with recency decay exp(-rank / recency_tau)
    (rank 0 = newest; tau 0 = no decay); the order block, scaled by sequence_weight
    (0 = none), sees it with its own decay sequence_tau, so it can look only at the
    newest movies while EASE reads the whole history. sequence_window / _decay /
    _backward shape the order block (see `model.sequential.transition_matrix`).

    The plain-EASE corner is value_power=0, recency_tau=0, max_history=0,
    sequence_weight=0.
    """

    l2: float = 1500.0
    min_item_users: int = 5
    max_items: int = 4000
    value_power: float = 1.0
    recency_tau: float = 5.0
    max_history: int = 50
    sequence_weight: float = 2.0
    sequence_window: int = 100
    sequence_decay: float = 40.0
    sequence_backward: float = 0.0
    sequence_tau: float = 8.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Params:
        """Build from a metadata dict; unknown keys are ignored so that older readers can
        load artifacts written by newer trainers, missing keys take the defaults (a
        version-1 artifact has no value_power: its default, 1, is how it was scored)."""
        known = {f.name: f.type for f in fields(cls)}
        defaults = cls()
        values: dict[str, Any] = {}
        for name in known:
            if name in data:
                default = getattr(defaults, name)
                values[name] = type(default)(data[name])
        return replace(defaults, **values)

    def history_weight(self, block: int) -> tuple[float, float]:
        """(value_power, recency tau) with which block 0 (EASE) or 1 (order) reads a
        history."""
        return (self.value_power, self.recency_tau if block == 0 else self.sequence_tau)


PLAIN_EASE = Params(value_power=0.0, recency_tau=0.0, max_history=0, sequence_weight=0.0)
