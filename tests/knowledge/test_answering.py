"""generate_reply: the offline extractive answerer and the LLM path against a local provider."""

from __future__ import annotations

import statistics
import time
from importlib import resources

import pytest
from f.chatmill.lib.answering import ProviderConfig, Reply, build_system_prompt, generate_reply
from f.chatmill.lib.ingestion import ingest_source
from f.chatmill.lib.llm import ToolSet, ToolSpec

from tests import factories
from tests.knowledge.llm_server import Reply as Scripted
from tests.knowledge.llm_server import gemini_text, llm_server, openai_text, openai_tool_call

FAQ = resources.files("chatmill.demo").joinpath("sunrise-bakery-faq.md").read_bytes()
OFFLINE = ProviderConfig()


@pytest.fixture
def bakery(db: factories.Conn) -> factories.Row:
    bot = factories.create_chatbot(
        db, factories.create_organization(db), system_prompt="You are Sunrise Bakery's assistant."
    )
    source = factories.create_knowledge_source(
        db, bot, name="Bakery FAQ", file_name="faq.md", file_content=FAQ
    )
    assert ingest_source(db, source["id"]).status == "ready"
    return bot


def _reply(
    db: factories.Conn,
    bot: factories.Row,
    *turn: str,
    providers: ProviderConfig = OFFLINE,
    tools: ToolSet | None = None,
) -> Reply:
    return generate_reply(
        db,
        organization_id=bot["organization_id"],
        chatbot=bot,
        turn=list(turn),
        history=[],
        providers=providers,
        tools=tools,
    )


@pytest.mark.parametrize(
    ("question", "quoted"),
    [
        ("do you bring orders to my house?", "We deliver within 10 km"),
        ("How early do I need to order a birthday cake?", "at least 3 days' notice"),
        ("Can I pay with my credit card?", "We accept cash, debit and credit cards"),
        ("Where is your shop?", "12 Harbour Street"),
    ],
)
def test_offline_answer_quotes_the_passage_with_its_source(
    db: factories.Conn, bakery: factories.Row, question: str, quoted: str
) -> None:
    reply = _reply(db, bakery, question)
    assert reply.grounded
    assert reply.text.startswith("Here is what I found:")
    assert quoted in reply.text
    assert "— Sunrise Bakery — frequently asked questions" in reply.text
    assert reply.citations[0]["uri"] == "faq.md"
    assert reply.model == "offline-extractive"
    assert (reply.prompt_tokens, reply.completion_tokens) == (0, 0)


def test_offline_answer_says_it_does_not_know_in_the_customers_language(
    db: factories.Conn, bakery: factories.Row
) -> None:
    english = _reply(db, bakery, "What is the capital of Mongolia?")
    assert not _reply(db, bakery, "How do I reset my router password?").grounded
    spanish = _reply(db, bakery, "¿Cuál es la capital de Mongolia?")
    assert (english.grounded, english.citations) == (False, [])
    assert english.text.startswith("Sorry, I don't know")
    assert spanish.text.startswith("Lo siento, no sé")


def test_offline_answer_is_deterministic_and_fast(db: factories.Conn, bakery: factories.Row) -> None:
    first = _reply(db, bakery, "Is there a gluten free bread?")
    timings = []
    for _ in range(7):
        started = time.perf_counter()
        again = _reply(db, bakery, "Is there a gluten free bread?")
        timings.append(time.perf_counter() - started)
        assert again == first
    assert statistics.median(timings) < 0.15, timings  # typically ~10 ms; generous for a busy CI box


def test_the_turn_is_answered_as_one_question(db: factories.Conn, bakery: factories.Row) -> None:
    reply = _reply(db, bakery, "hi!", "do you deliver on saturday?")
    assert "We deliver within 10 km" in reply.text


def test_llm_answer_uses_our_grounding_rules_cites_and_records_tokens(
    db: factories.Conn, bakery: factories.Row
) -> None:
    script = [
        Scripted(200, openai_text("We deliver within 10 km [1].", prompt_tokens=321, completion_tokens=12))
    ]
    with llm_server(script) as server:
        providers = ProviderConfig(
            llm_provider="openai", openai_api_key="k", openai_base_url=server.base_url + "/v1"
        )
        reply = _reply(db, bakery, "do you bring orders to my house?", providers=providers)
    system = server.requests[0].body["messages"][0]["content"]
    assert system.startswith("You are Sunrise Bakery's assistant.")
    assert "Reply in the language of the customer's latest message" in system
    assert "[1] (Sunrise Bakery — frequently asked questions)" in system
    assert "deliver within 10 km" in system
    assert server.requests[0].body["messages"][-1] == {
        "role": "user",
        "content": "do you bring orders to my house?",
    }
    assert reply.text == "We deliver within 10 km [1]."
    assert [citation["uri"] for citation in reply.citations] == ["faq.md"]
    assert (reply.prompt_tokens, reply.completion_tokens, reply.model) == (321, 12, "gpt-test")
    usage = db.execute(
        "SELECT prompt_tokens, completion_tokens FROM usage_monthly WHERE organization_id = %s",
        (bakery["organization_id"],),
    ).fetchone()
    assert usage == {"prompt_tokens": 321, "completion_tokens": 12}


def test_llm_answer_runs_tools_and_sums_tokens(db: factories.Conn, bakery: factories.Row) -> None:
    tools = ToolSet([ToolSpec("get_price", "Price of a product.")], lambda name, args: "38 EUR")
    script = [
        Scripted(200, openai_tool_call("get_price", {})),
        Scripted(200, openai_text("From 38 EUR.", 100, 10)),
    ]
    with llm_server(script) as server:
        providers = ProviderConfig(
            llm_provider="openai", openai_api_key="k", openai_base_url=server.base_url + "/v1"
        )
        reply = _reply(db, bakery, "price of a cake for 10?", providers=providers, tools=tools)
    assert reply.text == "From 38 EUR."
    assert reply.tool_calls[0]["result"] == "38 EUR"
    assert (reply.prompt_tokens, reply.completion_tokens) == (120, 15)


def test_gemini_answer(db: factories.Conn, bakery: factories.Row) -> None:
    with llm_server([Scripted(200, gemini_text("Ja, wir liefern [1].", 50, 6))]) as server:
        providers = ProviderConfig(llm_provider="gemini", gemini_api_key="k", gemini_base_url=server.base_url)
        reply = _reply(db, bakery, "Liefern Sie nach Hause?", providers=providers)
    assert reply.text == "Ja, wir liefern [1]."
    assert (
        server.requests[0]
        .body["systemInstruction"]["parts"][0]["text"]
        .startswith("You are Sunrise Bakery's assistant.")
    )
    assert (reply.prompt_tokens, reply.completion_tokens) == (50, 6)


def test_system_prompt_without_knowledge_tells_the_model_to_say_so() -> None:
    prompt = build_system_prompt({"system_prompt": "Be nice."}, [])
    assert prompt.startswith("Be nice.")
    assert "No passage matched" in prompt
