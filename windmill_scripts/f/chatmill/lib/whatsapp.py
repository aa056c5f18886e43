"""WhatsApp Cloud API client library (no ``main``: imported as ``f.chatmill.lib.whatsapp``).

Three parts, all pure except the clients:

- payload builders: :func:`text_message` (refuses bodies over 4096 characters) and
  :func:`read_receipt` (marks an inbound message read, optionally with a typing indicator);
- :func:`split_text`: cuts a long answer into parts of at most ``limit`` characters, preferring
  paragraph, then sentence, then word boundaries, and cutting inside a word only when a single word
  is longer than the limit. Text is never dropped or reordered: only the whitespace *at* a cut is
  removed (each part is stripped), so joining the parts with whitespace gives the text back;
- :class:`WhatsAppError`: a Cloud API failure classified by Meta's ``error.code`` (never by the HTTP
  status alone: throttling can come back as 400), with ``retryable``;
- :class:`WhatsAppClient` (sync, ``httpx.Client``) and :class:`AsyncWhatsAppClient`
  (``httpx.AsyncClient``): ``send`` → wamid, ``mark_read``, ``media`` (``GET /<version>/<media_id>``)
  and ``download_media``.

The clients take the Graph base URL and API version as arguments (``settings.graph_url`` and
``settings.whatsapp_api_version`` at the call site); they never read settings. Retrying is the
caller's job (tenacity in the flow steps), guided by ``WhatsAppError.retryable`` and
:meth:`WhatsAppError.backoff_seconds`.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypedDict, cast

import httpx

TEXT_LIMIT = 4096
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)

Classification = Literal["transient", "rate_limit", "pair_rate_limit", "window_closed", "permanent", "auth"]

RETRYABLE: frozenset[str] = frozenset({"transient", "rate_limit", "pair_rate_limit"})

# Meta's error codes, per ../shared/design/WHATSAPP.md ("Errors"). Anything not listed is decided by
# :func:`classify` from the HTTP status.
_TRANSIENT_CODES = frozenset({1, 2, 131000, 131016, 131057})
_RATE_LIMIT_CODES = frozenset({4, 80007, 130429})
PAIR_RATE_LIMIT_CODE = 131056
WINDOW_CLOSED_CODE = 131047
MAINTENANCE_CODE = 131057
_PERMANENT_CODES = frozenset(
    {
        131026, 131050, 130403, 131051,  # undeliverable / opted out / blocked / unsupported
        131048, 131049, 368, 130497, 131031,  # quality or integrity limits
        100, 131008, 131009, 131021,  # bad request
    }
)  # fmt: skip
# Quality / integrity limits: permanent, and the tenant should be alerted (possibly stopped).
INTEGRITY_CODES = frozenset({131048, 131049, 368, 130497, 131031})
_AUTH_CODES = frozenset({0, 3, 10, 190})


def classify(code: int | None, http_status: int | None = None) -> Classification:
    """Classify a Cloud API error by ``error.code``; the HTTP status decides only unknown codes."""
    if code is not None:
        if code in _TRANSIENT_CODES:
            return "transient"
        if code in _RATE_LIMIT_CODES:
            return "rate_limit"
        if code == PAIR_RATE_LIMIT_CODE:
            return "pair_rate_limit"
        if code == WINDOW_CLOSED_CODE:
            return "window_closed"
        if code in _PERMANENT_CODES or 132000 <= code <= 132999:
            return "permanent"
        if code in _AUTH_CODES or 200 <= code <= 299:
            return "auth"
    if http_status is None or http_status >= 500 or http_status == 408:
        return "transient"  # no answer at all (network) or a server error
    if http_status == 429:
        return "rate_limit"
    if http_status in (401, 403):
        return "auth"
    return "permanent"


class WhatsAppError(Exception):
    """A Cloud API call failed. ``code`` is Meta's ``error.code`` (None for network failures)."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        title: str | None = None,
        http_status: int | None = None,
        subcode: int | None = None,
        details: str | None = None,
        fbtrace_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.title = title
        self.http_status = http_status
        self.subcode = subcode
        self.details = details
        self.fbtrace_id = fbtrace_id
        self.classification: Classification = classify(code, http_status)

    @property
    def retryable(self) -> bool:
        return self.classification in RETRYABLE

    @property
    def alert_tenant(self) -> bool:
        """Auth problems and quality/integrity limits need a human at the business."""
        return self.classification == "auth" or self.code in INTEGRITY_CODES

    def backoff_seconds(self, attempt: int) -> float:
        """Suggested wait before retry number ``attempt`` (1-based); 0 when not retryable.

        131056 (pair rate limit): 4^attempt s for that recipient; 131057 (maintenance): ~60 s;
        other retryable errors: 2^attempt s (callers add jitter).
        """
        if not self.retryable:
            return 0.0
        attempt = max(1, attempt)
        if self.classification == "pair_rate_limit":
            return float(4**attempt)
        if self.code == MAINTENANCE_CODE:
            return 60.0
        return float(2**attempt)

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe description (no token, no request body) for step results and logs."""
        return {
            "message": self.message,
            "code": self.code,
            "title": self.title,
            "http_status": self.http_status,
            "classification": self.classification,
            "retryable": self.retryable,
        }

    def __str__(self) -> str:
        code = f" (code {self.code})" if self.code is not None else ""
        status = f" HTTP {self.http_status}" if self.http_status is not None else ""
        return f"{self.message}{code}{status}"

    @classmethod
    def from_response(cls, response: httpx.Response) -> WhatsAppError:
        """Parse Meta's ``{"error": {"message", "type", "code", "error_data": {"details"}, …}}``."""
        try:
            body = response.json()
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            return cls(
                f"unexpected HTTP {response.status_code} from the Graph API", http_status=response.status_code
            )
        code = error.get("code")
        subcode = error.get("error_subcode")
        data = error.get("error_data")
        details = data.get("details") if isinstance(data, dict) else None
        return cls(
            str(error.get("message") or "Graph API error"),
            code=code if isinstance(code, int) else None,
            title=error.get("error_user_title") or error.get("title") or error.get("type"),
            http_status=response.status_code,
            subcode=subcode if isinstance(subcode, int) else None,
            details=details if isinstance(details, str) else None,
            fbtrace_id=error.get("fbtrace_id"),
        )


