"""Ingress throughput and ack latency on loopback, against the same server's bare-endpoint ceiling.

    .venv/bin/python bench/ingress_webhooks.py [--seconds 15] [--connections 32]

Needs `wrk` (Debian: `apt-get install wrk`). Starts the embedded PostgreSQL and Redis in a temporary
directory (or uses BENCH_DATABASE_URL / BENCH_REDIS_URL), migrates a fresh database, creates one
channel, then runs `chatmill serve ingress` (one process, relay on, local runner queue) and drives it
with wrk:

1. baseline: GET /health/live (no database work) — the HTTP ceiling of this server on this machine;
2. webhooks: unique signed text-message webhooks from 1,000 contacts.

Every webhook answered 200 must be a committed message row: the script counts them afterwards and
fails if one is missing. Prints a table and a JSON line; the target is >= 2,000 webhooks/s with
p99 <= 50 ms on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "windmill_scripts")]

from chatmill.embedded import embedded_services  # noqa: E402
from chatmill.migrations import apply_migrations  # noqa: E402
from chatmill.settings import DEV_WHATSAPP_APP_SECRET  # noqa: E402
from ingress.signature import sign  # noqa: E402

PHONE_NUMBER_ID = "106540352242922"

WRK_SCRIPT = """
local sigs, bodies, n, i = {}, {}, 0, 0
local path = os.getenv("BENCH_BODIES")
if path then
  for line in io.lines(path) do
    local tab = line:find("\\t", 1, true)
    n = n + 1
    sigs[n] = line:sub(1, tab - 1)
    bodies[n] = line:sub(tab + 1)
  end
end
request = function()
  if n == 0 then return wrk.format("GET", "/health/live") end
  i = i + 1
  if i > n then i = 1 end
  return wrk.format("POST", "/webhook/whatsapp",
    {["Content-Type"] = "application/json", ["X-Hub-Signature-256"] = sigs[i]}, bodies[i])
