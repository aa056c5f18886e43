"""handle_message end to end: ingress → relay → local runner → sandbox, on real PostgreSQL and Redis."""

from __future__ import annotations

import time
from typing import Any

from chatmill.settings import Settings
from tests import factories
from tests.flows.stack import running_stack


def test_a_text_message_gets_one_reply_and_the_run_is_recorded(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    with running_stack(settings) as stack:
        wamid = stack.send("When are you open on Saturday?")
        [reply] = stack.wait_replies(1)
        assert reply["reply_to"] == wamid
        assert reply["body"]
    runs = db.execute("SELECT id, status FROM runner_runs").fetchall()
    assert [run["status"] for run in runs] == ["success"]
    steps = db.execute("SELECT step_id, status FROM runner_steps ORDER BY position").fetchall()
    assert [(s["step_id"], s["status"]) for s in steps] == [
        ("load_context", "success"),
        ("generate_reply", "success"),
        ("send_reply", "success"),
    ]
    inbound = db.execute(
        "SELECT answered_at, answer_outcome FROM messages WHERE wamid = %s", (wamid,)
    ).fetchone()
    assert inbound is not None
    assert inbound["answer_outcome"] == "replied"
    outbound = db.execute("SELECT status, wamid FROM messages WHERE direction = 'outbound'").fetchall()
    assert outbound == [{"status": "sent", "wamid": reply["id"]}]


def _outcomes(db: factories.Conn) -> list[str | None]:
    rows = db.execute(
        "SELECT answer_outcome FROM messages WHERE direction = 'inbound' ORDER BY created_at"
    ).fetchall()
    return [row["answer_outcome"] for row in rows]


def test_five_messages_within_a_second_get_one_reply_addressing_all(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    db.execute("UPDATE chatbots SET debounce_ms = 1500 WHERE id = %s", (channel["chatbot_id"],))
    questions = ["Hi!", "I want a cake", "for 10 people", "with chocolate", "how much is it?"]
    with running_stack(settings) as stack:
        wamids = [stack.send(question) for question in questions]
        [reply] = stack.wait_replies(1)
        assert reply["reply_to"] == wamids[-1]
        time.sleep(2)  # nothing else may follow
        assert len(stack.replies()) == 1
    turns = db.execute("SELECT DISTINCT turn_id FROM messages WHERE direction = 'inbound'").fetchall()
    assert len(turns) == 1
    assert _outcomes(db) == ["replied"] * 5
    statuses = [r["status"] for r in db.execute("SELECT status FROM runner_runs").fetchall()]
    assert sorted(statuses) == ["success"] * 5  # four of them stopped early: the lease was held


def test_the_same_webhook_three_times_out_of_order_gets_one_reply(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    with running_stack(settings) as stack:
        first = stack.send("Do you deliver?", wamid="wamid.once")
        body_late = "Do you deliver?"
        stack.send(body_late, wamid="wamid.once")
        stack.send(body_late, wamid="wamid.once")
        [reply] = stack.wait_replies(1)
        stack.send(body_late, wamid="wamid.once")  # a late redelivery after the reply
        time.sleep(1.5)
        assert len(stack.replies()) == 1
    assert reply["reply_to"] == first
    assert db.execute("SELECT count(*) AS n FROM runner_runs").fetchone() == {"n": 1}


def test_a_paused_conversation_stores_messages_and_does_not_answer(
    settings: Settings, db: factories.Conn, channel: dict[str, Any]
) -> None:
    with running_stack(settings) as stack:
        stack.send("first")
        stack.wait_replies(1)
        db.execute("UPDATE conversations SET paused_at = now(), pause_reason = 'agent took over'")
        stack.send("are you a human?")
        deadline = time.monotonic() + 20
        while _outcomes(db)[-1] is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert len(stack.replies()) == 1
        # a pause with an expiry ends by itself
        db.execute("UPDATE conversations SET paused_until = now() - interval '1 second'")
        stack.send("hello again")
        stack.wait_replies(2)
    assert _outcomes(db) == ["replied", "paused", "replied"]
