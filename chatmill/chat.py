"""``chatmill chat``: play a WhatsApp customer in the terminal against ``chatmill dev``.

Each line you type becomes a signed webhook (``X-Hub-Signature-256`` = HMAC-SHA256 of the raw body
with ``WHATSAPP_APP_SECRET``) shaped like Meta's text message notification, POSTed to the ingress at
``/webhook/whatsapp``. Meanwhile the WhatsApp sandbox is polled for messages sent to your ``wa_id``;
each reply is printed as it arrives and answered with ``delivered`` and ``read`` status webhooks,
as a phone would. ``/quit`` (or end of input) leaves.

Defaults: the seeded demo channel (``phone_number_id`` 106540352242922, ``chatmill seed-demo``) and
Meta's sample customer (wa_id 16505551234, "Sheena Nelson").
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator
from typing import Any, TextIO

import httpx

from chatmill.settings import Settings

DEMO_PHONE_NUMBER_ID = "106540352242922"
DEMO_DISPLAY_PHONE = "15550783881"
DEMO_WABA_ID = "102290129340398"
DEFAULT_WA_ID = "16505551234"
DEFAULT_NAME = "Sheena Nelson"


def signature(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` header value Meta sends for ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def new_wamid() -> str:
    return "wamid." + base64.b64encode(b"chat." + secrets.token_bytes(18)).decode()


class ChatSession:
    """One customer talking to one business number."""

    def __init__(
        self,
        *,
        app_secret: str,
        ingress_url: str,
        sandbox_url: str,
        http: httpx.AsyncClient,
        wa_id: str = DEFAULT_WA_ID,
        name: str = DEFAULT_NAME,
        phone_number_id: str = DEMO_PHONE_NUMBER_ID,
        display_phone_number: str = DEMO_DISPLAY_PHONE,
        out: TextIO | None = None,
    ) -> None:
        self.app_secret = app_secret
        self.webhook_url = ingress_url.rstrip("/") + "/webhook/whatsapp"
        self.sandbox_url = sandbox_url.rstrip("/")
        self.http = http
        self.wa_id = wa_id
        self.name = name
        self.phone_number_id = phone_number_id
        self.display_phone_number = display_phone_number
        self.out = out or sys.stdout
        self.after = 0  # sandbox seq of the last reply seen
        self.prompt = ""  # re-printed after a reply in the terminal

    @classmethod
    def from_settings(cls, settings: Settings, http: httpx.AsyncClient, **overrides: Any) -> ChatSession:
        values: dict[str, Any] = {
            "app_secret": settings.whatsapp_app_secret.get_secret_value(),
            "ingress_url": f"http://{settings.host}:{settings.ingress_port}",
            "sandbox_url": f"http://{settings.host}:{settings.sandbox_port}",
            "http": http,
        }
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

    # --- webhooks --------------------------------------------------------------------------------

    def _envelope(self, value: dict[str, Any]) -> bytes:
        body = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": DEMO_WABA_ID,
                    "changes": [
                        {
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": self.display_phone_number,
                                    "phone_number_id": self.phone_number_id,
                                },
                                **value,
                            },
                            "field": "messages",
                        }
                    ],
                }
            ],
        }
        return json.dumps(body).encode()  # json.dumps escapes non-ASCII, as Meta does

    def message_body(self, text: str, *, wamid: str, reply_to: str | None = None) -> bytes:
        message: dict[str, Any] = {
            "from": self.wa_id,
            "id": wamid,
            "timestamp": str(int(time.time())),
            "type": "text",
            "text": {"body": text},
        }
        if reply_to:
            message["context"] = {"from": self.display_phone_number, "id": reply_to}
        return self._envelope(
            {"contacts": [{"profile": {"name": self.name}, "wa_id": self.wa_id}], "messages": [message]}
        )

    def status_body(self, wamid: str, status: str) -> bytes:
        entry: dict[str, Any] = {
            "id": wamid,
            "status": status,
            "timestamp": str(int(time.time())),
            "recipient_id": self.wa_id,
        }
        if status == "delivered":
            entry["pricing"] = {"billable": False, "pricing_model": "PMP", "category": "service"}
        return self._envelope({"statuses": [entry]})

    async def _post(self, body: bytes) -> httpx.Response:
        return await self.http.post(
            self.webhook_url,
            content=body,
            headers={
                "Content-Type": "application/json",
                "X-Hub-Signature-256": signature(self.app_secret, body),
            },
        )

    async def say(self, text: str) -> str:
        """Send ``text`` as the customer; return its wamid. Raises on a non-200 answer."""
        wamid = new_wamid()
        response = await self._post(self.message_body(text, wamid=wamid))
        if response.status_code != 200:
            raise ChatError(f"the ingress answered {response.status_code}: {response.text[:200]}")
        return wamid

    # --- replies ---------------------------------------------------------------------------------

    async def skip_history(self) -> None:
        """Start after what the sandbox already holds for this wa_id (no replay of old replies)."""
        for message in await self._sandbox_messages():
            self.after = max(self.after, int(message["seq"]))

    async def _sandbox_messages(self) -> list[dict[str, Any]]:
        response = await self.http.get(
            f"{self.sandbox_url}/sandbox/messages", params={"to": self.wa_id, "after": str(self.after)}
        )
        response.raise_for_status()
        messages: list[dict[str, Any]] = response.json()["messages"]
        return messages

    async def poll(self) -> list[dict[str, Any]]:
        """New replies: printed, then acknowledged with delivered and read statuses."""
        messages = await self._sandbox_messages()
        for message in messages:
            self.after = max(self.after, int(message["seq"]))
            self.print_reply(message["body"])
            for status in ("delivered", "read"):
                response = await self._post(self.status_body(message["id"], status))
                if response.status_code != 200:
                    self.out.write(
                        f"  (the ingress answered {response.status_code} to the {status} status)\n"
                    )
        return messages

    def print_reply(self, body: str) -> None:
        lines = [textwrap.fill(line, width=88) if line else "" for line in body.splitlines()] or [""]
        self.out.write("\rbot> " + "\n     ".join("\n".join(lines).splitlines()) + "\n" + self.prompt)
        self.out.flush()

    async def converse(self, lines: AsyncIterator[str], *, poll_interval: float = 0.3) -> None:
        """Send every line from ``lines`` while printing replies, until ``/quit`` or the end."""
        await self.skip_history()
        stop = asyncio.Event()

        async def poller() -> None:
            while not stop.is_set():
                try:
                    await self.poll()
                except httpx.HTTPError as exc:
                    self.out.write(
                        f"  (sandbox unreachable: {type(exc).__name__}; is `chatmill dev` running?)\n"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_interval)

        task = asyncio.create_task(poller())
        try:
            async for line in lines:
                text = line.strip()
                if text in ("/quit", "/exit"):
                    break
                if not text:
                    continue
                try:
                    await self.say(text)
                except (ChatError, httpx.HTTPError) as exc:
                    self.out.write(f"  (not delivered: {exc})\n")
        finally:
            stop.set()
            await task
            await self.poll()  # whatever arrived meanwhile


class ChatError(RuntimeError):
    """The ingress refused a webhook."""


async def _stdin_lines(prompt: str) -> AsyncIterator[str]:
    """Lines typed on stdin, read by a daemon thread (so Ctrl-C never waits for a pending read)."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[str] = asyncio.Queue()

    def read() -> None:
        while True:
            line = sys.stdin.readline()
            with contextlib.suppress(RuntimeError):  # the loop is gone: we are exiting
                loop.call_soon_threadsafe(lines.put_nowait, line)
            if not line:
                return

    threading.Thread(target=read, name="chat-stdin", daemon=True).start()
    while True:
        print(prompt, end="", flush=True)
        line = await lines.get()
        if not line:
            return
        yield line


