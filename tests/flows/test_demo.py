"""The demo tenant answers from its FAQ: seed-demo, then a customer asks through WhatsApp."""

from __future__ import annotations

from chatmill.seed import seed_demo
from chatmill.settings import Settings
from tests import factories
from tests.flows.stack import running_stack


def test_the_seeded_demo_answers_from_its_knowledge_with_a_source(
    settings: Settings, db: factories.Conn
) -> None:
    seed_demo(settings.database_url or "", settings)
    db.execute("UPDATE chatbots SET debounce_ms = 0")
    with running_stack(settings) as stack:
        stack.send("What time do you open on Saturday?")
        [reply] = stack.wait_replies(1)
    assert "8:00" in reply["body"]
    citations = db.execute("SELECT citations FROM messages WHERE direction = 'outbound'").fetchone()
    assert citations is not None
    assert "sunrise-bakery-faq.md" in str(citations["citations"])
