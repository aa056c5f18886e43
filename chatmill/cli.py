"""The ``chatmill`` command line.

    chatmill dev          embedded services + migrations + every app, in one process tree
    chatmill serve APP    one app (ingress | api) for production, behind a process manager
    chatmill migrate      apply pending migrations (idempotent; used at container start-up)
    chatmill seed-demo    a demo organization, owner, chatbot, WhatsApp channel and knowledge
    chatmill ingest       ingest a file, URL or site into a chatbot (chatmill.knowledge_cli)
    chatmill eval retrieval   recall@k and MRR of a retrieval evaluation set
    chatmill reembed      move a chatbot to another embedding model without downtime
    chatmill runs [--failed] [ID]   the local runner's recent flow runs, or one run with its steps
    chatmill chat         play a WhatsApp customer in the terminal against `chatmill dev`

Every command builds one ``Settings`` from the environment (and ``.env``). With ``DATABASE_URL`` /
``REDIS_URL`` unset, the embedded servers under ``CHATMILL_DATA_DIR`` are used (and started if no
other Chatmill process runs them).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType

from pydantic import ValidationError

from chatmill import chat, devserver, knowledge_cli
from chatmill.embedded import EmbeddedServiceError, embedded_database, embedded_services
from chatmill.migrations import MigrationError, apply_migrations
from chatmill.runner import cli as runner_cli
from chatmill.settings import Settings, SettingsError

_log = logging.getLogger("chatmill")


def _load_settings() -> Settings:
    try:
        return Settings()
    except (ValidationError, SettingsError) as exc:
        raise SystemExit(f"chatmill: configuration error: {_first_error(exc)}") from None


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors()[0]
        location = ".".join(str(part) for part in error["loc"]).upper() or "settings"
        return f"{location}: {error['msg']}"
    return str(exc)


def _resolved(settings: Settings, database_url: str, redis_url: str) -> Settings:
    return settings.model_copy(update={"database_url": database_url, "redis_url": redis_url})


def _cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    with embedded_database(settings.chatmill_data_dir, settings.database_url) as database_url:
        applied = apply_migrations(database_url)
    if applied:
        for migration in applied:
            print(f"applied {migration.filename}")
    else:
        print("database is up to date")
    return 0


def _cmd_seed_demo(settings: Settings, args: argparse.Namespace) -> int:
    from chatmill.seed import seed_demo

    if not settings.is_development:
        raise SystemExit("chatmill: seed-demo creates a demo login with a known password; development only")
    with embedded_database(settings.chatmill_data_dir, settings.database_url) as database_url:
        apply_migrations(database_url)
        demo = seed_demo(database_url, settings)
    print(demo.describe(settings))
    return 0


def _cmd_dev(settings: Settings, args: argparse.Namespace) -> int:
    with embedded_services(
        settings.chatmill_data_dir, database_url=settings.database_url, redis_url=settings.redis_url
    ) as urls:
        applied = apply_migrations(urls.database_url)
        if applied:
            print(f"applied {len(applied)} migration(s), newest {applied[-1].filename}")
        resolved = _resolved(settings, urls.database_url, urls.redis_url)
        specs = list(devserver.app_specs(resolved).values())
        return devserver.run_loop(
            devserver.serve(
                resolved,
                specs,
                on_started=lambda: _print_banner(resolved),
                background=devserver.background_tasks(resolved),
            )
        )


def _cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.host:
        settings = settings.model_copy(update={"host": args.host})
    with embedded_services(
        settings.chatmill_data_dir, database_url=settings.database_url, redis_url=settings.redis_url
    ) as urls:
        resolved = _resolved(settings, urls.database_url, urls.redis_url)
        spec = devserver.app_specs(resolved)[args.app]
        if args.port is not None:
            spec = dataclasses.replace(spec, port=args.port)
        return devserver.run_loop(devserver.serve(resolved, [spec]))


def _print_banner(settings: Settings) -> None:
    host = settings.host
    lines = [
        "",
        "Chatmill is running (embedded mode, offline providers).",
        f"  ingress (WhatsApp webhooks)   http://{host}:{settings.ingress_port}   health: /health/ready",
        f"  management API                http://{host}:{settings.api_port}   docs: /api/docs",
        f"  PostgreSQL                    {_redact(settings.database_url)}",
        f"  Redis                         {settings.redis_url}",
        *_flow_lines(settings),
        "  not yet available: "
        + "; ".join(f"{part} ({owner})" for part, owner in devserver.NOT_YET_AVAILABLE.items()),
        "",
        "First step, in another terminal: create the demo bakery, then write to it as a customer",
        "  .venv/bin/chatmill seed-demo && .venv/bin/chatmill chat",
        "  (ask e.g. 'When are you open on Saturday?'; the replies come from its FAQ)",
        "",
        "Stop with Ctrl-C.",
        "",
    ]
    print("\n".join(lines), flush=True)


def _flow_lines(settings: Settings) -> list[str]:
    lines = []
    if devserver.sandbox_enabled(settings):
        lines.append(
            f"  WhatsApp sandbox (Graph API)  http://{settings.host}:{settings.sandbox_port}   sent: /sandbox/messages"
        )
    if not settings.windmill_url:
        lines.append(
            f"  local flow runner             {settings.runner_workers} workers   history: chatmill runs"
        )
    return lines


def _redact(url: str | None) -> str:
    if url is None:
        return "-"
    prefix, _, rest = url.partition("://")
    if "@" in rest:
        credentials, _, host = rest.rpartition("@")
        user = credentials.split(":", 1)[0]
        return f"{prefix}://{user}@{host}"
    return url


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chatmill", description="Chatmill: an AI assistant on WhatsApp.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("dev", help="run everything on this machine (embedded services, all apps)")
    serve = commands.add_parser("serve", help="run one app (production)")
    serve.add_argument("app", choices=["ingress", "api"])
    serve.add_argument("--host", help="bind address (default HOST)")
    serve.add_argument("--port", type=int, help="port (default INGRESS_PORT / API_PORT)")
    commands.add_parser("migrate", help="apply pending database migrations")
    commands.add_parser("seed-demo", help="create the demo organization, chatbot, channel and knowledge")
    knowledge_cli.register(commands)
    runner_cli.register(commands)
    chat.register(commands)
    metadata = commands.add_parser(
        "windmill-metadata", help="regenerate the Windmill scripts' .script.yaml and locks (offline)"
    )
    metadata.add_argument("--check", action="store_true", help="write nothing; fail if a file is stale")
    return parser


def _cmd_windmill_metadata(settings: Settings, args: argparse.Namespace) -> int:
    from chatmill import windmill_meta

    if args.check:
        stale = windmill_meta.stale()
        for path in stale:
            print(f"stale: {path}")
        return 1 if stale else 0
    for path in windmill_meta.write():
        print(f"wrote {path}")
    return 0


_COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "dev": _cmd_dev,
    "serve": _cmd_serve,
    "migrate": _cmd_migrate,
    "seed-demo": _cmd_seed_demo,
    "ingest": knowledge_cli.run,
    "eval": knowledge_cli.run,
    "reembed": knowledge_cli.run,
    "runs": runner_cli.run,
    "chat": chat.run,
    "windmill-metadata": _cmd_windmill_metadata,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = _load_settings()
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # it narrates every pg_ctl call at INFO
    # SIGTERM unwinds like Ctrl-C, so embedded services are stopped on the way out.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        return _COMMANDS[args.command](settings, args)
    except KeyboardInterrupt:
        return 0
    except (MigrationError, EmbeddedServiceError) as exc:
        print(f"chatmill: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
