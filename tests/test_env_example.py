"""`.env.example` documents every setting, and nothing that is not one."""

from __future__ import annotations

from pathlib import Path

from chatmill.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_env_example_lists_exactly_the_settings() -> None:
    documented = {
        line.split("=", 1)[0]
        for line in (ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert documented == {name.upper() for name in Settings.model_fields}
