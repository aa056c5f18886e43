"""The outbox relay: starts ``handle_message`` for every stored message that should be answered.

A background task of the ingress; several may run at once (several ingress processes). Each round
claims due, undispatched rows with ``FOR UPDATE SKIP LOCKED`` inside a transaction, starts the flow
for each with a deterministic job id (``uuid5`` of the outbox row), and records the outcome before
committing:

- started (or already started: Windmill's 400 for a known job id) → ``dispatched_at``, ``job_id``;
- failed → ``attempts + 1``, ``last_error``, and ``available_at`` pushed back exponentially
  (1 s, 2 s, 4 s … capped at 5 min, with jitter).

A relay stopped mid-round rolls its transaction back: the rows stay undispatched and the next round
(this or another relay) starts them again with the same job id, which cannot start a second run.

Every few seconds the relay also sweeps for messages whose run was lost — dispatched more than
``stuck_after_seconds`` ago, still unanswered, with no live lease on the conversation — and
dispatches them again under a new generation (every step of handle_message is idempotent, so a run
that was merely slow cannot cause a second reply).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from dataclasses import dataclass
from typing import Any

from chatmill.flows import HANDLE_MESSAGE, FlowBackend, FlowRejected, FlowUnavailable, WindmillBackend
from chatmill.resources import Pool
from ingress.metrics import IngressMetrics

_log = logging.getLogger(__name__)

JOB_NAMESPACE = uuid.UUID("1b0e3c2a-7f5d-4b8e-9c61-0d2f4a6b8c10")
MAX_BACKOFF_SECONDS = 300.0

_CLAIM = """
SELECT id, attempts, generation FROM inbound_outbox
WHERE dispatched_at IS NULL AND available_at <= now()
ORDER BY available_at, created_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED
"""
_MARK_DISPATCHED = """
UPDATE inbound_outbox SET dispatched_at = now(), job_id = %(job_id)s, attempts = attempts + 1, last_error = NULL
WHERE id = %(id)s
"""
_MARK_FAILED = """
UPDATE inbound_outbox SET attempts = attempts + 1, last_error = %(error)s,
    available_at = now() + make_interval(secs => %(delay)s)
WHERE id = %(id)s
"""
# A dispatched message nobody is answering: its run was lost (a Windmill job dropped, a worker gone
# for good) — unanswered, not completed or failed, and no live lease on its conversation.
_SWEEP_STUCK = """
UPDATE inbound_outbox o SET generation = o.generation + 1, dispatched_at = NULL, available_at = now(), job_id = NULL
FROM messages m, conversations c
WHERE m.id = o.message_id AND m.organization_id = o.organization_id
  AND c.id = o.conversation_id AND c.organization_id = o.organization_id
  AND o.dispatched_at < now() - make_interval(secs => %(after)s)
  AND o.completed_at IS NULL AND o.failed_at IS NULL AND m.answered_at IS NULL
  AND (c.lease_expires_at IS NULL OR c.lease_expires_at < now())
RETURNING o.id
"""
_BACKLOG = """
SELECT count(*) AS backlog, COALESCE(extract(epoch FROM now() - min(created_at)), 0)::float AS oldest,
       (SELECT count(*) FROM inbound_outbox WHERE failed_at > now() - interval '24 hours') AS failed
