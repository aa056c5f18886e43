"""``chatmill chat`` against the real ingress (signature, storage, dispatch) and the sandbox."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from f.chatmill.lib.whatsapp import text_message

from chatmill.chat import ChatSession
from chatmill.sandbox import create_app as create_sandbox
from chatmill.seed import seed_demo
from chatmill.settings import Settings
from ingress.app import create_app as create_ingress
from tests import factories
from tests.servers import serve as live_server


def _wait_row(db: factories.Conn, query: str, params: tuple[Any, ...]) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        row = db.execute(query, params).fetchone()
        if row is not None:
            return row
        assert time.monotonic() < deadline, f"no row for {query}"
        time.sleep(0.05)


def test_chat_reaches_the_ingress_and_the_message_is_stored_and_dispatched(
    settings: Settings, database_url: str, db: factories.Conn
) -> None:
    seed_demo(database_url, settings)
    with live_server(create_ingress(settings)) as ingress, live_server(create_sandbox(settings)) as sandbox:

        async def scenario() -> str:
            async with httpx.AsyncClient(timeout=10) as http:
                session = ChatSession.from_settings(settings, http, ingress_url=ingress, sandbox_url=sandbox)
                wamid = await session.say("What time do you open?")
                reply = text_message(session.wa_id, "We open at 7.", reply_to=wamid)
                await http.post(
                    f"{sandbox}/v21.0/{session.phone_number_id}/messages",
                    json=reply,
                    headers={"Authorization": "Bearer t"},
                )
                assert [m["body"] for m in await session.poll()] == ["We open at 7."]
                return wamid

        wamid = asyncio.run(scenario())
        stored = _wait_row(db, "SELECT text, direction FROM messages WHERE wamid = %s", (wamid,))
        assert (stored["text"], stored["direction"]) == ("What time do you open?", "inbound")
        run = _wait_row(db, "SELECT flow_path, status FROM runner_runs LIMIT 1", ())
        assert run["flow_path"] == "f/chatmill/handle_message"
        statuses = _wait_row(
            db,
            "SELECT array_agg(status ORDER BY status) AS s FROM unmatched_statuses HAVING count(*) = 2",
            (),
        )
        assert statuses["s"] == ["delivered", "read"]
