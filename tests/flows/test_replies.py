"""Replies through an LLM (a local OpenAI-compatible server), long answers, Cloud API errors, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from chatmill.settings import Settings
from tests import factories
from tests.flows.stack import running_stack
from tests.knowledge.llm_server import LlmServer, Reply, llm_server, openai_text

WA_ID = "15551230000"


@contextmanager
def with_llm(
    settings: Settings, db: factories.Conn, chatbot_id: Any, script: list[Reply]
) -> Iterator[tuple[Settings, LlmServer]]:
    db.execute(
        "UPDATE chatbots SET llm_provider = 'openai', llm_model = 'gpt-test' WHERE id = %s", (chatbot_id,)
    )
    with llm_server(script) as server:
        yield (
            settings.model_copy(
                update={"openai_api_key": "sk-test", "openai_base_url": f"{server.base_url}/v1"}
            ),
            server,
        )


def _wait(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_message_during_generation_gets_its_own_reply_after_the_first(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    script = [Reply(body=openai_text("Answer one"), delay=2.0), Reply(body=openai_text("Answer two"))]
    with (
        with_llm(settings, db, channel["chatbot_id"], script) as (wired, server),
        running_stack(wired) as stack,
    ):
        first = stack.send("What are your opening hours?")
        _wait(lambda: len(server.requests) >= 1)  # the first reply is being generated
        second = stack.send("And do you deliver?")
        replies = stack.wait_replies(2)
        time.sleep(1)
        assert len(stack.replies()) == 2
    assert [(r["body"], r["reply_to"]) for r in replies] == [("Answer one", first), ("Answer two", second)]
    assert replies[0]["seq"] < replies[1]["seq"]
    second_prompt = server.requests[1].body["messages"]
    assert any("Answer one" in str(m.get("content")) for m in second_prompt)  # history carries the first turn
    tokens = db.execute("SELECT prompt_tokens, completion_tokens FROM usage_monthly").fetchone()
    assert tokens == {"prompt_tokens": 22, "completion_tokens": 14}


def test_a_long_answer_arrives_as_ordered_parts_within_the_limit(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    paragraphs = [f"Paragraph {n}: " + "fresh sourdough every morning. " * 30 for n in range(7)]
    answer = "\n\n".join(paragraphs)
    assert len(answer) > 6000
    script = [Reply(body=openai_text(answer))]
    with with_llm(settings, db, channel["chatbot_id"], script) as (wired, _), running_stack(wired) as stack:
        wamid = stack.send("Tell me everything about your bread")
        replies = stack.wait_replies(2)
    assert len(replies) == 2
    assert all(len(r["body"]) <= 4096 for r in replies)
    assert replies[0]["reply_to"] == wamid
    assert replies[1]["reply_to"] is None
    assert " ".join(r["body"] for r in replies).split() == answer.split()


def test_a_pair_rate_limit_is_retried_for_that_recipient(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    with running_stack(settings) as stack:
        stack.fail_next(131056, to=WA_ID)
        stack.send("Hello?")
        [reply] = stack.wait_replies(1)
    assert reply["body"]
    assert db.execute("SELECT answer_outcome FROM messages WHERE direction = 'inbound'").fetchone() == {
        "answer_outcome": "replied"
    }


def test_a_closed_window_is_recorded_and_never_retried(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    with running_stack(settings) as stack:
        stack.fail_next(131047, to=WA_ID, times=1)
        stack.send("Hello?")
        _wait(lambda: db.execute("SELECT failed_at FROM inbound_outbox").fetchone()["failed_at"] is not None)  # type: ignore[index]
        time.sleep(0.5)
        # a retry (or an apology) would have gone through: the injected failure was used up
        assert stack.replies() == []
    part = db.execute("SELECT status, error_code FROM messages WHERE direction = 'outbound'").fetchone()
    assert part == {"status": "failed", "error_code": 131047}
    run = db.execute("SELECT status FROM runner_runs").fetchone()
    assert run == {"status": "failure"}


def test_a_permanent_failure_runs_the_failure_module_and_apologises_once(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    fallback = db.execute(
        "SELECT fallback_message FROM chatbots WHERE id = %s", (channel["chatbot_id"],)
    ).fetchone()
    assert fallback is not None
    with running_stack(settings) as stack:
        stack.fail_next(131026, to=WA_ID, times=1)
        stack.send("Hello?")
        [apology] = stack.wait_replies(1)
        _wait(lambda: db.execute("SELECT status FROM runner_runs").fetchone()["status"] == "failure")  # type: ignore[index]
        time.sleep(1)
        assert len(stack.replies()) == 1
    assert apology["body"] == fallback["fallback_message"]
    outbox = db.execute("SELECT failed_at, failure FROM inbound_outbox").fetchone()
    assert outbox is not None
    assert outbox["failed_at"] is not None
    assert "131026" in outbox["failure"]
    assert db.execute("SELECT answer_outcome FROM messages WHERE direction = 'inbound'").fetchone() == {
        "answer_outcome": "failed"
    }


def _runner_process(settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "CHATMILL_ENV": "test",
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "WHATSAPP_GRAPH_URL": settings.whatsapp_graph_url or "",
        "RUNNER_WORKERS": "2",
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen([sys.executable, "-m", "tests.flows.runner_process"], env=env)


def test_a_runner_killed_during_send_reply_answers_every_message_exactly_once(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    with running_stack(settings, runner=False) as stack:
        stack.fail_next(131056, to=WA_ID)  # keeps send_reply busy backing off
        runner = _runner_process(stack.settings)
        try:
            stack.send("First question")
            _wait(
                lambda: (
                    db.execute(
                        "SELECT 1 FROM runner_steps WHERE step_id = 'send_reply' AND status = 'running'"
                    ).fetchone()
                    is not None
                )
            )
            runner.send_signal(signal.SIGKILL)
            runner.wait(timeout=10)
            stack.send("Second question")
            runner = _runner_process(stack.settings)
            replies = stack.wait_replies(2, timeout=60)
            time.sleep(2)
            assert len(stack.replies()) == 2
        finally:
            runner.kill()
            runner.wait(timeout=10)
    outcomes = db.execute(
        "SELECT text, answer_outcome FROM messages WHERE direction = 'inbound' ORDER BY created_at"
    ).fetchall()
    assert [o["answer_outcome"] for o in outcomes] == ["replied", "replied"]
    sent = db.execute(
        "SELECT count(*) AS n FROM messages WHERE direction = 'outbound' AND wamid IS NOT NULL"
    ).fetchone()
    assert sent == {"n": len(replies)}
