"""The runner against real PostgreSQL: queue, workers, recording, concurrency, crash recovery."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from chatmill.runner.schedules import Scheduler, load_schedules
from chatmill.runner.service import Runner
from chatmill.settings import Settings
from tests import factories

WORKSPACE = Path(__file__).parent / "fixtures" / "workspace"
REPO = Path(__file__).resolve().parents[2]


def fast_runner(settings: Settings, *, workers: int = 1, **options: Any) -> Runner:
    """A runner on the fixture workspace with short poll/heartbeat intervals."""
    defaults: dict[str, Any] = {"poll_interval": 0.2, "heartbeat_interval": 0.2, "schedules": False}
    return Runner(settings, root=WORKSPACE, workers=workers, grace_seconds=5.0, **{**defaults, **options})


def dispatch(
    db: factories.Conn, flow_path: str, args: dict[str, Any], run_id: uuid.UUID | None = None
) -> uuid.UUID:
    """What the dispatcher (chatmill.flows LocalBackend) does."""
    run_id = run_id or uuid.uuid4()
    db.execute(
        "INSERT INTO runner_runs (id, flow_path, args, status) VALUES (%s, %s, %s, 'queued') "
        "ON CONFLICT (id) DO NOTHING",
        (run_id, flow_path, Jsonb(args)),
    )
    db.execute("NOTIFY chatmill_runs")
    return run_id


async def wait_for(check: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await asyncio.sleep(0.05)


def finished(db: factories.Conn, ids: list[uuid.UUID]) -> Callable[[], bool]:
    def check() -> bool:
        row = db.execute(
            "SELECT count(*) AS n FROM runner_runs WHERE id = ANY(%s) AND status IN ('success', 'failure')",
            (ids,),
        ).fetchone()
        return row is not None and row["n"] == len(ids)

    return check


def test_a_dispatched_run_is_executed_and_every_step_recorded(
    settings: Settings, db: factories.Conn, tmp_path: Path
) -> None:
    async def scenario() -> None:
        async with fast_runner(settings, workers=2):
            ok = dispatch(db, "f/rt/sample", {"name": "Ana", "state_dir": str(tmp_path), "failures": 1})
            dispatch(db, "f/rt/sample", {"name": "Ana"}, run_id=ok)  # a re-dispatch is a no-op
            bad = dispatch(db, "f/rt/sample", {"name": "Bo", "state_dir": str(tmp_path / "missing")})
            unknown = dispatch(db, "f/rt/nope", {})
            await wait_for(finished(db, [ok, bad, unknown]))
            run = db.execute("SELECT * FROM runner_runs WHERE id = %s", (ok,)).fetchone()
            assert run is not None
            assert (run["status"], run["attempt"], run["error"]) == ("success", 1, None)
            assert run["result"]["greeting"] == "hello Ana"
            assert run["started_at"] <= run["finished_at"]
            steps = db.execute(
                "SELECT step_id, attempt, position, status, inputs, error FROM runner_steps "
                "WHERE run_id = %s ORDER BY position, attempt",
                (ok,),
            ).fetchall()
            assert [(s["step_id"], s["attempt"], s["status"]) for s in steps] == [
                ("prepare", 1, "success"),
                ("flaky", 1, "failure"),
                ("flaky", 2, "success"),
                ("slow", 1, "success"),
                ("echo", 1, "success"),
            ]
            assert steps[1]["error"]["message"] == "flaky failure 1"
            assert steps[4]["inputs"]["db"] == "$res:f/chatmill/postgres"
            assert settings.database_url is not None
            stored = json.dumps([s["inputs"] for s in steps])
            assert "password" not in stored
            failed = db.execute(
                "SELECT status, error, result FROM runner_runs WHERE id = %s", (bad,)
            ).fetchone()
            assert failed is not None
            assert failed["status"] == "failure"
            assert failed["error"]["step_id"] == "flaky"
            assert failed["result"]["handled_step"] == "flaky"  # the failure module ran
            missing = db.execute("SELECT status, error FROM runner_runs WHERE id = %s", (unknown,)).fetchone()
            assert missing is not None
            assert missing["status"] == "failure"
            assert "no flow or script f/rt/nope" in missing["error"]["message"]

    asyncio.run(scenario())


def test_two_runners_with_several_workers_never_run_a_run_twice(
    settings: Settings, db: factories.Conn
) -> None:
    ids = [dispatch(db, "f/rt/work", {"key": f"k{n}", "seconds": 0.15}) for n in range(24)]

    async def scenario() -> None:
        async with (
            fast_runner(settings, workers=4),
            fast_runner(settings, workers=4),
        ):
            await wait_for(finished(db, ids), within=60)

    asyncio.run(scenario())
    runs = db.execute(
        "SELECT id, status, attempt, worker, result FROM runner_runs WHERE id = ANY(%s)", (ids,)
    ).fetchall()
    assert {(r["status"], r["attempt"]) for r in runs} == {("success", 1)}
    steps = db.execute(
        "SELECT run_id, count(*) AS n FROM runner_steps WHERE run_id = ANY(%s) GROUP BY run_id", (ids,)
    ).fetchall()
    assert sorted(s["n"] for s in steps) == [1] * 24
    assert max(r["result"]["peak"] for r in runs) > 1  # workers really ran side by side


def test_a_sigkilled_runner_s_run_is_recovered_and_finished_once(
    settings: Settings, db: factories.Conn, tmp_path: Path
) -> None:
    marker = tmp_path / "started"
    run_id = dispatch(db, "f/rt/crash", {"marker": str(marker)})
    code = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from chatmill.runner.service import Runner\n"
        "from tests.conftest import make_settings\n"
        "async def main() -> None:\n"
        "    runner = Runner(make_settings(database_url=sys.argv[1]), root=Path(sys.argv[2]), workers=1,\n"
        "                    schedules=False, poll_interval=0.1, heartbeat_interval=0.2)\n"
        "    await runner.start()\n"
        "    await asyncio.Event().wait()\n"
        "asyncio.run(main())\n"
    )
    victim = subprocess.Popen(
        [sys.executable, "-c", code, str(settings.database_url), str(WORKSPACE)], cwd=REPO
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert victim.poll() is None, "the runner subprocess died on its own"
            assert time.monotonic() < deadline, "the runner subprocess never started the step"
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    row = db.execute("SELECT status, attempt FROM runner_runs WHERE id = %s", (run_id,)).fetchone()
    assert row is not None
    assert (row["status"], row["attempt"]) == ("running", 1)

    async def scenario() -> None:
        async with fast_runner(settings, workers=1, heartbeat_timeout=1.0):
            await wait_for(finished(db, [run_id]))

    asyncio.run(scenario())
    run = db.execute("SELECT status, attempt, result FROM runner_runs WHERE id = %s", (run_id,)).fetchone()
    assert run is not None
    assert (run["status"], run["attempt"], run["result"]) == (
        "success",
        2,
        {"resumed": True},
    )
    steps = db.execute(
        "SELECT run_attempt, status FROM runner_steps WHERE run_id = %s ORDER BY run_attempt", (run_id,)
    ).fetchall()
    assert [(s["run_attempt"], s["status"]) for s in steps] == [(1, "running"), (2, "success")]


def test_a_run_that_keeps_losing_its_runner_is_failed_after_max_attempts(
    settings: Settings, db: factories.Conn
) -> None:
    run_id = uuid.uuid4()
    db.execute(
        "INSERT INTO runner_runs (id, flow_path, status, attempt, worker, heartbeat_at) "
        "VALUES (%s, 'f/rt/work', 'running', 5, 'gone', now() - interval '1 hour')",
        (run_id,),
    )

    async def scenario() -> None:
        async with fast_runner(settings, workers=1, heartbeat_timeout=1.0, max_attempts=5):
            await wait_for(finished(db, [run_id]))

    asyncio.run(scenario())
    run = db.execute("SELECT status, error FROM runner_runs WHERE id = %s", (run_id,)).fetchone()
    assert run is not None
    assert run["status"] == "failure"
    assert run["error"]["name"] == "RunnerLost"


def test_schedules_fire_once_per_due_time_across_runners(
    settings: Settings, db: factories.Conn, tmp_path: Path
) -> None:
    folder = tmp_path / "f" / "s"
    folder.mkdir(parents=True)
    (folder / "tick.schedule.yaml").write_text(
        "schedule: '0 */5 * * * *'\ntimezone: UTC\nenabled: true\nscript_path: f/rt/work\nis_flow: true\n"
        "args: {key: scheduled, seconds: 0}\nno_flow_overlap: true\n"
    )
    (folder / "off.schedule.yaml").write_text("schedule: '* * * * *'\nenabled: false\nscript_path: f/x\n")
    schedules = load_schedules(tmp_path)
    assert [s.path for s in schedules] == ["f/s/tick"]

    async def scenario() -> None:
        async with (
            fast_runner(settings, workers=1) as one,
            fast_runner(settings, workers=1) as two,
        ):
            now = dt.datetime(2026, 1, 1, 12, 0, 1, tzinfo=dt.UTC)
            first, second = (
                Scheduler(one.pool, schedules, one.queue),
                Scheduler(two.pool, schedules, two.queue),
            )
            assert await first.tick(now) == 0  # registered; due at 12:05
            later = now + dt.timedelta(minutes=5)
            assert await first.tick(later) + await second.tick(later) == 1
            assert await second.tick(later) == 0
            await wait_for(lambda: _count(db, "status = 'success'") == 1)

    asyncio.run(scenario())
    run = db.execute("SELECT flow_path, args FROM runner_runs").fetchone()
    assert run is not None
    assert run["flow_path"] == "f/rt/work"
    assert run["args"] == {"key": "scheduled", "seconds": 0, "_schedule": "f/s/tick"}
    schedule = db.execute("SELECT last_run_at, next_run_at FROM runner_schedules").fetchone()
    assert schedule is not None
    assert schedule["last_run_at"] == dt.datetime(2026, 1, 1, 12, 5, tzinfo=dt.UTC)
    assert schedule["next_run_at"] == dt.datetime(2026, 1, 1, 12, 10, tzinfo=dt.UTC)


def _count(db: factories.Conn, where: str) -> int:
    row = db.execute(f"SELECT count(*) AS n FROM runner_runs WHERE {where}").fetchone()
    return int(row["n"]) if row else 0
