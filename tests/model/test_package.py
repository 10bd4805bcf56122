"""The `model` package's names resolve from their modules, loaded only when used."""

from __future__ import annotations

import subprocess
import sys

import pytest

import model


@pytest.mark.parametrize("name", model.__all__)
def test_every_exported_name_is_its_modules_own(name: str) -> None:
    value = getattr(model, name)
    assert value.__module__.startswith("model.")


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        model.nope  # noqa: B018


def test_folding_events_loads_no_numerical_library() -> None:
    """What the projections import (the signals) starts no numpy, scipy or sklearn."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, projections.user_features, projections.simple_projections; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'scipy', 'sklearn'}))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert loaded == "[]"
