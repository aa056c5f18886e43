"""The whole embedded path for end-to-end tests: ingress (with its relay) → local runner → sandbox."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from chatmill.runner.service import run_runner
from chatmill.sandbox import create_app as create_sandbox
from chatmill.settings import Settings
from ingress.app import create_app as create_ingress
from tests.servers import serve
from tests.webhooks import (
    SAMPLE_PHONE_NUMBER_ID,
    change,
    encode,
    envelope,
    signed_headers,
    status,
    text_message,
)

DEADLINE = 30.0


@dataclass
class Stack:
    settings: Settings
    ingress_url: str
    sandbox_url: str

    def send(self, text: str, *, wa_id: str = "15551230000", wamid: str | None = None) -> str:
        wamid = wamid or f"wamid.e2e.{uuid.uuid4().hex}"
        body = encode(
            envelope([change(messages=[text_message(wamid, text, wa_id=wa_id, timestamp=int(time.time()))])])
        )
        self.deliver(body)
        return wamid

    def deliver(self, body: bytes) -> None:
        secret = self.settings.whatsapp_app_secret.get_secret_value()
        response = httpx.post(
            f"{self.ingress_url}/webhook/whatsapp", content=body, headers=signed_headers(body, secret)
        )
        assert response.status_code == 200, response.text

    def send_status(self, wamid: str, state: str) -> None:
        self.deliver(
            encode(
                envelope(
                    [
                        change(
                            SAMPLE_PHONE_NUMBER_ID,
                            statuses=[status(wamid, state, timestamp=int(time.time()))],
                        )
                    ]
                )
            )
        )

    def replies(self, to: str = "15551230000") -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = httpx.get(
            f"{self.sandbox_url}/sandbox/messages", params={"to": to}
        ).json()["messages"]
        return messages

    def wait_replies(
        self, count: int, to: str = "15551230000", *, timeout: float = DEADLINE
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(found := self.replies(to)) < count:
            assert time.monotonic() < deadline, f"expected {count} replies to {to}, got {found}"
            time.sleep(0.05)
        return found

    def fail_next(self, code: int, *, to: str | None = None, times: int = 1) -> None:
        body: dict[str, Any] = {"code": code, "times": times}
        if to:
            body["to"] = to
        assert httpx.post(f"{self.sandbox_url}/sandbox/failures", json=body).status_code in (200, 201, 204)


@contextlib.contextmanager
def runner_thread(settings: Settings) -> Iterator[None]:
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)

        async def main() -> None:
            started.set()
            await run_runner(settings, stop)

        loop.run_until_complete(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    started.wait(10)
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()


@contextlib.contextmanager
def running_stack(settings: Settings, *, runner: bool = True) -> Iterator[Stack]:
    with serve(create_sandbox(settings)) as sandbox_url:
        wired = settings.model_copy(update={"whatsapp_graph_url": sandbox_url})
        with (
            serve(create_ingress(wired)) as ingress_url,
            runner_thread(wired) if runner else contextlib.nullcontext(),
        ):
            yield Stack(settings=wired, ingress_url=ingress_url, sandbox_url=sandbox_url)
