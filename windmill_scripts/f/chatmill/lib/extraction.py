"""Clean text out of uploaded files and fetched pages: PDF, DOCX, HTML, Markdown, TXT, CSV.

    extract(body, name=…, content_type=…) -> Extracted(title, blocks)

A :class:`Block` is a paragraph-sized piece of text with the heading it sits under and, for PDFs,
its page number; :mod:`f.chatmill.lib.chunking` packs blocks into chunks. The format is chosen from
the content type and the file name, then **checked against the bytes** (a ``.pdf`` that does not
start with ``%PDF-``, a ``.docx`` that is not a Word zip, a "text" file with NUL bytes): a mismatch,
an encrypted PDF or a document without text raises :class:`ExtractionError` with a message meant for
the business owner.

Libraries: pypdf (pure Python, maintained, handles encryption flags and per-page text), python-docx
(paragraph styles give headings; tables are kept row by row), BeautifulSoup over lxml (tolerant
parsing of real-world HTML; boilerplate — scripts, navigation, headers, footers, cookie banners,
forms — is dropped and ``<main>``/``<article>`` preferred when present).
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath

FORMATS = ("pdf", "docx", "html", "markdown", "text", "csv")
_EXTENSIONS = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".html": "html",
    ".htm": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".csv": "csv",
}
_CONTENT_TYPES = {
    "application/pdf": "pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "docx",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "text/markdown": "markdown",
    "text/x-markdown": "markdown",
    "text/plain": "text",
    "text/csv": "csv",
}
_BOILERPLATE_TAGS = (
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "iframe",
    "button",
)
_BOILERPLATE_HINT = re.compile(
    r"cookie|consent|banner|navbar|menu|sidebar|breadcrumb|footer|header|share|advert|popup", re.I
)
_WHITESPACE = re.compile(r"[ \t\r\f\v\u00a0]+")


class ExtractionError(ValueError):
    """The document cannot be turned into text; the message says why, for the business owner."""


@dataclass(frozen=True)
class Block:
    text: str
    heading: str | None = None
    page: int | None = None


@dataclass
class Extracted:
    format: str
    title: str | None
    blocks: list[Block] = field(default_factory=list)

    @property
    def text(self) -> str:
        return "\n\n".join(block.text for block in self.blocks)


def detect_format(name: str | None, content_type: str | None) -> str:
    """The format named by the content type or, failing that, the file extension."""
    base = (content_type or "").split(";")[0].strip().lower()
    if base in _CONTENT_TYPES and base not in {"text/plain", "application/octet-stream"}:
        return _CONTENT_TYPES[base]
    suffix = PurePosixPath((name or "").split("?")[0]).suffix.lower()
    if suffix in _EXTENSIONS:
        return _EXTENSIONS[suffix]
    if base in _CONTENT_TYPES:
        return _CONTENT_TYPES[base]
    raise ExtractionError(
        f"unsupported file type {suffix or base or 'unknown'}: use PDF, DOCX, HTML, Markdown, TXT or CSV"
    )


def extract(body: bytes, *, name: str | None = None, content_type: str | None = None) -> Extracted:
    """Extract title and blocks; raises :class:`ExtractionError` for a bad, encrypted or empty file."""
    kind = detect_format(name, content_type)
    label = name or "the document"
    _check_signature(body, kind, label)
    if kind == "pdf":
        extracted = _pdf(body, label)
    elif kind == "docx":
        extracted = _docx(body, label)
    else:
        text = _decode(body, label)
        extracted = {"html": _html, "markdown": _markdown, "text": _plain, "csv": _csv}[kind](text)
    extracted.blocks = [block for block in extracted.blocks if block.text.strip()]
    if not extracted.blocks:
        raise ExtractionError(f"{label} contains no text (an empty page, or a scan without a text layer)")
    return extracted


def _check_signature(body: bytes, kind: str, label: str) -> None:
    if not body:
        raise ExtractionError(f"{label} is empty")
    head = body[:1024]
    if kind == "pdf" and b"%PDF-" not in head:
        raise ExtractionError(f"{label} is not a PDF file although its name or type says so")
    if kind == "docx":
        if not body.startswith(b"PK\x03\x04"):
            raise ExtractionError(f"{label} is not a DOCX (Word) file although its name or type says so")
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as archive:
                if "word/document.xml" not in archive.namelist():
                    raise ExtractionError(f"{label} is a zip archive but not a Word document")
        except zipfile.BadZipFile:
            raise ExtractionError(f"{label} is a damaged DOCX file") from None
    if kind in {"html", "markdown", "text", "csv"} and (
        b"\x00" in head or head.startswith((b"%PDF-", b"PK\x03\x04"))
    ):
        raise ExtractionError(f"{label} is a binary file, not {kind} text as its name or type says")


def _decode(body: bytes, label: str) -> str:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return body.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ExtractionError(f"{label} is not readable text")


def _clean(text: str) -> str:
    lines = [_WHITESPACE.sub(" ", line).strip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line)


# ---------------------------------------------------------------------------------------------- PDF


def _pdf(body: bytes, label: str) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(body))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ExtractionError(f"{label} is a password-protected PDF; upload it without a password")
        title = None
        if reader.metadata is not None and reader.metadata.title:
            title = str(reader.metadata.title).strip() or None
        blocks: list[Block] = []
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            for paragraph in re.split(r"\n\s*\n", text):
                cleaned = _clean(paragraph)
                if cleaned:
                    blocks.append(Block(cleaned.replace("\n", " "), page=number))
    except ExtractionError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        if "encrypt" in str(exc).lower() or "password" in str(exc).lower():
            raise ExtractionError(
                f"{label} is a password-protected PDF; upload it without a password"
            ) from None
        raise ExtractionError(f"{label} is a damaged PDF ({type(exc).__name__})") from None
    return Extracted("pdf", title, blocks)


# --------------------------------------------------------------------------------------------- DOCX


def _docx(body: bytes, label: str) -> Extracted:
    import docx

    try:
        document = docx.Document(io.BytesIO(body))
    except Exception as exc:  # python-docx raises assorted errors for damaged packages
        raise ExtractionError(f"{label} is a damaged DOCX file ({type(exc).__name__})") from None
    title = (document.core_properties.title or "").strip() or None
    blocks: list[Block] = []
    heading: str | None = None
    for paragraph in document.paragraphs:
        text = _clean(paragraph.text)
        if not text:
            continue
        style = (paragraph.style.name if paragraph.style is not None else "") or ""
        if style.lower().startswith("heading") or style.lower() == "title":
            heading = text
            title = title or text
            continue
        blocks.append(Block(text, heading=heading))
    for table in document.tables:
        for row in table.rows:
            cells = [_clean(cell.text) for cell in row.cells]
            line = " | ".join(cell for cell in cells if cell)
            if line:
                blocks.append(Block(line, heading=heading))
    return Extracted("docx", title, blocks)


# --------------------------------------------------------------------------------------------- HTML


def _html(text: str) -> Extracted:
    from bs4 import BeautifulSoup, Tag

    soup = BeautifulSoup(text, "lxml")
    title = _clean(soup.title.get_text()) if soup.title else None
    for tag in soup(list(_BOILERPLATE_TAGS)):
        tag.decompose()
    for tag in soup.find_all(True):
        if not isinstance(tag, Tag) or tag.attrs is None:
            continue
        hints = " ".join(
            [str(tag.get("id") or ""), " ".join(tag.get("class") or []), str(tag.get("role") or "")]
        )
        if tag.name not in {"html", "body", "main", "article"} and _BOILERPLATE_HINT.search(hints):
            tag.decompose()
    root = soup.find("main") or soup.find("article") or soup.body or soup
    blocks: list[Block] = []
    heading: str | None = None
    for element in root.find_all(
        ["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "blockquote", "tr", "dd", "dt"]
    ):
        if not isinstance(element, Tag):
            continue
        if element.name in {"p", "li", "blockquote", "dd", "dt"} and element.find_parent(
            ["li", "blockquote", "p"]
        ):
            continue  # nested: its parent already carries the text
        if element.name == "tr":
            cells = [_clean(cell.get_text(" ")) for cell in element.find_all(["td", "th"])]
            value = " | ".join(cell for cell in cells if cell)
        else:
            value = _clean(element.get_text(" ")).replace("\n", " ")
        if not value:
            continue
        if element.name.startswith("h") and element.name[1:].isdigit():
            heading = value
            title = title or value
            continue
        blocks.append(Block(value, heading=heading))
    if not blocks:  # a page of bare text without paragraph tags
        loose = _clean(root.get_text("\n"))
        blocks = [Block(line) for line in loose.split("\n") if line]
    return Extracted("html", title, blocks)


# ----------------------------------------------------------------------------------- Markdown, text

_MD_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MD_EMPHASIS = re.compile(r"(\*\*|__|\*|_|`)(.+?)\1")


def _markdown(text: str) -> Extracted:
    title: str | None = None
    heading: str | None = None
    blocks: list[Block] = []
    paragraph: list[str] = []

    def flush() -> None:
        if paragraph:
            value = _clean(" ".join(paragraph))
            if value:
                blocks.append(Block(value, heading=heading))
            paragraph.clear()

    for raw in text.splitlines():
        match = _MD_HEADING.match(raw)
        if match:
            flush()
            heading = _md_inline(match.group(2))
            title = title or heading
            continue
        line = raw.strip()
        if not line or line.startswith(("```", "---", "***")):
            flush()
            continue
        if re.match(r"^([-*+]|\d+[.)])\s+", line):  # list items are blocks of their own
            flush()
            paragraph.append(_md_inline(re.sub(r"^([-*+]|\d+[.)])\s+", "", line)))
            flush()
            continue
        paragraph.append(_md_inline(line.lstrip("> ")))
    flush()
    return Extracted("markdown", title, blocks)


def _md_inline(text: str) -> str:
    text = _MD_LINK.sub(r"\1", text)
    return _MD_EMPHASIS.sub(r"\2", text).strip()


def _plain(text: str) -> Extracted:
    blocks = [Block(_clean(part).replace("\n", " ")) for part in re.split(r"\n\s*\n", text)]
    return Extracted("text", None, [block for block in blocks if block.text])


def _csv(text: str) -> Extracted:
    dialect: type[csv.Dialect] | csv.Dialect
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    rows = [row for row in csv.reader(io.StringIO(text), dialect) if any(cell.strip() for cell in row)]
    if not rows:
        return Extracted("csv", None, [])
    header = [cell.strip() for cell in rows[0]]
    blocks = []
    for row in rows[1:]:
        pairs = [
            f"{name}: {value.strip()}" for name, value in zip(header, row, strict=False) if value.strip()
        ]
        if pairs:
            blocks.append(Block("; ".join(pairs)))
    if not blocks:  # a single line: no header
        blocks = [Block("; ".join(header))]
    return Extracted("csv", None, blocks)
