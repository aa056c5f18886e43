"""Hybrid retrieval: full-text finds exact codes, vectors find paraphrases, RRF keeps both; isolation."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from f.chatmill.lib.ingestion import ingest_source
from f.chatmill.lib.retrieval import Mode, RetrievalTuning, plan_scan, retrieve, retrieve_async, text_query

from tests import factories

CATALOGUE = """# Parts catalogue

## Brake pads
Replacement brake pads SKU-48213-B fit the X200 frame and ship within two days.

## Brake cables
Brake cable kit SKU-48231-A, stainless steel, fits every road bike we sell.

## Chains
Chain SKU-48213-A for 11-speed drivetrains, nickel plated.

## Delivery
We deliver to your home within 10 km for free when the order is above 40 EUR.

## Opening hours
The workshop opens at 8:00 and closes at 18:00 from Monday to Friday.

## Payment
Cash, debit cards and credit cards are accepted at the counter.
"""


@pytest.fixture
def catalogue_bot(db: factories.Conn) -> factories.Row:
    bot = factories.create_chatbot(db, factories.create_organization(db))
    source = factories.create_knowledge_source(
        db, bot, file_name="catalogue.md", file_content=CATALOGUE.encode()
    )
    assert ingest_source(db, source["id"]).status == "ready"
    return bot


def _top(db: factories.Conn, bot: factories.Row, query: str, mode: Mode) -> list[str]:
    hits = retrieve(
        db, organization_id=bot["organization_id"], chatbot_id=bot["id"], query=query, mode=mode, top_k=3
    )
    return [hit.heading or "" for hit in hits]


def test_hybrid_finds_an_exact_product_code_that_vector_search_misses(
    db: factories.Conn, catalogue_bot: factories.Row
) -> None:
    query = "SKU-48213-B"
    assert _top(db, catalogue_bot, query, "vector")[0] != "Brake pads"
    assert _top(db, catalogue_bot, query, "text")[0] == "Brake pads"
    assert _top(db, catalogue_bot, query, "hybrid")[0] == "Brake pads"


def test_hybrid_finds_a_paraphrase_that_full_text_misses(
    db: factories.Conn, catalogue_bot: factories.Row
) -> None:
    query = "do you bring orders to my house?"
    assert "Delivery" not in _top(db, catalogue_bot, query, "text")
    assert _top(db, catalogue_bot, query, "vector")[0] == "Delivery"
    assert _top(db, catalogue_bot, query, "hybrid")[0] == "Delivery"


def test_hits_carry_citation_metadata_and_scores(db: factories.Conn, catalogue_bot: factories.Row) -> None:
    hits = retrieve(
        db,
        organization_id=catalogue_bot["organization_id"],
        chatbot_id=catalogue_bot["id"],
        query="brake pads X200",
    )
    best = hits[0]
    assert best.heading == "Brake pads"
    assert best.uri == "catalogue.md"
    assert best.title == "Parts catalogue"
    assert best.text_match is True
    assert best.similarity is not None
    assert 0 < best.similarity <= 1
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    assert best.citation() | {"chunk_id": 0} == {
        "source_id": best.source_id,
        "source": best.source_name,
        "document_id": best.document_id,
        "uri": "catalogue.md",
        "title": "Parts catalogue",
        "page": None,
        "chunk_id": 0,
    }


def test_min_similarity_drops_weak_vector_hits_but_keeps_text_matches(
    db: factories.Conn, catalogue_bot: factories.Row
) -> None:
    scope = {"organization_id": catalogue_bot["organization_id"], "chatbot_id": catalogue_bot["id"]}
    everything = retrieve(db, **scope, query="SKU-48213-B", top_k=10)
    strict = retrieve(db, **scope, query="SKU-48213-B", top_k=10, min_similarity=0.99)
    assert len(everything) == 6
    assert [hit.heading for hit in strict] == ["Brake pads"]


def test_retrieval_never_crosses_chatbots_or_organizations(db: factories.Conn) -> None:
    org, other_org = factories.create_organization(db), factories.create_organization(db)
    mine, sibling = factories.create_chatbot(db, org), factories.create_chatbot(db, org)
    foreign = factories.create_chatbot(db, other_org)
    for bot, word in ((mine, "mine"), (sibling, "sibling"), (foreign, "foreign")):
        body = f"# Delivery\n\nWe deliver to your home within 10 km ({word}).\n".encode()
        ingest_source(db, factories.create_knowledge_source(db, bot, file_content=body)["id"])
    hits = retrieve(db, organization_id=org["id"], chatbot_id=mine["id"], query="home delivery", top_k=20)
    assert [hit.content.endswith("(mine).") for hit in hits] == [True]
    # another organization's id with my chatbot's id finds nothing
    assert retrieve(db, organization_id=other_org["id"], chatbot_id=mine["id"], query="home delivery") == []


def test_async_retrieval_runs_the_same_query(
    database_url: str, db: factories.Conn, catalogue_bot: factories.Row
) -> None:
    async def run() -> list[str]:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            hits = await retrieve_async(
                conn,
                organization_id=catalogue_bot["organization_id"],
                chatbot_id=catalogue_bot["id"],
                query="SKU-48213-B",
                top_k=3,
            )
            return [hit.heading or "" for hit in hits]

    assert asyncio.run(run()) == _top(db, catalogue_bot, "SKU-48213-B", "hybrid")


def test_text_query_keeps_meaningful_words_joined_with_or() -> None:
    assert text_query("What is the price of SKU-48213-B?") == "price or SKU-48213-B"
    assert text_query('"drop table" -- or (1) & |') == "drop or table or 1"
    assert text_query("the and or of") == ""


@pytest.mark.parametrize(
    ("extversion", "bot_rows", "model_rows", "kind"),
    [
        ("0.6.2", 500, 1_000_000, "exact"),  # small chatbot: exact scan
        ("0.6.2", 30_000, 1_000_000, "exact"),  # 3 %: HNSW would miss rows, exact
        ("0.6.2", 500_000, 1_000_000, "hnsw"),  # 50 %: HNSW with a wide ef_search
        ("0.8.0", 30_000, 1_000_000, "iterative"),  # pgvector 0.8: iterative index scan
        ("0.8.1", 500_000, 1_000_000, "iterative"),
        ("0.7.4", 30_000, 1_000_000, "exact"),
    ],
)
def test_scan_plan_follows_the_chatbots_share_and_the_pgvector_version(
    extversion: str, bot_rows: int, model_rows: int, kind: str
) -> None:
    plan = plan_scan(
        extversion=extversion,
        bot_rows=bot_rows,
        model_rows=model_rows,
        candidates=40,
        tuning=RetrievalTuning(),
    )
    assert plan.kind == kind
    if kind == "iterative":
        assert plan.settings["hnsw.iterative_scan"] == "relaxed_order"
    if kind == "hnsw":
        assert plan.settings == {"hnsw.ef_search": "320"}


def test_a_chatbot_with_its_own_index_is_searched_through_it_at_any_pgvector_version() -> None:
    for extversion in ("0.6.2", "0.8.0"):
        plan = plan_scan(
            extversion=extversion,
            bot_rows=30_000,
            model_rows=1_000_000,
            candidates=40,
            tuning=RetrievalTuning(),
            dedicated=True,
        )
        assert (plan.kind, plan.settings) == ("dedicated", {"hnsw.ef_search": "320"})
    small = plan_scan(
        extversion="0.6.2",
        bot_rows=4_000,
        model_rows=1_000_000,
        candidates=40,
        tuning=RetrievalTuning(),
        dedicated=True,
    )
    assert small.kind == "exact"
