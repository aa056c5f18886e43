"""The local runner's queue and run records in PostgreSQL (``runner_runs``, ``runner_steps``).

- Enqueue: ``INSERT … ON CONFLICT (id) DO NOTHING`` (the dispatcher's job id makes it idempotent);
  a trigger NOTIFYs ``chatmill_runs`` whenever a run becomes ``queued``.
- Claim: one queued run whose ``scheduled_for`` has come, ``FOR UPDATE SKIP LOCKED``, moved to
  ``running`` with this worker's name and ``attempt + 1`` in the same statement: two workers (in one
  runner or in two) can never claim the same run.
- Heartbeat: the runner refreshes ``heartbeat_at`` of the runs it executes every few seconds.
- Recover: a ``running`` run whose heartbeat is older than the expiry (its runner was SIGKILLed or
  lost its database) goes back to ``queued`` and is executed again from the first step — the flows
  are idempotent. After ``max_attempts`` pick-ups it is failed instead, so a run that kills its
  runner cannot loop forever.
- Finish: only by the worker and attempt that claimed it, and only while still ``running``: a
  runner that lost its run to recovery cannot overwrite the new attempt's outcome.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from chatmill.resources import Pool

CHANNEL = "chatmill_runs"

ENQUEUE = """
INSERT INTO runner_runs (id, flow_path, args, status, scheduled_for)
VALUES (%(id)s, %(flow_path)s, %(args)s, 'queued', COALESCE(%(scheduled_for)s, now()))
ON CONFLICT (id) DO NOTHING
"""

CLAIM = """
UPDATE runner_runs r
SET status = 'running', worker = %(worker)s, attempt = r.attempt + 1,
    started_at = now(), heartbeat_at = now(), finished_at = NULL
FROM (
    SELECT id FROM runner_runs
    WHERE status = 'queued' AND scheduled_for <= now()
    ORDER BY scheduled_for, created_at
    LIMIT 1
    FOR UPDATE SKIP LOCKED
) next
WHERE r.id = next.id
RETURNING r.id, r.flow_path, r.args, r.attempt
"""

HEARTBEAT = """
UPDATE runner_runs SET heartbeat_at = now()
WHERE id = ANY(%(ids)s) AND worker = %(worker)s AND status = 'running'
"""

RECOVER = """
UPDATE runner_runs
SET status = CASE WHEN attempt >= %(max_attempts)s THEN 'failure' ELSE 'queued' END,
    worker = NULL,
    finished_at = CASE WHEN attempt >= %(max_attempts)s THEN now() END,
    error = CASE WHEN attempt >= %(max_attempts)s
        THEN jsonb_build_object(
            'name', 'RunnerLost', 'step_id', NULL,
            'message', format('the runner executing it stopped answering %%s times; giving up', attempt))
        ELSE error END
WHERE status = 'running' AND heartbeat_at < now() - make_interval(secs => %(expiry)s)
RETURNING id, status, attempt
"""

FINISH = """
UPDATE runner_runs
SET status = %(status)s, result = %(result)s, error = %(error)s, finished_at = now(),
    heartbeat_at = now(), stopped_at_step = %(stopped_at_step)s, skipped = %(skipped)s
WHERE id = %(id)s AND worker = %(worker)s AND attempt = %(attempt)s AND status = 'running'
"""

STEP_STARTED = """
INSERT INTO runner_steps (run_id, run_attempt, step_id, attempt, position, status, inputs)
VALUES (%(run_id)s, %(run_attempt)s, %(step_id)s, %(attempt)s, %(position)s, 'running', %(inputs)s)
ON CONFLICT (run_id, run_attempt, step_id, attempt) DO UPDATE
SET status = 'running', started_at = now(), finished_at = NULL, result = NULL, error = NULL,
    inputs = EXCLUDED.inputs
"""

STEP_FINISHED = """
UPDATE runner_steps
SET status = %(status)s, finished_at = now(), result = %(result)s, error = %(error)s
WHERE run_id = %(run_id)s AND run_attempt = %(run_attempt)s AND step_id = %(step_id)s
  AND attempt = %(attempt)s
"""


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    flow_path: str
    args: dict[str, Any]
    attempt: int


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


class RunQueue:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    async def enqueue(
        self, run_id: uuid.UUID, flow_path: str, args: dict[str, Any], *, scheduled_for: Any = None
    ) -> bool:
        """Queue a run; False when ``run_id`` already exists (idempotent)."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                ENQUEUE,
                {"id": run_id, "flow_path": flow_path, "args": Jsonb(args), "scheduled_for": scheduled_for},
            )
            return cursor.rowcount == 1

    async def claim(self, worker: str) -> Claimed | None:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(CLAIM, {"worker": worker})).fetchone()
        if row is None:
            return None
        return Claimed(
            id=row["id"], flow_path=row["flow_path"], args=row["args"] or {}, attempt=row["attempt"]
        )

    async def heartbeat(self, worker: str, ids: list[uuid.UUID]) -> None:
        if ids:
            async with self.pool.connection() as conn:
                await conn.execute(HEARTBEAT, {"ids": ids, "worker": worker})

    async def recover(self, *, expiry_seconds: float, max_attempts: int) -> list[dict[str, Any]]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(RECOVER, {"expiry": expiry_seconds, "max_attempts": max_attempts})
            return list(await cursor.fetchall())

    async def finish(
        self,
        claimed: Claimed,
        worker: str,
        *,
        status: str,
        result: Any,
        error: dict[str, Any] | None,
        stopped_at_step: str | None = None,
        skipped: bool = False,
    ) -> bool:
        """Record the outcome; False when the run was taken over meanwhile (nothing written)."""
        async with self.pool.connection() as conn:
            cursor = await conn.execute(
                FINISH,
                {
                    "id": claimed.id,
                    "worker": worker,
                    "attempt": claimed.attempt,
                    "status": status,
                    "result": _json(result),
                    "error": _json(error),
                    "stopped_at_step": stopped_at_step,
                    "skipped": skipped,
                },
            )
            return cursor.rowcount == 1


class DbRecorder:
    """Records a run attempt's steps (see :class:`chatmill.runner.engine.StepRecorder`)."""

    def __init__(self, pool: Pool, run_id: uuid.UUID, run_attempt: int) -> None:
        self.pool = pool
        self.keys = {"run_id": run_id, "run_attempt": run_attempt}

    async def step_started(self, step_id: str, position: int, attempt: int, inputs: dict[str, Any]) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                STEP_STARTED,
                {
                    **self.keys,
                    "step_id": step_id,
                    "attempt": attempt,
                    "position": position,
                    "inputs": _json(inputs),
                },
            )

    async def step_finished(
        self, step_id: str, attempt: int, status: str, result: Any, error: dict[str, Any] | None
    ) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                STEP_FINISHED,
                {
                    **self.keys,
                    "step_id": step_id,
                    "attempt": attempt,
                    "status": status,
                    "result": _json(result),
                    "error": _json(error),
                },
            )
