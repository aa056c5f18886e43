"""``chatmill runs [--failed] [--limit N] [ID]``: the local runner's history, the embedded stand-in
for Windmill's runs page.

Without ID: the most recent runs as a table (newest first). With ID (a full id or a unique prefix of
at least 4 characters): that run, its arguments, result or error, and every step attempt.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any, TextIO

import psycopg
from psycopg.rows import dict_row

from chatmill.embedded import embedded_database
from chatmill.settings import Settings

RECENT = """
SELECT id, flow_path, status, attempt, created_at, started_at, finished_at, error, stopped_at_step, skipped
FROM runner_runs
WHERE (%(failed)s = false OR status = 'failure')
ORDER BY created_at DESC
LIMIT %(limit)s
"""
ONE = """
SELECT * FROM runner_runs WHERE id::text LIKE %(prefix)s ORDER BY created_at DESC LIMIT 2
"""
STEPS = """
SELECT run_attempt, position, step_id, attempt, status, started_at, finished_at, result, error
FROM runner_steps WHERE run_id = %(id)s
ORDER BY run_attempt, position, attempt
"""


def register(commands: Any) -> None:
    runs = commands.add_parser("runs", help="recent flow runs of the local runner, or one run with its steps")
    runs.add_argument("id", nargs="?", help="a run id (or a unique prefix) to show with its steps")
    runs.add_argument("--failed", action="store_true", help="only failed runs")
    runs.add_argument("--limit", type=int, default=20, help="how many runs (default 20)")


def run(settings: Settings, args: argparse.Namespace) -> int:
    with embedded_database(settings.chatmill_data_dir, settings.database_url) as database_url:
        return show_runs(database_url, run_id=args.id, failed=args.failed, limit=args.limit)


def show_runs(
    database_url: str,
    *,
    run_id: str | None = None,
    failed: bool = False,
    limit: int = 20,
    out: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    with psycopg.connect(database_url, row_factory=dict_row, autocommit=True) as conn:
        if run_id is None:
            rows = conn.execute(RECENT, {"failed": failed, "limit": max(1, limit)}).fetchall()
            out.write(_runs_table(rows) + "\n")
            return 0
        prefix = run_id.strip().lower()
        if len(prefix) < 4:
            print("chatmill: give at least 4 characters of the run id", file=sys.stderr)
            return 2
        matches = conn.execute(ONE, {"prefix": prefix.replace("%", "").replace("_", "") + "%"}).fetchall()
        if not matches:
            print(f"chatmill: no run {run_id}", file=sys.stderr)
            return 1
        if len(matches) > 1:
            print(f"chatmill: {run_id} matches several runs; give more characters", file=sys.stderr)
            return 2
        found = matches[0]
        steps = conn.execute(STEPS, {"id": found["id"]}).fetchall()
        out.write(_run_detail(found, steps) + "\n")
        return 0


def _runs_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no runs yet"
    table = [["ID", "FLOW", "STATUS", "TRY", "CREATED", "DURATION", "NOTE"]]
    for row in rows:
        table.append(
            [
                str(row["id"]),
                row["flow_path"],
                row["status"],
                str(row["attempt"]),
                _time(row["created_at"]),
                _duration(row["started_at"], row["finished_at"]),
                _note(row),
            ]
        )
    return _format(table)


def _note(row: dict[str, Any]) -> str:
    if row.get("error"):
        error = row["error"]
        where = f"[{error.get('step_id')}] " if error.get("step_id") else ""
        return _clip(f"{where}{error.get('name', 'Error')}: {error.get('message', '')}", 70)
    if row.get("stopped_at_step"):
        return f"stopped after {row['stopped_at_step']}" + (" (skipped)" if row.get("skipped") else "")
    return ""


def _run_detail(run: dict[str, Any], steps: list[dict[str, Any]]) -> str:
    lines = [
        f"run       {run['id']}",
        f"flow      {run['flow_path']}",
        f"status    {run['status']}"
        + (f" (stopped after {run['stopped_at_step']})" if run["stopped_at_step"] else ""),
        f"attempt   {run['attempt']}" + (f" on {run['worker']}" if run["worker"] else ""),
        f"created   {_time(run['created_at'], full=True)}",
        f"started   {_time(run['started_at'], full=True)}",
        f"finished  {_time(run['finished_at'], full=True)}   ({_duration(run['started_at'], run['finished_at'])})",
        f"args      {_clip(json.dumps(run['args']), 300)}",
    ]
    if run["result"] is not None:
        lines.append(f"result    {_clip(json.dumps(run['result']), 300)}")
    if run["error"] is not None:
        error = run["error"]
        where = f"[{error['step_id']}] " if error.get("step_id") else ""
        lines.append(f"error     {where}{error.get('name')}: {error.get('message')}")
    lines.append("")
    if not steps:
        lines.append("no steps recorded")
        return "\n".join(lines)
    table = [["RUN TRY", "#", "STEP", "TRY", "STATUS", "DURATION", "RESULT / ERROR"]]
    for step in steps:
        if step["error"]:
            detail = f"{step['error'].get('name')}: {step['error'].get('message')}"
        elif step["result"] is not None:
            detail = json.dumps(step["result"])
        else:
            detail = ""
        table.append(
            [
                str(step["run_attempt"]),
                str(step["position"]),
                step["step_id"],
                str(step["attempt"]),
                step["status"],
                _duration(step["started_at"], step["finished_at"]),
                _clip(detail, 80),
            ]
        )
    lines.append(_format(table))
    return "\n".join(lines)


def _format(table: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in table
    )


def _time(value: dt.datetime | None, *, full: bool = False) -> str:
    if value is None:
        return "-"
    local = value.astimezone()
    return local.isoformat(sep=" ", timespec="milliseconds") if full else local.strftime("%m-%d %H:%M:%S")


def _duration(start: dt.datetime | None, end: dt.datetime | None) -> str:
    if start is None:
        return "-"
    if end is None:
        return "running"
    seconds = (end - start).total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