# --- payload builders ---------------------------------------------------------------------------


def text_message(
    to: str, body: str, *, reply_to: str | None = None, preview_url: bool = False
) -> dict[str, Any]:
    """A text message payload; ``reply_to`` (an inbound wamid) adds the reply context."""
    if not to:
        raise ValueError("text_message: recipient 'to' is empty")
    if not body or not body.strip():
        raise ValueError("text_message: body is empty")
    if len(body) > TEXT_LIMIT:
        raise ValueError(
            f"text_message: body is {len(body)} characters, over WhatsApp's {TEXT_LIMIT}; use split_text"
        )
    payload: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "text",
        "text": {"preview_url": preview_url, "body": body},
    }
    if reply_to:
        payload["context"] = {"message_id": reply_to}
    return payload


def read_receipt(message_id: str, *, typing: bool = True) -> dict[str, Any]:
    """Mark an inbound message read; ``typing`` also shows the typing indicator (≤ ~25 s)."""
    if not message_id:
        raise ValueError("read_receipt: message_id is empty")
    payload: dict[str, Any] = {"messaging_product": "whatsapp", "status": "read", "message_id": message_id}
    if typing:
        payload["typing_indicator"] = {"type": "text"}
    return payload


# --- splitting ----------------------------------------------------------------------------------

# Group 1 is the whitespace the cut removes; the part ends where it starts.
_PARAGRAPH = re.compile(r"(\n[ \t]*\n\s*)")
_SENTENCE = re.compile(r"[.!?…。！？][\"')\]»”’]*(\s+)")
_WORD = re.compile(r"(\s+)")


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split ``text`` into stripped parts of at most ``limit`` characters, in order.

    Cuts at the last paragraph break that fits, else the last sentence end, else the last
    whitespace; a boundary that would leave a part less than half full is used only when no finer
    boundary fills it better. A word longer than ``limit`` is cut hard. Whitespace-only text gives
    ``[]``.
    """
    if limit < 1:
        raise ValueError("split_text: limit must be positive")
    parts: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        cut, resume = _best_cut(rest, limit)
        part = rest[:cut].rstrip()
        if part:
            parts.append(part)
        rest = rest[resume:].lstrip()
    if rest:
        parts.append(rest)
    return parts


def _best_cut(text: str, limit: int) -> tuple[int, int]:
    """(end of this part, start of the rest) for a text longer than ``limit``."""
    window = text[: limit + 1]  # a boundary right after the limit still lets the part fill it
    candidates: list[tuple[int, int]] = []
    for pattern in (_PARAGRAPH, _SENTENCE, _WORD):
        best: tuple[int, int] | None = None
        for match in pattern.finditer(window):
            if 0 < match.start(1) <= limit:
                best = (match.start(1), match.end(1))
        candidates.append(best or (0, 0))
    for cut, resume in candidates:
        if cut > 0 and cut >= limit // 2:
            return cut, resume
    for cut, resume in candidates:
        if cut > 0:
            return cut, resume
    return limit, limit


# --- clients ------------------------------------------------------------------------------------


class MediaInfo(TypedDict, total=False):
    id: str
    url: str
    mime_type: str
    sha256: str
    file_size: int
    messaging_product: str


def graph_base(graph_url: str, api_version: str) -> str:
    """``https://graph.facebook.com/v21.0`` from the two settings."""
    return f"{graph_url.rstrip('/')}/{api_version.strip('/')}"


