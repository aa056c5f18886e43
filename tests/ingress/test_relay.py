"""The outbox relay against a local server speaking Windmill's job API, and against the local runner queue."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from typing import Any

import httpx
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from chatmill.flows import HANDLE_MESSAGE, LocalBackend, WindmillBackend
from chatmill.resources import create_pool
from chatmill.settings import Settings
from ingress.app import create_app
from ingress.metrics import IngressMetrics
from ingress.relay import OutboxRelay, RelayConfig, job_id_for
from tests import factories
from tests.ingress.conftest import post
from tests.webhooks import change, encode, envelope, text_message

TOKEN = "windmill-test-token"


class FakeWindmill:
    """Windmill's documented answers: the job id as text; 400 for a job id it already has."""

    def __init__(self, *, fail_first: int = 0) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.requests: Counter[str] = Counter()
        self.fail_first = fail_first
        self.app = Starlette(
            routes=[
                Route("/api/w/{ws}/jobs/run/f/{path:path}", self.run_flow, methods=["POST"]),
                Route("/api/w/{ws}/jobs_u/get/{id}", self.get_job, methods=["GET"]),
                Route("/api/w/{ws}/jobs/queue/count", self.queue_count, methods=["GET"]),
            ]
        )

    async def run_flow(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return PlainTextResponse("Not authorized", status_code=401)
        job_id = request.query_params["job_id"]
        self.requests[job_id] += 1
        if self.fail_first > 0:
            self.fail_first -= 1
            return PlainTextResponse("Internal: database is restarting", status_code=500)
        if job_id in self.jobs:
            return PlainTextResponse(f"Bad request: job {job_id} already exists", status_code=400)
        self.jobs[job_id] = {"path": request.path_params["path"], "args": await request.json()}
        return PlainTextResponse(job_id, status_code=201)

    async def get_job(self, request: Request) -> Response:
        if request.path_params["id"] in self.jobs:
            return JSONResponse({"id": request.path_params["id"], "running": False})
        return PlainTextResponse("Not found: job not found", status_code=404)

    async def queue_count(self, request: Request) -> Response:
        return JSONResponse({"database_length": len(self.jobs), "suspended": 0})


def _outbox(db: factories.Conn, channel: dict[str, Any], count: int) -> list[uuid.UUID]:
    conversation = factories.create_conversation(db, channel)
    ids = []
    for _ in range(count):
        message = factories.create_message(db, conversation)
        row = db.execute(
            "INSERT INTO inbound_outbox (organization_id, conversation_id, message_id) VALUES (%s, %s, %s) RETURNING id",
            (channel["organization_id"], conversation["id"], message["id"]),
        ).fetchone()
        assert row is not None
        ids.append(row["id"])
    return ids


async def _relay_rounds(
    settings: Settings, windmill: FakeWindmill, *, relays: int, rounds: int
) -> IngressMetrics:
    metrics = IngressMetrics.create(CollectorRegistry())
    pool = create_pool(settings, name="relay-test")
    await pool.open()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=windmill.app), base_url="http://windmill"
    ) as http:
        backend = WindmillBackend(http, base_url="http://windmill", token=TOKEN, workspace="chatmill")
        instances = [OutboxRelay(pool, backend, metrics, RelayConfig(batch_size=7)) for _ in range(relays)]
        for _ in range(rounds):
            await asyncio.gather(*(relay.dispatch_round() for relay in instances))
            await pool.wait()
            async with pool.connection() as conn:  # make failed rows due again at once
                await conn.execute(
                    "UPDATE inbound_outbox SET available_at = now() WHERE dispatched_at IS NULL"
                )
        await instances[0].refresh_metrics()
    await pool.close()
    return metrics


