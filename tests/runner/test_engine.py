"""Executing the sample flow (no database): transforms, references, retry, timeout, stop_after_if,
failure_module."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from chatmill.runner import engine
from chatmill.runner.engine import FlowExecutor, Outcome
from chatmill.runner.flowfile import Flow, load_workspace
from chatmill.runner.references import ReferenceNotFound, References, postgres_resource
from tests.conftest import make_settings

WORKSPACE = Path(__file__).parent / "fixtures" / "workspace"
DATABASE_URL = "postgresql://chatmill:s3cret@db.internal:6543/chatmill?sslmode=require"


class MemoryRecorder:
    def __init__(self) -> None:
        self.steps: list[dict[str, Any]] = []

    async def step_started(self, step_id: str, position: int, attempt: int, inputs: dict[str, Any]) -> None:
        self.steps.append({"step_id": step_id, "position": position, "attempt": attempt, "inputs": inputs})

    async def step_finished(
        self, step_id: str, attempt: int, status: str, result: Any, error: dict[str, Any] | None
    ) -> None:
        step = next(s for s in reversed(self.steps) if s["step_id"] == step_id and s["attempt"] == attempt)
        step.update(status=status, result=result, error=error)


@pytest.fixture(scope="module")
def sample() -> Flow:
    return load_workspace(WORKSPACE)["f/rt/sample"]


def _run(flow: Flow, args: dict[str, Any]) -> tuple[Outcome, MemoryRecorder, list[float]]:
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:  # retry delays, recorded instead of waited
        sleeps.append(seconds)

    settings = make_settings(database_url=DATABASE_URL, runner_workers=7)
    executor = FlowExecutor(WORKSPACE, References(settings), sleep=fake_sleep)
    recorder = MemoryRecorder()
    outcome = asyncio.run(executor.run(flow, args, recorder))
    return outcome, recorder, sleeps


def test_a_successful_run_passes_results_along_and_resolves_references(sample: Flow, tmp_path: Path) -> None:
    outcome, recorder, sleeps = _run(sample, {"name": "Ana", "state_dir": str(tmp_path), "failures": 2})
    assert outcome.status == "success", outcome.error
    assert outcome.result == {
        "greeting": "hello Ana",
        "db_keys": ["dbname", "host", "password", "port", "sslmode", "user"],
        "db_has_password_key": True,
        "graph_url": "http://127.0.0.1:8003",
        "workers": 7,
        "count": 3,
    }
    assert outcome.results["prepare"] == {
        "greeting": "hello Ana",
        "stop": False,
        "count": 1,
        "label": "sample",
    }
    # flow_input.sleep is undefined: the parameter is left out and its default applies.
    assert outcome.results["slow"] == {"slept": 0.0, "previous": {"attempt": 3}}
    # flaky failed twice, then succeeded on its third attempt (two constant retries of 0 s).
    flaky = [(s["attempt"], s["status"]) for s in recorder.steps if s["step_id"] == "flaky"]
    assert flaky == [(1, "failure"), (2, "failure"), (3, "success")]
    assert sleeps == [0.0, 0.0]
    # Recorded inputs keep the references, never the resolved secrets.
    echo = next(s for s in recorder.steps if s["step_id"] == "echo")
    assert echo["inputs"]["db"] == "$res:f/chatmill/postgres"
    assert echo["inputs"]["graph_url"] == "$var:f/chatmill/graph_url"
    assert "s3cret" not in repr(recorder.steps)


def test_stop_after_if_ends_the_flow_early(sample: Flow, tmp_path: Path) -> None:
    outcome, recorder, _ = _run(sample, {"name": "stop", "state_dir": str(tmp_path)})
    assert (outcome.status, outcome.stopped_at, outcome.skipped) == ("success", "prepare", True)
    assert [s["step_id"] for s in recorder.steps] == ["prepare"]
    outcome, recorder, _ = _run(sample, {"name": "stop", "never_stop": True, "state_dir": str(tmp_path)})
    assert (outcome.status, outcome.stopped_at) == ("success", None)
    assert [s["step_id"] for s in recorder.steps] == ["prepare", "flaky", "slow", "echo"]


def test_exhausted_retries_run_the_failure_module(sample: Flow, tmp_path: Path) -> None:
    outcome, recorder, _ = _run(sample, {"name": "Bo", "state_dir": str(tmp_path), "failures": 5})
    assert outcome.status == "failure"
    assert outcome.error is not None
    assert (outcome.error["step_id"], outcome.error["name"]) == ("flaky", "RuntimeError")
    assert outcome.result == {
        "handled_step": "flaky",
        "error_name": "RuntimeError",
        "message": "flaky failure 3",
        "name": "Bo",
        "prepared": {"greeting": "hello Bo", "stop": False, "count": 1, "label": "sample"},
    }
    assert [s["step_id"] for s in recorder.steps] == ["prepare", "flaky", "flaky", "flaky", "failure"]


def test_a_step_timeout_fails_the_step_without_blocking(sample: Flow, tmp_path: Path) -> None:
    before = engine.abandoned_threads()
    outcome, _recorder, _ = _run(sample, {"name": "Cy", "state_dir": str(tmp_path), "sleep": 30})
    assert outcome.status == "failure"
    assert outcome.error is not None
    assert (outcome.error["step_id"], outcome.error["name"]) == ("slow", "TimeoutError")
    assert "timed out after 1 s" in outcome.error["message"]
    assert outcome.result is not None
    assert outcome.result["handled_step"] == "slow"
    assert engine.abandoned_threads() == before + 1


def test_unknown_references_fail_the_run_clearly() -> None:
    references = References(make_settings(database_url=DATABASE_URL))
    with pytest.raises(ReferenceNotFound, match="unknown resource"):
        references.resolve("$res:f/chatmill/redis")
    with pytest.raises(ReferenceNotFound, match="Settings has no field 'nope'"):
        references.resolve({"x": ["$var:f/chatmill/nope"]})
    with pytest.raises(ReferenceNotFound, match="variables live under"):
        references.resolve("$var:u/me/x")
    assert references.resolve("$var:f/chatmill/whatsapp_app_secret") == "dev-whatsapp-app-secret"
    assert references.resolve("$var:f/chatmill/cors_origins") == ""
    assert references.resolve("$var:f/chatmill/openai_api_key") == ""  # unset
    assert references.resolve({"keep": "plain", "n": 1}) == {"keep": "plain", "n": 1}


def test_postgres_resource_from_tcp_and_unix_socket_urls() -> None:
    assert postgres_resource("postgresql://postgres:@/chatmill?host=/tmp/pg") == {
        "host": "/tmp/pg",
        "port": 5432,
        "user": "postgres",
        "password": "",
        "dbname": "chatmill",
        "sslmode": "prefer",
    }
    assert postgres_resource(DATABASE_URL) == {
        "host": "db.internal",
        "port": 6543,
        "user": "chatmill",
        "password": "s3cret",
        "dbname": "chatmill",
        "sslmode": "require",
    }


def test_an_async_main_runs_too(tmp_path: Path) -> None:
    folder = tmp_path / "f" / "a" / "x__flow"
    folder.mkdir(parents=True)
    (folder / "flow.yaml").write_text(
        "summary: async\nvalue:\n  modules:\n    - id: wait\n      value:\n        type: rawscript\n"
        "        language: python3\n        content: '!inline wait.py'\n        input_transforms:\n"
        "          n: {type: javascript, expr: flow_input.n}\n"
    )
    (folder / "wait.py").write_text(
        "import asyncio\n\nasync def main(n: int) -> int:\n    await asyncio.sleep(0.01)\n    return n * 2\n"
    )
    flow = load_workspace(tmp_path)["f/a/x"]
    executor = FlowExecutor(tmp_path, References(make_settings(database_url=DATABASE_URL)))
    outcome = asyncio.run(executor.run(flow, {"n": 21}, MemoryRecorder()))
    assert (outcome.status, outcome.result) == ("success", 42)
