"""``chatmill runs``: recent runs as a table, one run with its steps."""

from __future__ import annotations

import io
import uuid

import pytest
from psycopg.types.json import Jsonb

from chatmill.cli import main
from chatmill.runner.cli import show_runs
from tests import factories


def _run(db: factories.Conn, status: str, *, error: dict[str, object] | None = None) -> uuid.UUID:
    run_id = uuid.uuid4()
    db.execute(
        "INSERT INTO runner_runs (id, flow_path, args, status, attempt, started_at, finished_at, result, error) "
        "VALUES (%s, 'f/chatmill/handle_message', %s, %s, 1, now() - interval '2 seconds', now(), %s, %s)",
        (
            run_id,
            Jsonb({"conversation_id": "c1"}),
            status,
            Jsonb({"sent": 1}),
            Jsonb(error) if error else None,
        ),
    )
    for position, step in enumerate(["load_context", "generate_reply", "send_reply"]):
        db.execute(
            "INSERT INTO runner_steps (run_id, step_id, attempt, position, status, finished_at, result, error) "
            "VALUES (%s, %s, 1, %s, %s, now(), %s, %s)",
            (
                run_id,
                step,
                position,
                "failure" if error and step == "send_reply" else "success",
                Jsonb({"step": step}),
                Jsonb(error) if error and step == "send_reply" else None,
            ),
        )
    return run_id


def test_recent_runs_table_and_failed_filter(database_url: str, db: factories.Conn) -> None:
    ok = _run(db, "success")
    bad = _run(
        db, "failure", error={"name": "WhatsAppError", "message": "window closed", "step_id": "send_reply"}
    )
    out = io.StringIO()
    assert show_runs(database_url, out=out) == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["ID", "FLOW", "STATUS", "TRY", "CREATED", "DURATION", "NOTE"]
    assert str(bad) in lines[1]
    assert "[send_reply] WhatsAppError: window closed" in lines[1]
    assert str(ok) in lines[2]
    assert "success" in lines[2]
    out = io.StringIO()
    show_runs(database_url, failed=True, out=out)
    assert str(bad) in out.getvalue()
    assert str(ok) not in out.getvalue()


def test_one_run_with_its_steps_by_id_prefix(database_url: str, db: factories.Conn) -> None:
    run_id = _run(db, "success")
    out = io.StringIO()
    assert show_runs(database_url, run_id=str(run_id)[:8], out=out) == 0
    text = out.getvalue()
    assert f"run       {run_id}" in text
    assert "flow      f/chatmill/handle_message" in text
    steps = [line.split()[2] for line in text.splitlines() if line.startswith("1 ")]
    assert steps == ["load_context", "generate_reply", "send_reply"]
    assert show_runs(database_url, run_id="ffffffff", out=io.StringIO()) == 1


def test_the_runs_subcommand(
    database_url: str, db: factories.Conn, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("CHATMILL_ENV", "test")
    assert main(["runs"]) == 0
    assert "no runs yet" in capsys.readouterr().out
    run_id = _run(
        db, "failure", error={"name": "TimeoutError", "message": "slow", "step_id": "generate_reply"}
    )
    assert main(["runs", "--failed", str(run_id)]) == 0
    assert "error     [generate_reply] TimeoutError: slow" in capsys.readouterr().out