def register(commands: Any) -> None:
    chat = commands.add_parser("chat", help="play a WhatsApp customer in the terminal (against chatmill dev)")
    chat.add_argument("--wa-id", help=f"the customer's number (default {DEFAULT_WA_ID})")
    chat.add_argument("--name", help=f"the customer's profile name (default {DEFAULT_NAME!r})")
    chat.add_argument(
        "--phone-number-id", help=f"the business number (default {DEMO_PHONE_NUMBER_ID}, the demo)"
    )
    chat.add_argument("--ingress-url", help="default http://HOST:INGRESS_PORT")
    chat.add_argument("--sandbox-url", help="default http://HOST:SANDBOX_PORT")


def run(settings: Settings, args: argparse.Namespace) -> int:
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per poll otherwise

    async def main() -> None:
        async with httpx.AsyncClient(timeout=10.0) as http:
            session = ChatSession.from_settings(
                settings,
                http,
                wa_id=args.wa_id,
                name=args.name,
                phone_number_id=args.phone_number_id,
                ingress_url=args.ingress_url,
                sandbox_url=args.sandbox_url,
            )
            print(
                f"You are {session.name} ({session.wa_id}) writing to {session.phone_number_id}. "
                "Type a message; /quit leaves."
            )
            session.prompt = "you> "
            await session.converse(_stdin_lines(session.prompt))

    asyncio.run(main())
    return 0
