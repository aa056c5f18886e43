"""Fetching knowledge from the web: one URL, or a crawl of one site.

    fetch_page(client, url, limits) -> Page                 raises FetchError (404, loop, too big, …)
    crawl(client, start_url, options, limits) -> CrawlResult pages + per-URL failures

A crawl reads ``robots.txt`` first (and obeys its ``Disallow`` rules for our user agent), takes the
URLs of ``sitemap.xml`` (or the ``Sitemap:`` lines of robots.txt) when there is one, and otherwise
follows same-site links breadth-first from the start page up to ``max_depth``. ``include`` /
``exclude`` are glob patterns (``fnmatch``) matched against the URL path (and the full URL); at
most ``max_pages`` pages are fetched, ``concurrency`` at a time (default 2: polite to small sites).

Redirects are followed by hand (at most :data:`MAX_REDIRECTS`, a URL seen twice is a loop), bodies
are streamed and cut off at ``max_bytes``, every request has a timeout. Failures are reported per
URL with a reason the business owner can act on; they never raise out of :func:`crawl`.
"""

from __future__ import annotations

import fnmatch
import re
import urllib.robotparser
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit

import httpx

USER_AGENT = "ChatmillBot/0.1 (+https://github.com/chatmill; knowledge ingestion)"
MAX_REDIRECTS = 10
_TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain", "text/markdown", "text/csv")
_DOCUMENT_TYPES = (
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
)


class FetchError(Exception):
    """A URL could not be fetched; ``reason`` is short and human ('HTTP 404', 'redirect loop', …)."""

    def __init__(self, url: str, reason: str, *, permanent: bool = True) -> None:
        super().__init__(f"{url}: {reason}")
        self.url = url
        self.reason = reason
        self.permanent = permanent  # False: worth trying again later (timeouts, 5xx)


@dataclass(frozen=True)
class FetchLimits:
    timeout_seconds: float = 15.0
    max_bytes: int = 10 * 1024 * 1024


@dataclass(frozen=True)
class CrawlOptions:
    max_pages: int = 50
    max_depth: int = 3
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    concurrency: int = 2
    respect_robots: bool = True
    use_sitemap: bool = True

    @classmethod
    def from_json(cls, options: dict[str, Any] | None) -> CrawlOptions:
        """From ``knowledge_sources.options`` (unknown keys ignored, bounds enforced)."""
        options = options or {}

        def patterns(key: str) -> tuple[str, ...]:
            value = options.get(key) or ()
            return (value,) if isinstance(value, str) else tuple(str(v) for v in value)

        return cls(
            max_pages=max(1, min(int(options.get("max_pages", 50)), 5000)),
            max_depth=max(0, min(int(options.get("max_depth", 3)), 20)),
            include=patterns("include"),
            exclude=patterns("exclude"),
            concurrency=max(1, min(int(options.get("concurrency", 2)), 8)),
            respect_robots=bool(options.get("respect_robots", True)),
            use_sitemap=bool(options.get("use_sitemap", True)),
        )


@dataclass(frozen=True)
class Page:
    url: str  # the URL asked for
    final_url: str  # after redirects
    content_type: str
    body: bytes


@dataclass
class CrawlResult:
    pages: list[Page] = field(default_factory=list)
    failures: list[FetchError] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (url, why): robots, patterns, limit
    used_sitemap: bool = False


def new_client(
    limits: FetchLimits | None = None, transport: httpx.BaseTransport | None = None
) -> httpx.Client:
    limits = limits or FetchLimits()
    return httpx.Client(
        headers={"User-Agent": USER_AGENT},
        timeout=httpx.Timeout(limits.timeout_seconds),
        follow_redirects=False,
        transport=transport,
    )


def fetch_page(client: httpx.Client, url: str, limits: FetchLimits | None = None) -> Page:
    """GET ``url`` following redirects by hand; raises :class:`FetchError` with a clear reason."""
    limits = limits or FetchLimits()
    seen: list[str] = []
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        if current in seen:
            raise FetchError(url, f"redirect loop ({' -> '.join([*seen, current])})")
        seen.append(current)
        scheme = urlsplit(current).scheme
        if scheme not in {"http", "https"}:
            raise FetchError(url, f"unsupported URL scheme {scheme or '(none)'}")
        try:
            with client.stream("GET", current) as response:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise FetchError(url, f"HTTP {response.status_code} without a Location header")
                    current = urldefrag(urljoin(current, location))[0]
                    continue
                if response.status_code >= 400:
                    raise FetchError(
                        url, f"HTTP {response.status_code}", permanent=response.status_code < 500
                    )
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > limits.max_bytes:
                    raise FetchError(url, f"larger than the {limits.max_bytes // 1024} KiB limit")
                body = bytearray()
                for part in response.iter_bytes():
                    body.extend(part)
                    if len(body) > limits.max_bytes:
                        raise FetchError(url, f"larger than the {limits.max_bytes // 1024} KiB limit")
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                return Page(url=url, final_url=current, content_type=content_type, body=bytes(body))
        except httpx.TimeoutException:
            raise FetchError(url, f"timed out after {limits.timeout_seconds:g} s", permanent=False) from None
        except httpx.TransportError as exc:
            raise FetchError(url, f"connection failed ({type(exc).__name__})", permanent=False) from None
    raise FetchError(url, f"more than {MAX_REDIRECTS} redirects")


