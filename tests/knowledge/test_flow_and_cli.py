"""The ingest_source flow step (its main()), its Windmill files, and the knowledge CLI commands."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from f.chatmill.lib.providers import EmbeddingConfig
from f.chatmill.lib.reembedding import ReembedError, reembed_chatbot
from f.chatmill.lib.retrieval import retrieve
from psycopg.conninfo import conninfo_to_dict

from chatmill import knowledge_cli
from chatmill.cli import build_parser
from chatmill.settings import Settings
from tests import factories
from tests.knowledge.conftest import Site
from tests.knowledge.llm_server import Reply, llm_server

REPO = Path(__file__).resolve().parents[2]
FLOW_DIR = REPO / "windmill_scripts/f/chatmill/ingest_source__flow"


def _step() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ingest_step", FLOW_DIR / "ingest.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _resource(database_url: str) -> dict[str, Any]:
    info = conninfo_to_dict(database_url)
    return {
        key: info[key] for key in ("host", "port", "user", "dbname", "password") if info.get(key) is not None
    }


def test_the_flow_step_ingests_a_source_and_resyncs_due_ones(db: factories.Conn, database_url: str) -> None:
    bot = factories.create_chatbot(db, factories.create_organization(db))
    source = factories.create_knowledge_source(
        db, bot, file_name="a.txt", file_content=b"Fresh bread every morning."
    )
    result = _step().main(_resource(database_url), source_id=str(source["id"]))
    assert (result["status"], result["chunks"], result["embedded"]) == ("ready", 1, 1)

    db.execute(
        "UPDATE knowledge_sources SET sync_interval = '1 hour', next_sync_at = now() - interval '1 minute' WHERE id = %s",
        (source["id"],),
    )
    resync = _step().main(_resource(database_url), source_id="")
    assert resync["resynced"] == 1
    assert resync["results"][0]["embedded"] == 0  # unchanged: nothing re-embedded
    row = db.execute(
        "SELECT next_sync_at > now() + interval '50 minutes' AS later FROM knowledge_sources WHERE id = %s",
        (source["id"],),
    ).fetchone()
    assert row == {"later": True}
    assert _step().main(_resource(database_url), source_id="")["resynced"] == 0


def test_the_flow_files_wire_the_step_inputs() -> None:
    flow = yaml.safe_load((FLOW_DIR / "flow.yaml").read_text())
    step = flow["value"]["modules"][0]
    transforms = step["value"]["input_transforms"]
    assert transforms["db"] == {"type": "static", "value": "$res:f/chatmill/postgres"}
    for name in ("embedding_provider", "openai_api_key", "gemini_api_key", "llm_timeout_seconds"):
        assert transforms[name] == {"type": "static", "value": f"$var:f/chatmill/{name}"}
        assert name in Settings.model_fields
    lock = (FLOW_DIR / "ingest.lock").read_text().splitlines()
    assert lock[0] == "# py: 3.11"
    assert all("==" in line for line in lock[1:])
    schedule = yaml.safe_load((FLOW_DIR.parent / "ingest_source_resync.schedule.yaml").read_text())
    assert (schedule["script_path"], schedule["is_flow"], schedule["args"]["source_id"]) == (
        "f/chatmill/ingest_source",
        True,
        "",
    )


def test_cli_ingest_eval_and_reembed_are_registered() -> None:
    parser = build_parser()
    assert parser.parse_args(["ingest", "x.md", "--chatbot", "b"]).command == "ingest"
    assert parser.parse_args(["eval", "retrieval", "--set", "d"]).eval_kind == "retrieval"
    assert parser.parse_args(["reembed", "--chatbot", "b", "--model", "offline"]).model == "offline"


def _cli(settings: Settings, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": "/usr/bin:/bin",
        "DATABASE_URL": str(settings.database_url),
        "CHATMILL_ENV": "test",
        "CHATMILL_DATA_DIR": str(settings.chatmill_data_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "chatmill", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=120,
        check=False,
    )


def test_chatmill_ingest_shows_progress_and_stores_the_source(
    db: factories.Conn, settings: Settings, tmp_path: Path
) -> None:
    bot = factories.create_chatbot(db, factories.create_organization(db))
    document = tmp_path / "hours.md"
    document.write_text("# Hours\n\nOpen from 7:00 to 19:00.\n\n# Parking\n\nFree parking behind the shop.\n")
    done = _cli(settings, "ingest", str(document), "--chatbot", str(bot["id"]))
    assert done.returncode == 0, done.stderr
    assert "ingesting hours.md [##############################] 1/1" in done.stderr
    assert "ready: 1 document(s), 2 chunk(s), 2 embedded" in done.stdout
    row = db.execute(
        "SELECT status, chunk_count FROM knowledge_sources WHERE chatbot_id = %s", (bot["id"],)
    ).fetchone()
    assert row == {"status": "ready", "chunk_count": 2}
    broken = tmp_path / "fake.pdf"
    broken.write_bytes(b"not a pdf")
    failed = _cli(settings, "ingest", str(broken), "--chatbot", str(bot["id"]))
    assert failed.returncode == 1
    assert "is not a PDF file" in failed.stderr


def test_chatmill_eval_retrieval_prints_a_table_and_json(
    db: factories.Conn, settings: Settings, tmp_path: Path
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "delivery.md").write_text("# Delivery\n\nWe deliver to your home within 10 km.\n")
    (tmp_path / "docs" / "payment.txt").write_text("We accept cash and credit cards.")
    (tmp_path / "questions.jsonl").write_text(
        json.dumps({"question": "do you bring orders to my house?", "expected": ["delivery.md"]})
        + "\n"
        + json.dumps({"question": "can I pay by card?", "expected": ["payment.txt"]})
        + "\n"
    )
    done = _cli(settings, "eval", "retrieval", "--set", str(tmp_path))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0].split() == ["questions", "2"]
    assert any(line.startswith("recall@1") for line in lines)
    report = json.loads(lines[-1])
    assert report == {
        "questions": 2,
        "embedding_model": "offline",
        "chunks": 2,
        "recall@1": 1.0,
        "recall@5": 1.0,
        "recall@10": 1.0,
        "mrr": 1.0,
    }
    # the throwaway organization is gone
    assert db.execute("SELECT count(*) AS n FROM organizations").fetchone() == {"n": 0}


def test_reembed_moves_a_chatbot_to_another_model_while_it_keeps_answering(db: factories.Conn) -> None:
    bot = factories.create_chatbot(db, factories.create_organization(db))
    source = factories.create_knowledge_source(
        db,
        bot,
        file_name="faq.md",
        file_content=b"# Delivery\n\nWe deliver within 10 km.\n\n# Payment\n\nCards accepted.\n",
    )
    from f.chatmill.lib.ingestion import ingest_source

    ingest_source(db, source["id"])
    scope = {"organization_id": bot["organization_id"], "chatbot_id": bot["id"]}

    def fake_vectors(request_count: int) -> dict[str, Any]:
        data = [
            {"object": "embedding", "index": i, "embedding": [1.0, float(i), 0.5]}
            for i in range(request_count)
        ]
        return {
            "object": "list",
            "data": data,
            "model": "emb-3",
            "usage": {"prompt_tokens": 1, "total_tokens": 1},
        }

    seen: list[list[str]] = []

    def progress(done: int, total: int) -> None:
        # mid-move the chatbot still answers with the old model
        seen.append([hit.heading or "" for hit in retrieve(db, **scope, query="delivery")])

    with llm_server([Reply(200, fake_vectors(1)), Reply(200, fake_vectors(2))]) as server:
        target = EmbeddingConfig(
            provider="openai", model="emb-3", api_key="k", base_url=server.base_url + "/v1"
        )
        outcome = reembed_chatbot(db, **scope, target=target, progress=progress)
    assert (outcome["model"], outcome["chunks"]) == ("openai:emb-3", 2)
    assert seen
    assert seen[0][0] == "Delivery"
    models = db.execute(
        "SELECT DISTINCT embedding_model, next_embedding_model FROM knowledge_chunks WHERE chatbot_id = %s",
        (bot["id"],),
    ).fetchall()
    assert models == [{"embedding_model": "openai:emb-3", "next_embedding_model": None}]
    assert db.execute("SELECT embedding_model FROM chatbots WHERE id = %s", (bot["id"],)).fetchone() == {
        "embedding_model": "openai:emb-3"
    }
    move = db.execute(
        "SELECT status, progress_done, to_model FROM knowledge_reembeds WHERE chatbot_id = %s", (bot["id"],)
    ).fetchone()
    assert move == {"status": "done", "progress_done": 2, "to_model": "openai:emb-3"}
    stats = db.execute(
        "SELECT embedding_model, chunk_count FROM knowledge_chunk_stats WHERE chatbot_id = %s", (bot["id"],)
    ).fetchall()
    assert stats == [{"embedding_model": "openai:emb-3", "chunk_count": 2}]


def test_reembed_refuses_a_chatbot_of_another_organization(db: factories.Conn) -> None:
    bot = factories.create_chatbot(db, factories.create_organization(db))
    other = factories.create_organization(db)
    with pytest.raises(ReembedError, match="no such chatbot"):
        reembed_chatbot(db, organization_id=other["id"], chatbot_id=bot["id"], target=EmbeddingConfig())


def test_progress_bar_prints_plain_lines_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    bar = knowledge_cli.ProgressBar("work", width=4)
    bar(1, 2)
    bar(2, 2)
    assert capsys.readouterr().err.splitlines() == ["work [##..] 1/2", "work [####] 2/2"]


class _Steps:
    """A StepRecorder for the local runner's executor."""

    def __init__(self) -> None:
        self.finished: list[tuple[str, str, Any]] = []

    async def step_started(self, step_id: str, position: int, attempt: int, inputs: dict[str, Any]) -> None:
        return None

    async def step_finished(
        self, step_id: str, attempt: int, status: str, result: Any, error: dict[str, Any] | None
    ) -> None:
        self.finished.append((step_id, status, result if error is None else error))


