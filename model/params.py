"""Hyper-parameters of the service's recommender."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Params:
    """Defaults are the values chosen on the validation split of ml-latest-small.

    l2: EASE ridge strength. min_item_users / max_items bound the item vocabulary, which
    bounds the (cubic) training cost and the size of the artifact. sequence_*: the blend
    weight and shape of the next-item transition component. recency_tau: the history
    item at recency rank r (0 = newest) weighs exp(-r / tau). max_history: how many of
    the newest history items are read at scoring time, which bounds serving latency.
    """

    l2: float = 500.0
    min_item_users: int = 5
    max_items: int = 4000
    sequence_weight: float = 1.0
    sequence_window: int = 10
    sequence_decay: float = 5.0
    sequence_backward: float = 0.5
    recency_tau: float = 5.0
    max_history: int = 50

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Params:
        """Build from a metadata dict; unknown keys are ignored so that older readers can
        load artifacts written by newer trainers."""
        known = {f.name: f.type for f in fields(cls)}
        defaults = cls()
        values: dict[str, Any] = {}
        for name in known:
            if name in data:
                default = getattr(defaults, name)
                values[name] = type(default)(data[name])
        return replace(defaults, **values)