def _same_site(url: str, origin: str) -> bool:
    a, b = urlsplit(url), urlsplit(origin)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


def _matches(url: str, patterns: Iterable[str]) -> bool:
    path = urlsplit(url).path or "/"
    return any(fnmatch.fnmatch(path, p) or fnmatch.fnmatch(url, p) for p in patterns)


def _allowed_by_patterns(url: str, options: CrawlOptions) -> bool:
    if options.include and not _matches(url, options.include):
        return False
    return not (options.exclude and _matches(url, options.exclude))


def _robots(
    client: httpx.Client, origin: str, limits: FetchLimits
) -> tuple[urllib.robotparser.RobotFileParser, list[str]]:
    parser = urllib.robotparser.RobotFileParser()
    try:
        page = fetch_page(client, urljoin(origin, "/robots.txt"), limits)
        text = page.body.decode("utf-8", "replace")
    except FetchError:
        text = ""  # no robots.txt: everything is allowed
    parser.parse(text.splitlines())
    sitemaps = [
        line.split(":", 1)[1].strip() for line in text.splitlines() if line.lower().startswith("sitemap:")
    ]
    return parser, sitemaps


_LOC = re.compile(r"<loc>\s*([^<\s]+)\s*</loc>", re.I)


def _sitemap_urls(
    client: httpx.Client, sitemap_urls: list[str], limits: FetchLimits, budget: int
) -> list[str]:
    """URLs listed by the sitemap(s), following one level of sitemap index."""
    urls: list[str] = []
    queue = list(dict.fromkeys(sitemap_urls))
    visited: set[str] = set()
    while queue and len(urls) < budget * 4:
        sitemap = queue.pop(0)
        if sitemap in visited:
            continue
        visited.add(sitemap)
        try:
            page = fetch_page(client, sitemap, limits)
        except FetchError:
            continue
        text = page.body.decode("utf-8", "replace")
        locations = [loc.replace("&amp;", "&") for loc in _LOC.findall(text)]
        if "<sitemapindex" in text.lower():
            queue.extend(locations)
        else:
            urls.extend(locations)
    return list(dict.fromkeys(urls))


def _links(page: Page) -> list[str]:
    if "html" not in page.content_type:
        return []
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(page.body, "lxml")
    out = []
    for anchor in soup.find_all("a", href=True):
        href = str(anchor["href"]).strip()
        if href.startswith(("mailto:", "tel:", "javascript:", "#")):
            continue
        out.append(urldefrag(urljoin(page.final_url, href))[0])
    return out


def crawl(
    client: httpx.Client,
    start_url: str,
    options: CrawlOptions | None = None,
    limits: FetchLimits | None = None,
) -> CrawlResult:
    """Fetch up to ``max_pages`` pages of the site of ``start_url`` (see the module docstring)."""
    options = options or CrawlOptions()
    limits = limits or FetchLimits()
    result = CrawlResult()
    split = urlsplit(start_url)
    origin = f"{split.scheme}://{split.netloc}/"
    robots, robot_sitemaps = _robots(client, origin, limits) if options.respect_robots else (None, [])

    def admissible(url: str) -> bool:
        if not _same_site(url, origin):
            return False
        if robots is not None and not robots.can_fetch(USER_AGENT, url):
            result.skipped.append((url, "disallowed by robots.txt"))
            return False
        if url != start_url and not _allowed_by_patterns(url, options):
            result.skipped.append((url, "excluded by the include/exclude patterns"))
            return False
        return True

    seen: set[str] = set()
    frontier: list[str] = []
    if options.use_sitemap:
        listed = _sitemap_urls(
            client, [*robot_sitemaps, urljoin(origin, "/sitemap.xml")], limits, options.max_pages
        )
        if listed:
            result.used_sitemap = True
            for url in listed:
                if url not in seen:
                    seen.add(url)
                    if admissible(url):
                        frontier.append(url)
    if not result.used_sitemap:
        seen.add(start_url)
        frontier = [start_url] if admissible(start_url) else []

    depth = 0
    with ThreadPoolExecutor(max_workers=options.concurrency) as pool:
        while frontier and len(result.pages) < options.max_pages:
            room = options.max_pages - len(result.pages)
            batch, overflow = frontier[:room], frontier[room:]
            result.skipped.extend((url, "over the max_pages limit") for url in overflow)
            outcomes = list(pool.map(lambda url: _try_fetch(client, url, limits), batch))
            next_frontier: list[str] = []
            for outcome in outcomes:
                if isinstance(outcome, FetchError):
                    result.failures.append(outcome)
                    continue
                result.pages.append(outcome)
                if result.used_sitemap or depth >= options.max_depth:
                    continue
                for link in _links(outcome):
                    if link not in seen:
                        seen.add(link)
                        if admissible(link):
                            next_frontier.append(link)
            frontier = next_frontier
            depth += 1
    return result


def _try_fetch(client: httpx.Client, url: str, limits: FetchLimits) -> Page | FetchError:
    try:
        return fetch_page(client, url, limits)
    except FetchError as exc:
        return exc


def is_supported(page: Page) -> bool:
    return page.content_type.startswith(_TEXT_TYPES + _DOCUMENT_TYPES) or page.content_type == ""
