"""Committed Windmill metadata matches the code: a changed main() without regenerated metadata fails."""

from __future__ import annotations

import shutil
from pathlib import Path

from chatmill import windmill_meta
from chatmill.runner.flowfile import load_workspace


def test_every_script_yaml_and_lock_matches_the_code() -> None:
    stale = [str(path.relative_to(windmill_meta.WORKSPACE)) for path in windmill_meta.stale()]
    assert stale == [], "run `chatmill windmill-metadata` and commit the result"


def test_a_changed_signature_is_detected(tmp_path: Path) -> None:
    root = tmp_path / "windmill_scripts"
    shutil.copytree(windmill_meta.WORKSPACE / "f", root / "f", ignore=shutil.ignore_patterns("__pycache__"))
    script = root / "f" / "chatmill" / "handle_message" / "send_reply.py"
    script.write_text(
        script.read_text().replace(
            '    encryption_keys: str = "",\n) -> dict',
            '    encryption_keys: str = "",\n    dry_run: bool = False,\n) -> dict',
            1,
        )
    )
    assert script.with_suffix(".script.yaml") in windmill_meta.stale(root)
    windmill_meta.write(root)
    assert "dry_run" in script.with_suffix(".script.yaml").read_text()
    assert windmill_meta.stale(root) == []


def test_the_handle_message_schema_marks_the_database_as_a_resource() -> None:
    schema = windmill_meta.schema(
        windmill_meta.WORKSPACE / "f" / "chatmill" / "handle_message" / "send_reply.py"
    )
    assert schema["properties"]["db"]["format"] == "resource-postgresql"
    assert schema["required"] == ["db", "context"]


def test_every_committed_flow_loads_in_the_local_runner() -> None:
    assert {"f/chatmill/handle_message", "f/chatmill/ingest_source"} <= set(
        load_workspace(windmill_meta.WORKSPACE)
    )