def _headers(access_token: str) -> dict[str, str]:
    if not access_token:
        raise ValueError("WhatsApp access token is empty")
    return {"Authorization": f"Bearer {access_token}"}


def _checked(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise WhatsAppError.from_response(response)
    try:
        body = response.json()
    except ValueError:
        raise WhatsAppError(
            "the Graph API answered with a non-JSON body", http_status=response.status_code
        ) from None
    if not isinstance(body, dict):
        raise WhatsAppError(
            "the Graph API answered with an unexpected body", http_status=response.status_code
        )
    return body


def _wamid(body: dict[str, Any], status: int) -> str:
    messages = body.get("messages")
    if isinstance(messages, list) and messages and isinstance(messages[0], dict):
        wamid = messages[0].get("id")
        if isinstance(wamid, str) and wamid:
            return wamid
    raise WhatsAppError("the Graph API accepted the message but returned no wamid", http_status=status)


def _network_error(exc: httpx.HTTPError) -> WhatsAppError:
    return WhatsAppError(f"Graph API unreachable: {type(exc).__name__}: {exc}")


class WhatsAppClient:
    """Blocking client (for Windmill steps). Pass ``http`` to share a client or inject a transport."""

    def __init__(self, graph_url: str, api_version: str, *, http: httpx.Client | None = None) -> None:
        self.base_url = graph_base(graph_url, api_version)
        self._own_http = http is None
        self._http = http or httpx.Client(timeout=DEFAULT_TIMEOUT)

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> WhatsAppClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, phone_number_id: str, access_token: str, payload: dict[str, Any]) -> httpx.Response:
        try:
            return self._http.post(
                f"{self.base_url}/{phone_number_id}/messages", json=payload, headers=_headers(access_token)
            )
        except httpx.HTTPError as exc:
            raise _network_error(exc) from exc

    def send(self, phone_number_id: str, access_token: str, payload: dict[str, Any]) -> str:
        """Send a message payload; return its wamid (accepted, not yet delivered)."""
        response = self._post(phone_number_id, access_token, payload)
        return _wamid(_checked(response), response.status_code)

    def mark_read(
        self, phone_number_id: str, access_token: str, message_id: str, *, typing: bool = True
    ) -> None:
        _checked(self._post(phone_number_id, access_token, read_receipt(message_id, typing=typing)))

    def media(self, media_id: str, access_token: str) -> MediaInfo:
        """``GET /<version>/<media_id>``: a short-lived download URL (5 minutes) and metadata."""
        try:
            response = self._http.get(f"{self.base_url}/{media_id}", headers=_headers(access_token))
        except httpx.HTTPError as exc:
            raise _network_error(exc) from exc
        return cast(MediaInfo, _checked(response))

    def download_media(self, url: str, access_token: str) -> bytes:
        try:
            response = self._http.get(url, headers=_headers(access_token))
        except httpx.HTTPError as exc:
            raise _network_error(exc) from exc
        if response.status_code >= 400:
            raise WhatsAppError.from_response(response)
        return response.content


class AsyncWhatsAppClient:
    """The same calls for async apps (``httpx.AsyncClient``)."""

    def __init__(self, graph_url: str, api_version: str, *, http: httpx.AsyncClient | None = None) -> None:
        self.base_url = graph_base(graph_url, api_version)
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=DEFAULT_TIMEOUT)

    async def aclose(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncWhatsAppClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _post(self, phone_number_id: str, access_token: str, payload: dict[str, Any]) -> httpx.Response:
        try:
            return await self._http.post(
                f"{self.base_url}/{phone_number_id}/messages", json=payload, headers=_headers(access_token)
            )
        except httpx.HTTPError as exc:
            raise _network_error(exc) from exc

    async def send(self, phone_number_id: str, access_token: str, payload: dict[str, Any]) -> str:
        response = await self._post(phone_number_id, access_token, payload)
        return _wamid(_checked(response), response.status_code)

    async def mark_read(
        self, phone_number_id: str, access_token: str, message_id: str, *, typing: bool = True
    ) -> None:
        _checked(await self._post(phone_number_id, access_token, read_receipt(message_id, typing=typing)))

    async def media(self, media_id: str, access_token: str) -> MediaInfo:
        try:
            response = await self._http.get(f"{self.base_url}/{media_id}", headers=_headers(access_token))
        except httpx.HTTPError as exc:
            raise _network_error(exc) from exc
        return cast(MediaInfo, _checked(response))

    async def download_media(self, url: str, access_token: str) -> bytes:
        try:
            response = await self._http.get(url, headers=_headers(access_token))
        except httpx.HTTPError as exc:
            raise _network_error(exc) from exc
        if response.status_code >= 400:
            raise WhatsAppError.from_response(response)
        return response.content
