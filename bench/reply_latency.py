"""Reply latency end to end in embedded mode: webhook → ingress → relay → local runner → sandbox.

    .venv/bin/python bench/reply_latency.py [--messages 1000] [--contacts 100] [--rate 10]

Offline providers, debounce 0. Starts the embedded PostgreSQL and Redis in a temporary directory,
migrates a fresh database, creates one channel, then sends ``--messages`` signed webhooks from
``--contacts`` customers at ``--rate`` messages per second (round robin, so one customer writes
every contacts/rate seconds). A message's latency runs from its webhook POST to the sandbox
accepting the first part of the reply to its turn (a customer's messages that arrive while their
previous reply is on its way are answered together). Prints p50/p95/p99; ``lost`` counts messages
without a reply, ``duplicates`` sends the sandbox accepted beyond the parts we recorded — both must
be 0. Target: p95 <= 500 ms. Everything (ingress, runner, sandbox) runs in this one process, as in
``chatmill dev``.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "windmill_scripts")]

from chatmill.embedded import embedded_services  # noqa: E402
from chatmill.migrations import apply_migrations  # noqa: E402
from chatmill.settings import Settings  # noqa: E402
from tests.flows.stack import running_stack  # noqa: E402
from tests.webhooks import SAMPLE_PHONE_NUMBER_ID, change, encode, envelope, signed_headers, text_message  # noqa: E402

QUESTIONS = [
    "When are you open on Saturday?",
    "Do you deliver?",
    "How much is a custom cake?",
    "Is the bread vegan?",
]


def _database(server_url: str) -> str:
    name = f"chatmill_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(server_url, dbname=name)
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        org = conn.execute(
            "INSERT INTO organizations (name, billing_tier) VALUES ('Bench', 'enterprise') RETURNING id"
        ).fetchone()
        assert org is not None
        bot = conn.execute(
            "INSERT INTO chatbots (organization_id, name, debounce_ms, rate_limit_per_minute) VALUES (%s, 'Bench', 0, 1000)"
            " RETURNING id",
            (org[0],),
        ).fetchone()
        assert bot is not None
        from f.chatmill.lib.secretbox import SecretBox

        from chatmill.settings import DEV_ENCRYPTION_KEY

        token = SecretBox([DEV_ENCRYPTION_KEY]).encrypt("bench-token")
        conn.execute(
            "INSERT INTO whatsapp_channels (organization_id, chatbot_id, phone_number_id, access_token_encrypted,"
            " access_token_hint) VALUES (%s, %s, %s, %s, '…oken')",
            (org[0], bot[0], SAMPLE_PHONE_NUMBER_ID, token),
        )
    return url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--contacts", type=int, default=100)
    parser.add_argument("--rate", type=float, default=10.0)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="chatmill-bench-") as tmp,
        embedded_services(Path(tmp), database_url=None, redis_url=None) as urls,
    ):
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None,
            chatmill_env="test",
            database_url=_database(urls.database_url),
            redis_url=urls.redis_url,
            log_level="WARNING",
        )
        sent: dict[str, float] = {}
        with running_stack(settings) as stack, httpx.Client() as http:
            secret = settings.whatsapp_app_secret.get_secret_value()
            started = time.monotonic()
            for n in range(args.messages):
                due = started + n / args.rate
                time.sleep(max(0.0, due - time.monotonic()))
                wa_id = f"1555{n % args.contacts:07d}"
                wamid = f"wamid.bench.{n}.{secrets.token_hex(4)}"
                body = encode(
                    envelope(
                        [
                            change(
                                messages=[
                                    text_message(
                                        wamid,
                                        QUESTIONS[n % len(QUESTIONS)],
                                        wa_id=wa_id,
                                        timestamp=int(time.time()),
                                    )
                                ]
                            )
                        ]
                    )
                )
                sent[wamid] = time.time()
                response = http.post(
                    f"{stack.ingress_url}/webhook/whatsapp",
                    content=body,
                    headers=signed_headers(body, secret),
                )
                assert response.status_code == 200, response.text
            deadline = time.monotonic() + 60
            with psycopg.connect(settings.database_url or "") as conn:
                while time.monotonic() < deadline:
                    open_messages = conn.execute(
                        "SELECT count(*) FROM messages WHERE direction = 'inbound' AND answered_at IS NULL"
                    ).fetchone()
                    if open_messages is not None and open_messages[0] == 0:
                        break
                    time.sleep(0.5)
            time.sleep(2)  # anything late would be a duplicate
            replies = http.get(f"{stack.sandbox_url}/sandbox/messages").json()["messages"]
        # Each inbound message belongs to one turn; the turn's first part names the turn's last message.
        with psycopg.connect(settings.database_url or "") as conn:
            rows = conn.execute(
                "SELECT i.wamid, i.answer_outcome, o.wamid AS reply_wamid FROM messages i"
                " LEFT JOIN messages o ON o.turn_id = i.turn_id AND o.direction = 'outbound' AND o.part_index = 0"
                " WHERE i.direction = 'inbound'"
            ).fetchall()
            recorded = conn.execute(
                "SELECT count(*) FROM messages WHERE direction = 'outbound' AND wamid IS NOT NULL"
            ).fetchone()
    accepted_at = {reply["id"]: reply["received_at"] for reply in replies}
    latencies = sorted(
        (accepted_at[reply_wamid] - sent[wamid]) * 1000
        for wamid, outcome, reply_wamid in rows
        if outcome == "replied" and reply_wamid in accepted_at and wamid in sent
    )
    lost = len(sent) - len(latencies)
    duplicates = len(replies) - (recorded[0] if recorded else 0)  # sends Meta accepted that we did not record
    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    result = {
        "messages": args.messages,
        "contacts": args.contacts,
        "rate_per_second": args.rate,
        "p50_ms": round(quantiles[49], 1),
        "p95_ms": round(quantiles[94], 1),
        "p99_ms": round(quantiles[98], 1),
        "max_ms": round(latencies[-1], 1) if latencies else None,
        "lost": lost,
        "duplicates": duplicates,
    }
    print(f"messages {args.messages} from {args.contacts} contacts at {args.rate}/s")
    print(
        f"reply latency  p50 {result['p50_ms']} ms   p95 {result['p95_ms']} ms   p99 {result['p99_ms']} ms   max {result['max_ms']} ms"
    )
    print(
        f"lost {lost}   duplicate replies {duplicates}   target p95 <= 500 ms: {'met' if result['p95_ms'] <= 500 else 'NOT met'}"
    )
    print("JSON " + json.dumps(result))
    return 0 if lost == 0 and duplicates == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
