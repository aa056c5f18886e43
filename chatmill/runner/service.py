"""The local runner process part: N workers, LISTEN/NOTIFY with a poll fallback, heartbeats,
crash recovery and schedules — the embedded stand-in for a Windmill worker group.

    runner = Runner(settings)            # loads (and validates) every flow.yaml: fails fast
    await runner.start(); …; await runner.stop()
    # or: await run_runner(settings, stop_event)

Workers are asyncio tasks (``settings.runner_workers``, default 10, like the production worker
group's ``NUM_WORKERS``); each executes one run at a time and runs its steps in threads
(:mod:`chatmill.runner.engine`). A stop lets in-flight runs finish for ``grace_seconds``, then
cancels them; a cancelled run stays ``running`` and is re-queued by the next runner once its
heartbeat has expired (``heartbeat_timeout`` seconds), exactly like a SIGKILLed one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from chatmill.resources import Pool
from chatmill.runner.engine import FlowExecutor, Outcome, error_of
from chatmill.runner.flowfile import Flow, FlowLoadError, load_workspace, script_module
from chatmill.runner.queue import CHANNEL, Claimed, DbRecorder, RunQueue
from chatmill.runner.references import References
from chatmill.runner.schedules import Scheduler, load_schedules
from chatmill.settings import Settings

_log = logging.getLogger(__name__)

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "windmill_scripts"


class Runner:
    def __init__(
        self,
        settings: Settings,
        *,
        root: Path | None = None,
        workers: int | None = None,
        name: str | None = None,
        poll_interval: float = 1.0,
        heartbeat_interval: float = 2.0,
        heartbeat_timeout: float = 15.0,
        max_attempts: int = 5,
        grace_seconds: float = 10.0,
        schedules: bool = True,
    ) -> None:
        if settings.database_url is None:
            raise RuntimeError("DATABASE_URL is not resolved; start the embedded services first")
        self.settings = settings
        self.root = (root or DEFAULT_ROOT).resolve()
        self.workers = workers or settings.runner_workers
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.poll_interval = poll_interval
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = heartbeat_timeout
        self.max_attempts = max_attempts
        self.grace_seconds = grace_seconds
        self.flows: dict[str, Flow] = load_workspace(self.root)
        self.schedules = load_schedules(self.root) if schedules else []
        self.executor = FlowExecutor(self.root, References(settings))
        self.pool: Pool = AsyncConnectionPool(
            settings.database_url,
            connection_class=AsyncConnection[DictRow],
            min_size=1,
            max_size=self.workers + 3,
            open=False,
            name="runner",
            kwargs={"row_factory": dict_row, "autocommit": True, "application_name": "chatmill-runner"},
        )
        self.queue = RunQueue(self.pool)
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._active: dict[uuid.UUID, str] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._worker_tasks: list[asyncio.Task[None]] = []
        self.completed = 0

    async def start(self) -> None:
        await self.pool.open(wait=True, timeout=30)
        self._worker_tasks = [
            asyncio.create_task(self._work(f"{self.name}/{n}"), name=f"runner-worker-{n}")
            for n in range(self.workers)
        ]
        self._tasks = [
            asyncio.create_task(self._listen(), name="runner-listen"),
            asyncio.create_task(self._housekeeping(), name="runner-housekeeping"),
        ]
        _log.info(
            "local runner %s: %d workers, flows: %s",
            self.name,
            self.workers,
            ", ".join(sorted(self.flows)) or "-",
        )

    async def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        if self._worker_tasks:
            _done, pending = await asyncio.wait(self._worker_tasks, timeout=self.grace_seconds)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._worker_tasks, return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.pool.close()

    async def __aenter__(self) -> Runner:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- workers ---------------------------------------------------------------------------------

    async def _work(self, worker: str) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                claimed = await self.queue.claim(worker)
            except (psycopg.Error, OSError) as exc:
                _log.warning("runner %s cannot claim: %s", worker, exc)
                claimed = None
            if claimed is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_interval)
                continue
            try:
                await self._execute(claimed, worker)
            except (psycopg.Error, OSError) as exc:
                # Cannot record the outcome: the run stays running and is re-queued on expiry.
                _log.error("run %s: cannot record its outcome: %s", claimed.id, exc)
                await asyncio.sleep(self.poll_interval)

    async def _execute(self, claimed: Claimed, worker: str) -> None:
        self._active[claimed.id] = worker
        try:
            try:
                outcome = await self.executor.run(
                    self._flow(claimed.flow_path),
                    claimed.args,
                    DbRecorder(self.pool, claimed.id, claimed.attempt),
                )
            except FlowLoadError as exc:
                outcome = Outcome("failure", error={**error_of(exc, ""), "step_id": None, "stack": ""})
            except (psycopg.Error, OSError):
                raise
            except Exception as exc:  # a runner bug must fail the run, not kill the worker
                _log.exception("run %s: the runner failed", claimed.id)
                outcome = Outcome("failure", error={**error_of(exc, ""), "step_id": None})
            finished = await self.queue.finish(
                claimed,
                worker,
                status=outcome.status,
                result=outcome.result,
                error=outcome.error,
                stopped_at_step=outcome.stopped_at,
                skipped=outcome.skipped,
            )
            if not finished:
                _log.warning(
                    "run %s was taken over by another runner; its outcome here is dropped", claimed.id
                )
            self.completed += 1
        finally:
            self._active.pop(claimed.id, None)

    def _flow(self, path: str) -> Flow:
        flow = self.flows.get(path)
        if flow is not None:
            return flow
        if (self.root / f"{path}.script.yaml").is_file():
            module = script_module(self.root, path)
            return Flow(path=path, file=module.file, summary="", schema={}, modules=(module,), root=self.root)
        raise FlowLoadError(path, f"no flow or script {path} in {self.root}")

    # --- wake-ups, heartbeats, recovery, schedules -------------------------------------------------

    async def _listen(self) -> None:
        assert self.settings.database_url is not None
        while not self._stopping.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.settings.database_url, autocommit=True, application_name="chatmill-runner-listen"
                ) as conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self._wake.set()  # anything queued while we were not listening
                    while not self._stopping.is_set():
                        async for _notify in conn.notifies(timeout=5.0, stop_after=1):
                            self._wake.set()
            except (psycopg.Error, OSError) as exc:
                _log.warning("runner LISTEN connection lost (%s); polling until it is back", exc)
                await asyncio.sleep(self.poll_interval)

    async def _housekeeping(self) -> None:
        scheduler = Scheduler(self.pool, self.schedules, self.queue)
        while not self._stopping.is_set():
            try:
                by_worker: dict[str, list[uuid.UUID]] = {}
                for run_id, worker in list(self._active.items()):
                    by_worker.setdefault(worker, []).append(run_id)
                for worker, ids in by_worker.items():
                    await self.queue.heartbeat(worker, ids)
                recovered = await self.queue.recover(
                    expiry_seconds=self.heartbeat_timeout, max_attempts=self.max_attempts
                )
                for row in recovered:
                    _log.warning(
                        "run %s lost its runner (attempt %s): now %s",
                        row["id"],
                        row["attempt"],
                        row["status"],
                    )
                if recovered:
                    self._wake.set()
                if await scheduler.tick():
                    self._wake.set()
            except (psycopg.Error, OSError) as exc:
                _log.warning("runner housekeeping: %s", exc)
            await asyncio.sleep(self.heartbeat_interval)


async def run_runner(settings: Settings, stop_event: asyncio.Event, **options: Any) -> None:
    """Run the local runner until ``stop_event`` is set (for ``chatmill dev``)."""
    runner = Runner(settings, **options)
    await runner.start()
    try:
        await stop_event.wait()
    finally:
        await runner.stop()
