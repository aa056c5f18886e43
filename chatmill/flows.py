"""Starting flows: on Windmill in production, on the local runner in embedded mode.

Both backends are idempotent on the job id the caller chooses: starting the same job twice starts
one run. Windmill answers 400 for a job id it already has; the backend then confirms the job exists
(``GET /jobs_u/get/{id}``) and counts it as started, so a 400 for a bad request is never mistaken
for success. The local backend inserts the queued run with ``ON CONFLICT DO NOTHING``.

    FlowError            base
    ├── FlowUnavailable  the backend did not answer or answered 5xx/429: retry later
    └── FlowRejected     the backend refused the request (auth, unknown flow, bad args): retrying
                         the same request will not help; an operator must look
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any, Protocol

import httpx

from chatmill.resources import Pool
from chatmill.settings import Settings

HANDLE_MESSAGE = "f/chatmill/handle_message"
INGEST_SOURCE = "f/chatmill/ingest_source"
RUNNER_CHANNEL = "chatmill_runs"  # NOTIFY channel the local runner LISTENs on

_ENQUEUE_RUN = """
INSERT INTO runner_runs (id, flow_path, args, organization_id, status)
VALUES (%(id)s, %(flow_path)s, %(args)s, %(organization_id)s, 'queued')
ON CONFLICT (id) DO NOTHING
"""


class FlowError(Exception):
    """A flow could not be started."""


class FlowUnavailable(FlowError):
    """The backend is down or overloaded; the same request may succeed later."""


class FlowRejected(FlowError):
    """The backend refused the request; retrying it unchanged will not help."""


class FlowBackend(Protocol):
    async def start_flow(self, path: str, args: dict[str, Any], *, job_id: uuid.UUID) -> None:
        """Start flow ``path`` (e.g. ``f/chatmill/handle_message``) once for ``job_id``."""
        ...

    async def start_flows(
        self, path: str, jobs: list[tuple[uuid.UUID, dict[str, Any]]]
    ) -> list[FlowError | None]:
        """Start one run per (job id, args); return, in order, None for started or the error."""
        ...


_DISPATCH_CONCURRENCY = 16


async def _start_each(
    backend: FlowBackend, path: str, jobs: list[tuple[uuid.UUID, dict[str, Any]]]
) -> list[FlowError | None]:
    limit = asyncio.Semaphore(_DISPATCH_CONCURRENCY)

    async def start(job_id: uuid.UUID, args: dict[str, Any]) -> FlowError | None:
        async with limit:
            try:
                await backend.start_flow(path, args, job_id=job_id)
            except FlowError as exc:
                return exc
            return None

    return list(await asyncio.gather(*(start(job_id, args) for job_id, args in jobs)))


class WindmillBackend:
    """Windmill's HTTP API: ``POST /api/w/{workspace}/jobs/run/f/{path}?job_id=…``."""

    def __init__(self, http: httpx.AsyncClient, *, base_url: str, token: str, workspace: str) -> None:
        self._http = http
        self._base = f"{base_url.rstrip('/')}/api/w/{workspace}"
        self._headers = {"Authorization": f"Bearer {token}"}

    async def start_flow(self, path: str, args: dict[str, Any], *, job_id: uuid.UUID) -> None:
        url = f"{self._base}/jobs/run/f/{path}"
        try:
            response = await self._http.post(
                url, params={"job_id": str(job_id)}, json=args, headers=self._headers
            )
        except httpx.HTTPError as exc:
            raise FlowUnavailable(f"Windmill unreachable: {type(exc).__name__}") from exc
        if response.is_success:
            return
        body = response.text[:300]
        if response.status_code == 400 and await self._job_exists(job_id):
            return  # Windmill refuses a known job id: an earlier attempt started it
        if response.status_code == 429 or response.status_code >= 500:
            raise FlowUnavailable(f"Windmill answered {response.status_code}: {body}")
        raise FlowRejected(f"Windmill answered {response.status_code}: {body}")

    async def start_flows(
        self, path: str, jobs: list[tuple[uuid.UUID, dict[str, Any]]]
    ) -> list[FlowError | None]:
        return await _start_each(self, path, jobs)

    async def _job_exists(self, job_id: uuid.UUID) -> bool:
        """Whether Windmill has ``job_id`` (queued, running or completed): ``GET /jobs_u/get/{id}``."""
        try:
            response = await self._http.get(f"{self._base}/jobs_u/get/{job_id}", headers=self._headers)
        except httpx.HTTPError as exc:
            raise FlowUnavailable(f"Windmill unreachable: {type(exc).__name__}") from exc
        return response.status_code == 200

    async def queue_depth(self) -> int:
        """Jobs waiting in Windmill's queue (``GET /jobs/queue/count``)."""
        try:
            response = await self._http.get(f"{self._base}/jobs/queue/count", headers=self._headers)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise FlowUnavailable(f"Windmill queue count failed: {type(exc).__name__}") from exc
        return int(response.json().get("database_length", 0))


class LocalBackend:
    """The local runner's queue: a ``runner_runs`` row, then a NOTIFY to wake a worker."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    async def start_flow(self, path: str, args: dict[str, Any], *, job_id: uuid.UUID) -> None:
        [error] = await self.start_flows(path, [(job_id, args)])
        if error is not None:
            raise error

    async def start_flows(
        self, path: str, jobs: list[tuple[uuid.UUID, dict[str, Any]]]
    ) -> list[FlowError | None]:
        """All runs in one transaction: one commit for a whole relay batch."""
        values = [
            {
                "id": job_id,
                "flow_path": path,
                "args": json.dumps(args),
                "organization_id": args.get("organization_id"),
            }
            for job_id, args in jobs
        ]
        try:
            async with self._pool.connection() as conn, conn.transaction():
                async with conn.cursor() as cursor:
                    await cursor.executemany(_ENQUEUE_RUN, values)
                await conn.execute(f"NOTIFY {RUNNER_CHANNEL}")
        except Exception as exc:  # pool timeout or any database error: try again later
            error = FlowUnavailable(f"local runner queue unavailable: {type(exc).__name__}")
            return [error for _ in jobs]
        return [None for _ in jobs]


def flow_backend(settings: Settings, *, pool: Pool, http: httpx.AsyncClient) -> FlowBackend:
    """Windmill when ``WINDMILL_URL`` is set, else the local runner."""
    if settings.windmill_url:
        token = settings.windmill_token.get_secret_value() if settings.windmill_token else ""
        return WindmillBackend(
            http, base_url=settings.windmill_url, token=token, workspace=settings.windmill_workspace
        )
    return LocalBackend(pool)
