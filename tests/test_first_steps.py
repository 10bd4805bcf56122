"""What a newcomer reads first: `cinemate --help`, each command's help, the README."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from cinemate.cli import parser
from cinemate.demo import demo_catalog, demo_events

README = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")


def commands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_every_option_of_every_command_says_what_it_does() -> None:
    for name, command in commands().items():
        for action in command._actions:
            if not isinstance(action, argparse._HelpAction):
                assert action.help, f"cinemate {name} {action.option_strings or action.dest}"


def test_serve_help_describes_its_options_and_enable_consumers() -> None:
    text = commands()["serve"].format_help()
    assert "ENABLE_CONSUMERS" in text and "--host" in text and "--port" in text
    assert "127.0.0.1" in text and "8000" in text
    assert "/api/v1/health" in text and "/docs" in text


def test_the_demo_counts_agree_in_help_readme_and_data() -> None:
    catalog = demo_catalog()
    events = demo_events(catalog)
    viewers = len({e.user_id for e in events})  # type: ignore[attr-defined]
    about = f"{round(len(events), -2):,}"
    described = commands()["demo"].description or ""
    for text in (described, README):
        assert f"{len(catalog)} movies" in text
        assert f"~{about} events" in text, about
        assert f"{viewers} viewers" in text


def test_readme_first_steps() -> None:
    # `cinemate` lives in the virtualenv that scripts/setup.sh makes.
    assert ".venv/bin/cinemate" in README or "source .venv/bin/activate" in README
    # Health URLs as the service serves them.
    assert "localhost:8000/api/v1/health" in README
    assert not re.search(r"(?<!/api/v1)/health/live", README)
    assert "(later recommendations, features)" not in README
    # A running service serves what `cinemate train` writes, by itself.
    assert "by itself" in README