def test_a_dispatch_that_fails_twice_then_succeeds_starts_exactly_one_run(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    [outbox_id] = _outbox(db, channel, 1)
    windmill = FakeWindmill(fail_first=2)
    asyncio.run(_relay_rounds(settings, windmill, relays=1, rounds=4))
    job_id = str(job_id_for(outbox_id))
    assert list(windmill.jobs) == [job_id]
    assert windmill.jobs[job_id] == {
        "path": "f/chatmill/handle_message",
        "args": {"outbox_id": str(outbox_id)},
    }
    row = db.execute("SELECT * FROM inbound_outbox WHERE id = %s", (outbox_id,)).fetchone()
    assert row is not None
    assert row["dispatched_at"] is not None
    assert row["attempts"] == 3
    assert str(row["job_id"]) == job_id


def test_two_relays_at_once_never_dispatch_a_row_twice(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    ids = _outbox(db, channel, 40)
    windmill = FakeWindmill()
    metrics = asyncio.run(_relay_rounds(settings, windmill, relays=2, rounds=4))
    assert sorted(windmill.jobs) == sorted(str(job_id_for(i)) for i in ids)
    assert set(windmill.requests.values()) == {1}
    assert metrics.outbox_backlog._value.get() == 0


def test_windmill_400_for_a_job_it_already_has_counts_as_dispatched(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    [outbox_id] = _outbox(db, channel, 1)
    windmill = FakeWindmill()
    windmill.jobs[str(job_id_for(outbox_id))] = {
        "path": "f/chatmill/handle_message",
        "args": {},
    }  # an earlier attempt
    asyncio.run(_relay_rounds(settings, windmill, relays=1, rounds=1))
    row = db.execute(
        "SELECT dispatched_at, last_error FROM inbound_outbox WHERE id = %s", (outbox_id,)
    ).fetchone()
    assert row is not None
    assert row["dispatched_at"] is not None
    assert row["last_error"] is None


def test_a_rejected_dispatch_waits_with_its_error_recorded(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    [outbox_id] = _outbox(db, channel, 1)

    async def run() -> None:
        pool = create_pool(settings, name="relay-test")
        await pool.open()
        transport = httpx.ASGITransport(app=FakeWindmill().app)
        async with httpx.AsyncClient(transport=transport) as http:
            backend = WindmillBackend(http, base_url="http://windmill", token="wrong", workspace="chatmill")
            await OutboxRelay(pool, backend, IngressMetrics.create(CollectorRegistry())).dispatch_round()
        await pool.close()

    asyncio.run(run())
    row = db.execute("SELECT * FROM inbound_outbox WHERE id = %s", (outbox_id,)).fetchone()
    assert row is not None
    assert row["dispatched_at"] is None
    assert row["attempts"] == 1
    assert "401" in row["last_error"]
    assert row["available_at"] > row["created_at"]


def test_local_backend_queues_one_run_per_job_id(settings: Settings, db: factories.Conn) -> None:
    job_id = uuid.uuid4()

    async def run() -> None:
        pool = create_pool(settings, name="local-test")
        await pool.open()
        backend = LocalBackend(pool)
        for _ in range(3):
            await backend.start_flow(HANDLE_MESSAGE, {"outbox_id": "x"}, job_id=job_id)
        await pool.close()

    asyncio.run(run())
    rows = db.execute("SELECT id, flow_path, args, status FROM runner_runs").fetchall()
    assert rows == [
        {"id": job_id, "flow_path": HANDLE_MESSAGE, "args": {"outbox_id": "x"}, "status": "queued"}
    ]


def test_a_relay_stopped_mid_dispatch_loses_nothing(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    ids = _outbox(db, channel, 3)
    windmill = FakeWindmill()
    entered = asyncio.Event()
    release = asyncio.Event()
    original = windmill.run_flow

    async def hanging(request: Request) -> Response:
        entered.set()
        await release.wait()  # Windmill never answers before the relay is stopped
        return await original(request)

    async def run() -> None:
        pool = create_pool(settings, name="relay-test")
        await pool.open()
        app = Starlette(routes=[Route("/api/w/{ws}/jobs/run/f/{path:path}", hanging, methods=["POST"])])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
            backend = WindmillBackend(http, base_url="http://windmill", token=TOKEN, workspace="chatmill")
            relay = OutboxRelay(pool, backend, IngressMetrics.create(CollectorRegistry()))
            task = asyncio.create_task(relay.dispatch_round())
            await entered.wait()
            task.cancel()  # shutdown in the middle of a dispatch
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await pool.close()

    asyncio.run(run())
    rows = db.execute("SELECT dispatched_at, attempts FROM inbound_outbox").fetchall()
    assert rows == [{"dispatched_at": None, "attempts": 0}] * 3
    # the next relay starts every one of them
    asyncio.run(_relay_rounds(settings, windmill, relays=1, rounds=1))
    assert sorted(windmill.jobs) == sorted(str(job_id_for(i)) for i in ids)


def test_webhook_to_local_runner_queue_end_to_end(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    body = encode(envelope([change(messages=[text_message("wamid.e2e", "when do you open?")])]))
    with TestClient(create_app(settings)) as client:
        assert post(client, body, settings.whatsapp_app_secret.get_secret_value()).status_code == 200
        deadline = time.monotonic() + 10
        while not db.execute("SELECT 1 FROM runner_runs WHERE status = 'queued'").fetchone():
            assert time.monotonic() < deadline, "the relay did not queue the run"
            time.sleep(0.02)
    [outbox] = db.execute("SELECT id, dispatched_at FROM inbound_outbox").fetchall()
    [run] = db.execute("SELECT id, flow_path, args, status FROM runner_runs").fetchall()
    assert outbox["dispatched_at"] is not None
    assert run == {
        "id": job_id_for(outbox["id"]),
        "flow_path": HANDLE_MESSAGE,
        "args": {"outbox_id": str(outbox["id"])},
        "status": "queued",
    }


def test_a_message_whose_run_was_lost_is_dispatched_again(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    [lost, answered] = _outbox(db, channel, 2)
    db.execute(
        "UPDATE inbound_outbox SET dispatched_at = now() - interval '10 minutes', job_id = gen_random_uuid()"
    )
    db.execute(
        "UPDATE messages SET answered_at = now() FROM inbound_outbox o WHERE o.message_id = messages.id AND o.id = %s",
        (answered,),
    )

    async def sweep() -> int:
        pool = create_pool(settings, name="sweep-test")
        await pool.open()
        relay = OutboxRelay(pool, LocalBackend(pool), IngressMetrics.create(CollectorRegistry()))
        swept = await relay.sweep_stuck()
        await relay.dispatch_round()
        await pool.close()
        return swept

    assert asyncio.run(sweep()) == 1
    row = db.execute("SELECT generation, job_id FROM inbound_outbox WHERE id = %s", (lost,)).fetchone()
    assert row == {"generation": 1, "job_id": job_id_for(lost, 1)}
    assert job_id_for(lost, 1) != job_id_for(lost)
    [run] = db.execute("SELECT id, args FROM runner_runs").fetchall()
    assert run == {"id": job_id_for(lost, 1), "args": {"outbox_id": str(lost)}}
