"""Ingestion: real files generated here, a small site on a local HTTP server, upsert by content hash."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from f.chatmill.lib.ingestion import _lock_key, ingest_source

from tests import factories
from tests.knowledge.conftest import Route, Site
from tests.knowledge.documents import make_docx, make_pdf


def _chunks(db: factories.Conn, source: factories.Row) -> list[dict[str, Any]]:
    return db.execute(
        "SELECT c.id, c.content, c.metadata, c.embedding_model, d.uri, d.title FROM knowledge_chunks c"
        " JOIN knowledge_documents d ON d.id = c.document_id"
        " WHERE c.organization_id = %s AND c.source_id = %s ORDER BY d.uri, c.chunk_index",
        (source["organization_id"], source["id"]),
    ).fetchall()


def _source(db: factories.Conn, source: factories.Row) -> dict[str, Any]:
    row = db.execute("SELECT * FROM knowledge_sources WHERE id = %s", (source["id"],)).fetchone()
    assert row is not None
    return row


@pytest.fixture
def bot(db: factories.Conn) -> factories.Row:
    return factories.create_chatbot(db, factories.create_organization(db))


HTML_PAGE = """<!doctype html><html><head><title>Opening hours</title></head><body>
<nav><a href="/">Home</a> <a href="/menu">Menu</a> Navigation junk</nav>
<div class="cookie-banner">We use cookies to improve your experience.</div>
<main><h1>Opening hours</h1><p>We open at 7:00 and close at 18:00 from Monday to Saturday.</p>
<h2>Holidays</h2><p>On public holidays the shop closes at noon.</p></main>
<footer>Copyright Sunrise Bakery. All rights reserved.</footer><script>var tracking = 1;</script>
</body></html>"""


@pytest.mark.parametrize(
    ("file_name", "body", "expected", "metadata"),
    [
        (
            "guide.pdf",
            make_pdf(
                ["Sourdough needs a starter fed daily.", "Rye bread keeps for five days."], title="Guide"
            ),
            ["Sourdough needs a starter fed daily.", "Rye bread keeps for five days."],
            [{"page": 1, "title": "Guide"}, {"page": 2, "title": "Guide"}],
        ),
        (
            "policy.docx",
            make_docx(
                "Refund policy", ["Refunds are issued within 14 days."], [["Item", "Days"], ["Cake", "2"]]
            ),
            ["Refund policy\nRefunds are issued within 14 days. Item | Days Cake | 2"],
            [{"heading": "Refund policy"}],
        ),
        (
            "hours.html",
            HTML_PAGE.encode(),
            [
                "Opening hours\nWe open at 7:00 and close at 18:00 from Monday to Saturday.",
                "Holidays\nOn public holidays the shop closes at noon.",
            ],
            [{"heading": "Opening hours", "title": "Opening hours"}, {"heading": "Holidays"}],
        ),
        (
            "faq.md",
            b"# FAQ\n\n## Delivery\n\nWe **deliver** within 10 km.\n\n- Free above $30\n",
            ["Delivery\nWe deliver within 10 km. Free above $30"],
            [{"heading": "Delivery", "title": "FAQ"}],
        ),
        (
            "prices.csv",
            b"product,price\nBaguette,2.50\nCroissant,1.80\n",
            ["product: Baguette; price: 2.50 product: Croissant; price: 1.80"],
            [{"uri": "prices.csv"}],
        ),
        (
            "notes.txt",
            b"Parking is behind the shop.\n\nDogs are welcome.",
            ["Parking is behind the shop. Dogs are welcome."],
            [{}],
        ),
    ],
)
def test_each_file_type_becomes_chunks_with_metadata(
    db: factories.Conn,
    bot: factories.Row,
    file_name: str,
    body: bytes,
    expected: list[str],
    metadata: list[dict[str, Any]],
) -> None:
    source = factories.create_knowledge_source(db, bot, file_name=file_name, file_content=body)
    result = ingest_source(db, source["id"])
    assert (result.status, result.error) == ("ready", None)
    chunks = _chunks(db, source)
    assert [chunk["content"] for chunk in chunks] == expected
    for chunk, wanted in zip(chunks, metadata, strict=True):
        assert chunk["metadata"].items() >= wanted.items()
        assert chunk["embedding_model"] == "offline"
    row = _source(db, source)
    assert (row["status"], row["document_count"], row["chunk_count"]) == ("ready", 1, len(expected))
    assert row["progress_done"] == row["progress_total"] == 1
    assert row["last_run"]["embedded"] == len(expected)


def test_html_boilerplate_is_removed(db: factories.Conn, bot: factories.Row) -> None:
    source = factories.create_knowledge_source(
        db, bot, file_name="hours.html", file_content=HTML_PAGE.encode()
    )
    ingest_source(db, source["id"])
    text = " ".join(chunk["content"] for chunk in _chunks(db, source))
    for junk in ("Navigation junk", "cookies", "Copyright", "tracking"):
        assert junk not in text


def test_reingesting_an_unchanged_source_embeds_nothing(db: factories.Conn, bot: factories.Row) -> None:
    body = "\n\n".join(
        f"## Topic {i}\n\nParagraph number {i} talks about bread variety {i}." for i in range(8)
    )
    source = factories.create_knowledge_source(db, bot, file_name="topics.md", file_content=body.encode())
    first = ingest_source(db, source["id"])
    before = {chunk["id"] for chunk in _chunks(db, source)}
    second = ingest_source(db, source["id"])
    assert first.embedded == 8
    assert (second.status, second.embedded, second.unchanged, second.deleted) == ("ready", 0, 8, 0)
    assert {chunk["id"] for chunk in _chunks(db, source)} == before


@pytest.mark.parametrize(
    ("file_name", "body", "reason"),
    [
        ("menu.pdf", b"this is plain text pretending to be a PDF", "is not a PDF file"),
        ("menu.docx", b"plain text, not a Word file", "is not a DOCX (Word) file"),
        ("secret.pdf", make_pdf(["Top secret recipe"], password="hunter2"), "password-protected PDF"),
        ("blank.pdf", make_pdf([""]), "contains no text"),
        ("empty.txt", b"   \n\n  ", "contains no text"),
        ("image.html", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary file"),
        ("archive.zip", b"PK\x03\x04junk", "unsupported file type"),
    ],
)
def test_bad_files_fail_the_source_with_a_clear_reason(
    db: factories.Conn, bot: factories.Row, file_name: str, body: bytes, reason: str
) -> None:
    source = factories.create_knowledge_source(db, bot, file_name=file_name, file_content=body)
    result = ingest_source(db, source["id"])
    assert result.status == "failed"
    assert reason in (result.error or "")
    row = _source(db, source)
    assert row["status"] == "failed"
    assert reason in row["error"]
    assert _chunks(db, source) == []


def _page(title: str, text: str, links: list[str] = ()) -> str:  # type: ignore[assignment]
    anchors = "".join(f'<a href="{link}">{link}</a> ' for link in links)
    return f"<html><head><title>{title}</title></head><body><main><h1>{title}</h1><p>{text}</p>{anchors}</main></body></html>"


def _small_site(site: Site) -> None:
    site.routes["/robots.txt"] = Route(
        body=b"User-agent: *\nDisallow: /private/\n", content_type="text/plain"
    )
    site.routes["/sitemap.xml"] = Route(
        body=(
            '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            + "".join(
                f"<url><loc>{site.url(path)}</loc></url>"
                for path in ["/", "/bread", "/cakes", "/private/staff", "/gone", "/loop-a"]
            )
            + "</urlset>"
        ).encode(),
        content_type="application/xml",
    )
    site.page("/", _page("Home", "Welcome to the bakery on Main Street."))
    site.page("/bread", _page("Bread", "Our sourdough is fermented for 36 hours."))
    site.page("/cakes", _page("Cakes", "Birthday cakes need two days notice."))
    site.page("/private/staff", _page("Staff", "Internal rota, not for customers."))
    site.routes["/loop-a"] = Route(status=302, headers={"Location": "/loop-b"})
    site.routes["/loop-b"] = Route(status=302, headers={"Location": "/loop-a"})


def test_crawl_uses_the_sitemap_obeys_robots_and_reports_failures(
    db: factories.Conn, bot: factories.Row, site: Site
) -> None:
    _small_site(site)
    source = factories.create_knowledge_source(db, bot, kind="crawl", url=site.url("/"))
    result = ingest_source(db, source["id"])
    assert result.status == "ready"
    uris = sorted({chunk["uri"] for chunk in _chunks(db, source)})
    assert uris == [site.url("/"), site.url("/bread"), site.url("/cakes")]
    assert "/private/staff" not in site.requests
    reasons = {warning["url"].removeprefix(site.base_url): warning["reason"] for warning in result.warnings}
    assert reasons["/gone"] == "HTTP 404"
    assert reasons["/loop-a"].startswith("redirect loop")
    assert reasons["/private/staff"] == "disallowed by robots.txt"
    row = _source(db, source)
    assert (row["document_count"], row["chunk_count"]) == (3, 3)
    assert {w["reason"] for w in row["last_run"]["warnings"]} >= {"HTTP 404", "disallowed by robots.txt"}


def test_an_edited_page_replaces_only_its_chunks(db: factories.Conn, bot: factories.Row, site: Site) -> None:
    _small_site(site)
    source = factories.create_knowledge_source(db, bot, kind="crawl", url=site.url("/"))
    ingest_source(db, source["id"])
    before = {chunk["uri"]: chunk["id"] for chunk in _chunks(db, source)}
    site.page("/cakes", _page("Cakes", "Birthday cakes now need three days notice."))
    result = ingest_source(db, source["id"])
    after = {chunk["uri"]: (chunk["id"], chunk["content"]) for chunk in _chunks(db, source)}
    assert (result.embedded, result.deleted, result.unchanged) == (1, 1, 2)
    assert after[site.url("/bread")][0] == before[site.url("/bread")]
    assert after[site.url("/")][0] == before[site.url("/")]
    assert after[site.url("/cakes")][0] != before[site.url("/cakes")]
    assert "three days" in after[site.url("/cakes")][1]


def test_a_page_that_disappears_loses_its_chunks(db: factories.Conn, bot: factories.Row, site: Site) -> None:
    _small_site(site)
    source = factories.create_knowledge_source(db, bot, kind="crawl", url=site.url("/"))
    ingest_source(db, source["id"])
    site.routes["/bread"] = Route(status=404, body=b"gone", content_type="text/plain")
    result = ingest_source(db, source["id"])
    assert result.deleted == 1
    assert site.url("/bread") not in {chunk["uri"] for chunk in _chunks(db, source)}


def test_crawl_without_sitemap_follows_links_within_depth_and_patterns(
    db: factories.Conn, bot: factories.Row, site: Site
) -> None:
    site.page(
        "/", _page("Home", "Start page of the shop.", ["/a", "/b", "/skip/me", "https://elsewhere.example/x"])
    )
    site.page("/a", _page("A", "Page A about baguettes.", ["/a/deeper"]))
    site.page("/b", _page("B", "Page B about croissants."))
    site.page("/a/deeper", _page("Deeper", "Too deep to be crawled."))
    site.page("/skip/me", _page("Skip", "Excluded by pattern."))
    source = factories.create_knowledge_source(
        db,
        bot,
        kind="crawl",
        url=site.url("/"),
        options={"max_depth": 1, "exclude": ["/skip/*"], "max_pages": 10},
    )
    result = ingest_source(db, source["id"])
    assert result.status == "ready"
    uris = sorted({chunk["uri"].removeprefix(site.base_url) for chunk in _chunks(db, source)})
    assert uris == ["/", "/a", "/b"]
    assert "/skip/me" not in site.requests
    assert "/a/deeper" not in site.requests


def test_max_pages_bounds_a_crawl(db: factories.Conn, bot: factories.Row, site: Site) -> None:
    site.page("/", _page("Home", "Start.", [f"/p{i}" for i in range(10)]))
    for i in range(10):
        site.page(f"/p{i}", _page(f"P{i}", f"Page {i} text."))
    source = factories.create_knowledge_source(
        db,
        bot,
        kind="crawl",
        url=site.url("/"),
        options={"max_pages": 4},
    )
    result = ingest_source(db, source["id"])
    assert result.documents == 4
    assert sum(1 for path in site.requests if path.startswith("/p")) == 3


@pytest.mark.parametrize(
    ("routes", "reason"),
    [
        ({}, "HTTP 404"),
        ({"/start": Route(status=301, headers={"Location": "/start"})}, "redirect loop"),
        ({"/start": Route(body=b"<html><body>   </body></html>")}, "contains no text"),
    ],
)
def test_a_url_source_that_cannot_be_used_fails_with_the_reason(
    db: factories.Conn, bot: factories.Row, site: Site, routes: dict[str, Route], reason: str
) -> None:
    site.routes.update(routes)
    source = factories.create_knowledge_source(db, bot, kind="url", url=site.url("/start"))
    result = ingest_source(db, source["id"])
    assert result.status == "failed"
    assert reason in (result.error or "")
    assert reason in _source(db, source)["error"]


def test_a_source_already_being_ingested_is_skipped(
    db: factories.Conn, bot: factories.Row, database_url: str
) -> None:
    source = factories.create_knowledge_source(db, bot)
    with psycopg.connect(database_url, autocommit=True) as other:
        other.execute("SELECT pg_advisory_lock(%s)", (_lock_key(source["id"]),))
        result = ingest_source(db, source["id"])
    assert (result.status, result.error) == ("skipped", "this source is being ingested by another run")
    assert ingest_source(db, source["id"]).status == "ready"