def test_the_local_runner_runs_the_flow_and_reads_its_schedule(
    db: factories.Conn, settings: Settings
) -> None:
    import asyncio

    from chatmill.runner.engine import FlowExecutor
    from chatmill.runner.flowfile import load_workspace
    from chatmill.runner.references import References
    from chatmill.runner.schedules import load_schedules

    workspace = REPO / "windmill_scripts"
    bot = factories.create_chatbot(db, factories.create_organization(db))
    source = factories.create_knowledge_source(
        db, bot, file_name="a.md", file_content=b"# Hours\n\nOpen at 7."
    )
    flow = load_workspace(workspace)["f/chatmill/ingest_source"]
    steps = _Steps()
    outcome = asyncio.run(
        FlowExecutor(workspace, References(settings)).run(flow, {"source_id": str(source["id"])}, steps)
    )
    assert outcome.status == "success", outcome.error
    assert outcome.result["status"] == "ready"
    assert steps.finished[0][:2] == ("ingest", "success")
    schedules = {schedule.path: schedule for schedule in load_schedules(workspace)}
    assert "f/chatmill/ingest_source_resync" in schedules


def test_chatmill_ingest_crawls_a_site(db: factories.Conn, settings: Settings, site: Site) -> None:
    site.page(
        "/",
        '<html><body><main><h1>Home</h1><p>Fresh bread daily.</p><a href="/cakes">cakes</a></main></body></html>',
    )
    site.page("/cakes", "<html><body><main><h1>Cakes</h1><p>Order two days ahead.</p></main></body></html>")
    bot = factories.create_chatbot(db, factories.create_organization(db))
    done = _cli(settings, "ingest", site.url("/"), "--crawl", "--max-pages", "5", "--chatbot", str(bot["id"]))
    assert done.returncode == 0, done.stderr
    assert "ready: 2 document(s), 2 chunk(s)" in done.stdout
    row = db.execute(
        "SELECT kind, options FROM knowledge_sources WHERE chatbot_id = %s", (bot["id"],)
    ).fetchone()
    assert row is not None
    assert (row["kind"], row["options"]["max_pages"]) == ("crawl", 5)