FROM inbound_outbox WHERE dispatched_at IS NULL
"""


def job_id_for(outbox_id: uuid.UUID, generation: int = 0) -> uuid.UUID:
    """The flow job id for an outbox row: the same on every attempt, by every relay.

    ``generation`` counts deliberate re-dispatches (the lease holder found the message unanswered
    when it let go): each gets a new job id, since Windmill would refuse a job id it already ran.
    """
    return uuid.uuid5(JOB_NAMESPACE, str(outbox_id) if generation == 0 else f"{outbox_id}:{generation}")


def backoff_seconds(attempts: int) -> float:
    """Delay before the next attempt after ``attempts`` failed ones (jittered, capped)."""
    base = min(MAX_BACKOFF_SECONDS, 2.0 ** max(0, attempts - 1))
    return base * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not security


@dataclass
class RelayConfig:
    batch_size: int = 50
    poll_seconds: float = 0.25
    metrics_seconds: float = 5.0
    stuck_after_seconds: float = 300.0


class OutboxRelay:
    def __init__(
        self,
        pool: Pool,
        backend: FlowBackend,
        metrics: IngressMetrics,
        config: RelayConfig | None = None,
    ) -> None:
        self._pool = pool
        self._backend = backend
        self._metrics = metrics
        self._config = config or RelayConfig()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New outbox rows were committed: run a round now instead of at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until ``stop`` is set."""
        loop = asyncio.get_running_loop()
        next_metrics = 0.0
        while not stop.is_set():
            try:
                claimed = await self.dispatch_round()
                if loop.time() >= next_metrics:
                    next_metrics = loop.time() + self._config.metrics_seconds
                    await self.sweep_stuck()
                    await self.refresh_metrics()
            except Exception as exc:  # the database is down: keep trying, quietly
                _log.warning("outbox relay round failed: %s", type(exc).__name__)
                claimed = 0
            if claimed >= self._config.batch_size:
                continue  # more may be waiting
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    _first(stop.wait(), self._wake.wait()), timeout=self._config.poll_seconds
                )

    async def dispatch_round(self) -> int:
        """Claim and dispatch one batch; return how many rows were claimed."""
        async with self._pool.connection() as conn, conn.transaction():
            cursor = await conn.execute(_CLAIM, {"limit": self._config.batch_size})
            rows = await cursor.fetchall()
            if not rows:
                return 0
            outcomes = await self._dispatch(rows)
            for row, error in zip(rows, outcomes, strict=True):
                if error is None:
                    job_id = job_id_for(row["id"], row["generation"])
                    await conn.execute(_MARK_DISPATCHED, {"id": row["id"], "job_id": job_id})
                else:
                    delay = backoff_seconds(row["attempts"] + 1)
                    await conn.execute(_MARK_FAILED, {"id": row["id"], "error": error[:500], "delay": delay})
        self._metrics.dispatched.inc(sum(1 for error in outcomes if error is None))
        return len(rows)

    async def _dispatch(self, rows: list[dict[str, Any]]) -> list[str | None]:
        jobs = [(job_id_for(row["id"], row["generation"]), {"outbox_id": str(row["id"])}) for row in rows]
        errors = await self._backend.start_flows(HANDLE_MESSAGE, jobs)
        outcomes: list[str | None] = []
        for row, error in zip(rows, errors, strict=True):
            if isinstance(error, FlowRejected):
                self._metrics.dispatch_errors.labels(kind="rejected").inc()
                _log.error("flow backend rejected outbox row %s: %s", row["id"], error)
            elif error is not None:
                self._metrics.dispatch_errors.labels(kind="unavailable").inc()
            outcomes.append(None if error is None else str(error))
        return outcomes

    async def sweep_stuck(self) -> int:
        """Dispatch again (new generation, new job id) the messages whose run was lost."""
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_SWEEP_STUCK, {"after": self._config.stuck_after_seconds})
            swept = len(await cursor.fetchall())
        if swept:
            self._metrics.redispatched_stuck.inc(swept)
            _log.warning("re-dispatching %d message(s) whose run was lost", swept)
        return swept

    async def refresh_metrics(self) -> None:
        async with self._pool.connection() as conn:
            cursor = await conn.execute(_BACKLOG)
            row = await cursor.fetchone()
        if row is not None:
            self._metrics.outbox_backlog.set(row["backlog"])
            self._metrics.outbox_oldest_age.set(row["oldest"])
            self._metrics.failed_runs.set(row["failed"])
        if isinstance(self._backend, WindmillBackend):
            with contextlib.suppress(FlowUnavailable):
                self._metrics.windmill_queue_depth.set(await self._backend.queue_depth())


async def _first(*awaitables: Any) -> None:
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