end
done = function(summary, latency, requests)
  io.write(string.format('RESULT {"requests": %d, "seconds": %.3f, "non_2xx": %d, "errors": %d, ' ..
    '"p50_ms": %.3f, "p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f}\\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
"""


def _body(n: int) -> bytes:
    wa_id = f"1555{n % 1000:07d}"
    document = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "field": "messages",
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": PHONE_NUMBER_ID,
                            },
                            "contacts": [{"profile": {"name": f"Customer {n % 1000}"}, "wa_id": wa_id}],
                            "messages": [
                                {
                                    "from": wa_id,
                                    "id": f"wamid.bench.{n}.{secrets.token_hex(6)}",
                                    "timestamp": str(int(time.time())),
                                    "type": "text",
                                    "text": {"body": f"Hello, do you deliver on Saturday? (#{n})"},
                                }
                            ],
                        },
                    }
                ],
            }
        ],
    }
    return json.dumps(document).encode()


def _prepare_database(server_url: str) -> str:
    name = f"chatmill_bench_{secrets.token_hex(4)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = make_conninfo(server_url, dbname=name)
    apply_migrations(url)
    with psycopg.connect(url) as conn:
        org = conn.execute("INSERT INTO organizations (name) VALUES ('Bench') RETURNING id").fetchone()
        assert org is not None
        bot = conn.execute(
            "INSERT INTO chatbots (organization_id, name, rate_limit_per_minute) VALUES (%s, 'Bench bot', 10000)"
            " RETURNING id",
            (org[0],),
        ).fetchone()
        assert bot is not None
        conn.execute(
            "INSERT INTO whatsapp_channels (organization_id, chatbot_id, phone_number_id, access_token_encrypted,"
            " access_token_hint) VALUES (%s, %s, %s, 'x', 'x')",
            (org[0], bot[0], PHONE_NUMBER_ID),
        )
    return url


def _wrk(url: str, seconds: int, connections: int, script: Path, bodies: Path | None) -> dict[str, float]:
    env = {**os.environ}
    env.pop("BENCH_BODIES", None)
    if bodies is not None:
        env["BENCH_BODIES"] = str(bodies)
    output = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(script), url],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT "))
    result: dict[str, float] = json.loads(line.removeprefix("RESULT "))
    result["per_second"] = result["requests"] / result["seconds"]
    return result


def _cpu_seconds(ingress_pid: int, data_dir: str) -> dict[str, float]:
    """CPU time used so far by the ingress process and by this run's PostgreSQL server."""

    def used(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system + times.children_user + times.children_system)

    postgres = 0.0
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and data_dir in " ".join(process.info["cmdline"] or []):
            postgres += used(process) + sum(used(child) for child in process.children(recursive=True))
    return {"ingress": used(psutil.Process(ingress_pid)), "postgres": postgres}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="chatmill-bench-") as tmp,
        embedded_services(
            Path(tmp),
            database_url=os.environ.get("BENCH_DATABASE_URL"),
            redis_url=os.environ.get("BENCH_REDIS_URL"),
        ) as urls,
    ):
        database_url = _prepare_database(urls.database_url)
        port = 18000 + secrets.randbelow(1000)
        env = {
            **os.environ,
            "CHATMILL_ENV": "test",
            "DATABASE_URL": database_url,
            "REDIS_URL": urls.redis_url,
            "INGRESS_PORT": str(port),
            "LOG_LEVEL": "WARNING",
            "DB_POOL_MAX_SIZE": "20",
        }
        server = subprocess.Popen([sys.executable, "-m", "chatmill", "serve", "ingress"], env=env, cwd=tmp)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("ingress did not become ready")
                time.sleep(0.2)
            script = Path(tmp) / "bench.lua"
            script.write_text(WRK_SCRIPT)
            bodies = Path(tmp) / "bodies.tsv"
            count = 6000 * args.seconds  # more than can be sent: every request is a new message
            with bodies.open("w") as handle:
                for n in range(count):
                    body = _body(n)
                    handle.write(f"{sign(DEV_WHATSAPP_APP_SECRET, body)}\t{body.decode()}\n")
            baseline = _wrk(base, args.seconds, args.connections, script, None)
            before = _cpu_seconds(server.pid, tmp)
            webhooks = _wrk(base, args.seconds, args.connections, script, bodies)
            after = _cpu_seconds(server.pid, tmp)
            cpu_ms = {
                part: 1000 * (after[part] - before[part]) / max(1, webhooks["requests"]) for part in after
            }
        finally:
            server.terminate()
            server.wait(timeout=30)
        with psycopg.connect(database_url) as conn:
            stored = conn.execute("SELECT count(*) FROM messages").fetchone()
            outbox = conn.execute("SELECT count(*) FROM inbound_outbox").fetchone()
        assert stored is not None
        assert outbox is not None
        answered_ok = int(webhooks["requests"] - webhooks["non_2xx"] - webhooks["errors"])

    print(f"{'':24}{'requests/s':>12}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}{'max ms':>9}{'non-2xx':>9}")
    for name, result in (("GET /health/live", baseline), ("POST /webhook/whatsapp", webhooks)):
        print(
            f"{name:24}{result['per_second']:12.0f}{result['p50_ms']:9.2f}{result['p90_ms']:9.2f}"
            f"{result['p99_ms']:9.2f}{result['max_ms']:9.1f}{int(result['non_2xx']):9d}"
        )
    print(
        f"webhooks answered 200: {answered_ok}; message rows committed: {stored[0]}; outbox rows: {outbox[0]}"
    )
    print(
        f"CPU per webhook: ingress process {cpu_ms['ingress']:.2f} ms, PostgreSQL {cpu_ms['postgres']:.2f} ms "
        f"(this machine has {psutil.cpu_count()} cores)"
    )
    ratio = webhooks["per_second"] / baseline["per_second"]
    print(f"webhook throughput is {ratio:.0%} of this server's bare-endpoint ceiling")
    target_met = webhooks["per_second"] >= 2000 and webhooks["p99_ms"] <= 50
    print(f"target (>= 2000/s, p99 <= 50 ms): {'met' if target_met else 'NOT met'}")
    print(
        "JSON "
        + json.dumps({"baseline": baseline, "webhooks": webhooks, "stored": stored[0], "cpu_ms": cpu_ms})
    )
    # wrk may count a request it sent as the run ended without its answer; the server may have stored it.
    if stored[0] < answered_ok:
        print("ERROR: a webhook was acknowledged without being stored", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
