"""Local runner overhead: queue-to-finish latency of a one-step flow, against the bare queue.

    .venv/bin/python bench/runner_overhead.py [--runs 1000] [--rate 100] [--workers 10]

Starts the embedded PostgreSQL in a temporary directory (or uses BENCH_DATABASE_URL), migrates a
fresh database, then enqueues ``--runs`` runs at ``--rate`` per second (INSERT + NOTIFY, as the
dispatcher does) in two phases:

1. baseline: the bare queue — workers claim and finish each run without executing anything (the
   floor: NOTIFY wake-up + claim + finish round trips);
2. runner: the real runner executing ``f/rt/work`` from the test fixtures (one rawscript step that
   returns at once): thread start, argument evaluation, step recording (2 writes) on top.

Latency is ``finished_at - created_at`` per run, from the database clock. Prints a table and a JSON
line and fails if a run is lost or ran twice.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "windmill_scripts")]

from chatmill.embedded import embedded_database  # noqa: E402
from chatmill.migrations import apply_migrations  # noqa: E402
from chatmill.runner.queue import RunQueue  # noqa: E402
from chatmill.runner.service import Runner  # noqa: E402
from chatmill.settings import Settings  # noqa: E402

WORKSPACE = ROOT / "tests" / "runner" / "fixtures" / "workspace"


async def _enqueue(database_url: str, flow_path: str, runs: int, rate: float) -> list[uuid.UUID]:
    ids: list[uuid.UUID] = []
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        start = time.monotonic()
        for n in range(runs):
            run_id = uuid.uuid4()
            await conn.execute(
                "INSERT INTO runner_runs (id, flow_path, args, status) VALUES (%s, %s, %s, 'queued') "
                "ON CONFLICT (id) DO NOTHING",
                (run_id, flow_path, Jsonb({"key": f"k{n}", "seconds": 0})),
            )
            await conn.execute("NOTIFY chatmill_runs")
            ids.append(run_id)
            delay = start + (n + 1) / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
    return ids


async def _wait_done(database_url: str, ids: list[uuid.UUID]) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        deadline = time.monotonic() + 300
        while True:
            cursor = await conn.execute(
                "SELECT count(*) FROM runner_runs WHERE id = ANY(%s) AND status IN ('success', 'failure')",
                (ids,),
            )
            row = await cursor.fetchone()
            if row is not None and row[0] == len(ids):
                return
            if time.monotonic() > deadline:
                raise SystemExit("runs did not finish within 300 s")
            await asyncio.sleep(0.1)


async def _bare_queue(settings: Settings, workers: int, stop: asyncio.Event) -> None:
    runner = Runner(settings, root=WORKSPACE, workers=1, schedules=False)  # only for its pool
    await runner.pool.open()
    queue = RunQueue(runner.pool)
    wake = asyncio.Event()

    async def listen() -> None:
        assert settings.database_url is not None
        async with await psycopg.AsyncConnection.connect(settings.database_url, autocommit=True) as conn:
            await conn.execute("LISTEN chatmill_runs")
            while not stop.is_set():
                async for _ in conn.notifies(timeout=0.5, stop_after=1):
                    wake.set()

    async def work(name: str) -> None:
        while not stop.is_set():
            wake.clear()
            claimed = await queue.claim(name)
            if claimed is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), 1.0)
                continue
            await queue.finish(claimed, name, status="success", result={"bare": True}, error=None)

    tasks = [asyncio.create_task(listen())] + [asyncio.create_task(work(f"bare/{n}")) for n in range(workers)]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await runner.pool.close()


def _stats(database_url: str, ids: list[uuid.UUID]) -> dict[str, Any]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM finished_at - created_at) * 1000, status, attempt FROM runner_runs "
            "WHERE id = ANY(%s)",
            (ids,),
        ).fetchall()
        steps = conn.execute(
            "SELECT count(*) FROM runner_steps WHERE run_id = ANY(%s) AND status = 'success'", (ids,)
        ).fetchone()
    latencies = sorted(float(row[0]) for row in rows)
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "runs": len(rows),
        "failed": sum(1 for row in rows if row[1] != "success"),
        "picked_twice": sum(1 for row in rows if row[2] != 1),
        "successful_steps": steps[0] if steps else 0,
        "p50_ms": round(quantiles[49], 1),
        "p95_ms": round(quantiles[94], 1),
        "p99_ms": round(quantiles[98], 1),
        "max_ms": round(latencies[-1], 1),
    }


async def _phase(settings: Settings, name: str, runs: int, rate: float, workers: int) -> dict[str, Any]:
    assert settings.database_url is not None
    stop = asyncio.Event()
    if name == "baseline":
        service = asyncio.create_task(_bare_queue(settings, workers, stop))
        await asyncio.sleep(0.5)
    else:
        runner = Runner(settings, root=WORKSPACE, workers=workers, schedules=False)
        await runner.start()
    started = time.monotonic()
    ids = await _enqueue(settings.database_url, "f/rt/work", runs, rate)
    await _wait_done(settings.database_url, ids)
    elapsed = time.monotonic() - started
    if name == "baseline":
        stop.set()
        await service
    else:
        await runner.stop()
    return {"phase": name, "elapsed_s": round(elapsed, 2), **_stats(settings.database_url, ids)}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="runs enqueued per second")
    parser.add_argument("--workers", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        external = os.environ.get("BENCH_DATABASE_URL")
        with embedded_database(Path(scratch), external) as server_url:
            name = f"chatmill_bench_{uuid.uuid4().hex[:8]}"
            with psycopg.connect(server_url, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            database_url = make_conninfo(server_url, dbname=name)
            try:
                apply_migrations(database_url)
                settings = Settings(_env_file=None, chatmill_env="test", database_url=database_url)  # type: ignore[call-arg]
                results = [
                    asyncio.run(_phase(settings, phase, args.runs, args.rate, args.workers))
                    for phase in ("baseline", "runner")
                ]
            finally:
                with psycopg.connect(server_url, autocommit=True) as conn:
                    conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                    )
    print(
        f"{'phase':<10}{'runs':>6}{'lost':>6}{'twice':>6}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}{'s':>8}"
    )
    for r in results:
        lost = args.runs - r["runs"] + r["failed"]
        print(
            f"{r['phase']:<10}{r['runs']:>6}{lost:>6}{r['picked_twice']:>6}{r['p50_ms']:>9}{r['p95_ms']:>9}"
            f"{r['p99_ms']:>9}{r['max_ms']:>9}{r['elapsed_s']:>8}"
        )
    print(
        json.dumps(
            {"bench": "runner_overhead", "workers": args.workers, "rate": args.rate, "results": results}
        )
    )
    runner = results[1]
    ok = runner["failed"] == 0 and runner["picked_twice"] == 0 and runner["successful_steps"] == args.runs
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
