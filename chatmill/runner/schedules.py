"""Schedules for the local runner: the workspace's ``f/**/*.schedule.yaml`` files, as Windmill reads them.

Supported keys: ``schedule`` (cron; 6 fields with seconds first, as Windmill writes them, or
classic 5 fields), ``timezone`` (IANA name, default UTC), ``enabled`` (default true),
``script_path``, ``is_flow``, ``args``, ``no_flow_overlap``, ``summary``/``description``.
Other keys are refused when the runner starts.

Each tick (every heartbeat interval) a due schedule is advanced with a compare-and-set on
``runner_schedules.next_run_at``, so several runners fire it once; the run id is derived from the
schedule path and the due time (uuid5), so a repeated enqueue is a no-op. Missed firings while no
runner ran are collapsed into one. ``no_flow_overlap`` skips a firing while an earlier run of the
same schedule is still queued or running.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from croniter import croniter

from chatmill.resources import Pool
from chatmill.runner.flowfile import FlowLoadError
from chatmill.runner.queue import RunQueue

SUFFIX = ".schedule.yaml"
_KEYS = frozenset(
    {
        "schedule",
        "timezone",
        "enabled",
        "script_path",
        "is_flow",
        "args",
        "no_flow_overlap",
        "summary",
        "description",
    }
)
_NAMESPACE = uuid.UUID("2b0f3c52-52a4-4d8e-9a55-6f1f8d1c6a11")

_REGISTER = """
INSERT INTO runner_schedules (path, next_run_at) VALUES (%(path)s, %(next)s)
ON CONFLICT (path) DO NOTHING
"""
_DUE = "SELECT next_run_at FROM runner_schedules WHERE path = %(path)s"
_ADVANCE = """
UPDATE runner_schedules SET last_run_at = next_run_at, next_run_at = %(following)s
WHERE path = %(path)s AND next_run_at = %(due)s
"""
_OVERLAP = """
SELECT 1 FROM runner_runs
WHERE flow_path = %(flow_path)s AND status IN ('queued', 'running') AND args ->> '_schedule' = %(path)s
LIMIT 1
"""


@dataclass(frozen=True)
class Schedule:
    path: str
    cron: str
    timezone: str
    script_path: str
    is_flow: bool
    args: dict[str, Any] = field(default_factory=dict)
    no_flow_overlap: bool = False

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        local = moment.astimezone(ZoneInfo(self.timezone))
        fields = self.cron.split()
        itr = croniter(self.cron, local, second_at_beginning=len(fields) == 6)
        following: dt.datetime = itr.get_next(dt.datetime)
        return following.astimezone(dt.UTC)


def load_schedules(root: Path) -> list[Schedule]:
    schedules: list[Schedule] = []
    for file in sorted((root / "f").rglob(f"*{SUFFIX}")):
        schedule = load_schedule(file, root)
        if schedule is not None:
            schedules.append(schedule)
    return schedules


def load_schedule(file: Path, root: Path) -> Schedule | None:
    """The schedule in ``file``; None when it is disabled. Refuses what the runner cannot honour."""
    document = yaml.safe_load(file.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise FlowLoadError(file, "a schedule file must be a mapping")
    unknown = sorted(set(document) - _KEYS)
    if unknown:
        raise FlowLoadError(file, f"unsupported schedule keys {unknown}")
    cron = document.get("schedule")
    script_path = document.get("script_path")
    if not isinstance(cron, str) or len(cron.split()) not in (5, 6):
        raise FlowLoadError(file, f"schedule must be a 5- or 6-field cron expression, not {cron!r}")
    if not isinstance(script_path, str) or not script_path.startswith("f/"):
        raise FlowLoadError(file, f"script_path must be 'f/…', not {script_path!r}")
    args = document.get("args") or {}
    if not isinstance(args, dict):
        raise FlowLoadError(file, "args must be a mapping")
    schedule = Schedule(
        path=file.relative_to(root).as_posix().removesuffix(SUFFIX),
        cron=cron,
        timezone=str(document.get("timezone") or "UTC"),
        script_path=script_path,
        is_flow=bool(document.get("is_flow", False)),
        args=args,
        no_flow_overlap=bool(document.get("no_flow_overlap", False)),
    )
    try:
        schedule.next_after(dt.datetime.now(dt.UTC))
    except (ValueError, KeyError) as exc:
        raise FlowLoadError(file, f"invalid cron or timezone: {exc}") from exc
    return schedule if document.get("enabled", True) else None


def run_id_for(schedule: Schedule, due: dt.datetime) -> uuid.UUID:
    return uuid.uuid5(_NAMESPACE, f"{schedule.path}@{due.astimezone(dt.UTC).isoformat()}")


class Scheduler:
    def __init__(self, pool: Pool, schedules: list[Schedule], queue: RunQueue) -> None:
        self.pool = pool
        self.schedules = schedules
        self.queue = queue

    async def tick(self, now: dt.datetime | None = None) -> int:
        """Enqueue every due schedule once; return how many runs were queued."""
        now = now or dt.datetime.now(dt.UTC)
        queued = 0
        for schedule in self.schedules:
            async with self.pool.connection() as conn:
                await conn.execute(_REGISTER, {"path": schedule.path, "next": schedule.next_after(now)})
                row = await (await conn.execute(_DUE, {"path": schedule.path})).fetchone()
                due = row["next_run_at"] if row else None
                if due is None or due > now:
                    continue
                following = schedule.next_after(max(due, now))
                advanced = await conn.execute(
                    _ADVANCE, {"path": schedule.path, "due": due, "following": following}
                )
                if advanced.rowcount != 1:
                    continue  # another runner fired it
                if schedule.no_flow_overlap:
                    busy = await (
                        await conn.execute(
                            _OVERLAP, {"flow_path": schedule.script_path, "path": schedule.path}
                        )
                    ).fetchone()
                    if busy is not None:
                        continue
            args = {**schedule.args, "_schedule": schedule.path}
            if await self.queue.enqueue(run_id_for(schedule, due), schedule.script_path, args):
                queued += 1
        return queued
