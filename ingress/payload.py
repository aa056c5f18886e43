"""Reading a WhatsApp webhook body into plain records.

A body carries ``entry[] × changes[] × value.{messages, statuses, errors}`` (up to 1000 updates).
Every inbound message, whatever its type, becomes one :class:`InboundMessage` with a text rendering
the LLM can read (``text``) and the media metadata needed to download it later (``media``); every
status becomes a :class:`StatusUpdate`. Nothing here touches the database.

Which messages are answered (get an outbox row): text, media (image, audio, video, document,
sticker), location, contacts, interactive replies, template quick-reply buttons and orders.
Reactions, ``unsupported`` messages (edits, polls, …: answering an edit would look like a second
reply) and ``system`` notices are stored but not answered.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

MESSAGE_TYPES = frozenset(
    {
        "text",
        "image",
        "audio",
        "video",
        "document",
        "sticker",
        "location",
        "contacts",
        "interactive",
        "button",
        "reaction",
        "order",
        "system",
        "unsupported",
    }
)
MEDIA_TYPES = frozenset({"image", "audio", "video", "document", "sticker"})
NOT_ANSWERED = frozenset({"reaction", "unsupported", "system"})
STATUS_VALUES = frozenset({"sent", "delivered", "read", "played", "failed"})


class PayloadError(ValueError):
    """The body is not a WhatsApp Business webhook we can read."""


@dataclass(frozen=True)
class InboundMessage:
    phone_number_id: str
    wamid: str
    wa_id: str | None
    user_id: str | None
    profile_name: str | None
    username: str | None
    type: str
    text: str
    media: dict[str, Any] | None
    context_wamid: str | None
    forwarded: bool
    timestamp: dt.datetime
    payload: dict[str, Any]

    @property
    def answerable(self) -> bool:
        return self.type not in NOT_ANSWERED


@dataclass(frozen=True)
class StatusUpdate:
    phone_number_id: str
    wamid: str
    status: str
    timestamp: dt.datetime
    recipient_id: str | None
    error_code: int | None
    error_title: str | None
    payload: dict[str, Any]


@dataclass
class Batch:
    """Everything one POST carried."""

    messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # change-level errors, per number
    skipped: list[str] = field(default_factory=list)  # items we could not read: why
    phone_number_ids: set[str] = field(default_factory=set)


def parse_batch(document: Any) -> Batch:
    """Walk every entry × change.

    A body of the wrong shape raises :class:`PayloadError` (the whole POST is refused). One unreadable
    message or status inside a good body is skipped and reported in ``Batch.skipped``, so it cannot
    make Meta redeliver, forever, the valid updates it came with.
    """
    if not isinstance(document, dict) or document.get("object") != "whatsapp_business_account":
        raise PayloadError('expected an object with "object": "whatsapp_business_account"')
    entries = document.get("entry")
    if not isinstance(entries, list):
        raise PayloadError('"entry" must be a list')
    batch = Batch()
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("changes", []), list):
            raise PayloadError('each entry must be an object with a "changes" list')
        for change in entry.get("changes", []):
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                raise PayloadError('each change must carry a "value" object')
            try:
                _read_value(value, batch)
            except PayloadError as exc:
                batch.skipped.append(str(exc))
    return batch


def _read_value(value: dict[str, Any], batch: Batch) -> None:
    metadata = value.get("metadata")
    phone_number_id = metadata.get("phone_number_id") if isinstance(metadata, dict) else None
    if not isinstance(phone_number_id, str) or not phone_number_id:
        if value.get("messages") or value.get("statuses"):
            raise PayloadError("a change with messages or statuses must name metadata.phone_number_id")
        return  # e.g. an account update without a number: nothing for us
    batch.phone_number_ids.add(phone_number_id)
    contacts = [c for c in _list(value, "contacts") if isinstance(c, dict)]
    for raw in _list(value, "messages"):
        try:
            batch.messages.append(_message(phone_number_id, raw, contacts))
        except PayloadError as exc:
            batch.skipped.append(str(exc))
    for raw in _list(value, "statuses"):
        try:
            batch.statuses.append(_status(phone_number_id, raw))
        except PayloadError as exc:
            batch.skipped.append(str(exc))
    for raw in _list(value, "errors"):
        if isinstance(raw, dict):
            batch.errors.append({"phone_number_id": phone_number_id, **raw})


def _list(value: dict[str, Any], key: str) -> list[Any]:
    items = value.get(key, [])
    if not isinstance(items, list):
        raise PayloadError(f'"{key}" must be a list')
    return items


def _timestamp(raw: Any) -> dt.datetime:
    try:
        return dt.datetime.fromtimestamp(int(raw), tz=dt.UTC)
    except (TypeError, ValueError, OverflowError, OSError) as exc:
        raise PayloadError(f"timestamp {raw!r} is not Unix seconds") from exc


def _contact_for(raw: dict[str, Any], contacts: list[dict[str, Any]]) -> dict[str, Any]:
    sender = raw.get("from")
    sender_user = raw.get("from_user_id")
    for contact in contacts:
        if (sender and contact.get("wa_id") == sender) or (
            sender_user and contact.get("user_id") == sender_user
        ):
            return contact
    return contacts[0] if len(contacts) == 1 else {}


def _message(phone_number_id: str, raw: Any, contacts: list[dict[str, Any]]) -> InboundMessage:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
        raise PayloadError('each message must be an object with an "id"')
    contact = _contact_for(raw, contacts)
    wa_id = _str(raw.get("from")) or _str(contact.get("wa_id"))
    user_id = _str(raw.get("from_user_id")) or _str(contact.get("user_id"))
    if wa_id is None and user_id is None:
        raise PayloadError(f'message {raw["id"]} names no sender (neither "from" nor a user_id)')
    profile = _dict(contact.get("profile"))
    kind = str(raw["type"]) if raw.get("type") in MESSAGE_TYPES else "unsupported"
    context = _dict(raw.get("context"))
    reaction = _dict(raw.get("reaction")) if kind == "reaction" else {}
    forwarded = bool(context.get("forwarded") or context.get("frequently_forwarded"))
    text = render(kind, raw)
    if forwarded:
        text = f"[forwarded] {text}"
    media = raw.get(kind) if kind in MEDIA_TYPES and isinstance(raw.get(kind), dict) else None
    return InboundMessage(
        phone_number_id=phone_number_id,
        wamid=raw["id"],
        wa_id=wa_id,
        user_id=user_id,
        profile_name=_str(profile.get("name")),
        username=_str(profile.get("username")) or _str(contact.get("username")),
        type=kind,
        text=text,
        media=dict(media) if media else None,
        context_wamid=_str(context.get("id")) or _str(reaction.get("message_id")),
        forwarded=forwarded,
        timestamp=_timestamp(raw.get("timestamp")),
        payload=raw,
    )


def _status(phone_number_id: str, raw: Any) -> StatusUpdate:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
        raise PayloadError('each status must be an object with an "id"')
    status = raw.get("status")
    if status not in STATUS_VALUES:
        raise PayloadError(f"unknown status {status!r}")
    errors = raw.get("errors") if isinstance(raw.get("errors"), list) else []
    first_error = errors[0] if errors and isinstance(errors[0], dict) else {}
    code = first_error.get("code")
    return StatusUpdate(
        phone_number_id=phone_number_id,
        wamid=raw["id"],
        status=str(status),
        timestamp=_timestamp(raw.get("timestamp")),
        recipient_id=_str(raw.get("recipient_id")),
        error_code=code if isinstance(code, int) else None,
        error_title=_str(first_error.get("title")),
        payload=raw,
    )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def render(kind: str, raw: dict[str, Any]) -> str:
    """A one-line text for the LLM and the dashboard, for every message type."""
    inner = raw.get(kind)
    body: dict[str, Any] = inner if isinstance(inner, dict) else {}
    match kind:
        case "text":
            return str(body.get("body", ""))
        case "image" | "video" | "sticker" | "document":
            label = {"image": "image", "video": "video", "sticker": "sticker", "document": "document"}[kind]
            parts = [p for p in (body.get("filename"), body.get("caption")) if p]
            return f"[{label}{': ' + ' — '.join(parts) if parts else ''}]"
        case "audio":
            return "[voice message]" if body.get("voice") else "[audio]"
        case "location":
            place = ", ".join(str(p) for p in (body.get("name"), body.get("address")) if p)
            coords = f"{body.get('latitude')}, {body.get('longitude')}"
            return f"[location: {place + ' ' if place else ''}({coords})]"
        case "contacts":
            shared = raw.get("contacts")
            cards: list[Any] = shared if isinstance(shared, list) else []
            return "[shared contact: " + "; ".join(_contact_card(card) for card in cards) + "]"
        case "interactive":
            reply = body.get("button_reply") or body.get("list_reply") or {}
            description = f" — {reply['description']}" if reply.get("description") else ""
            return f"{reply.get('title', '')}{description}"
        case "button":
            return str(body.get("text") or body.get("payload") or "")
        case "reaction":
            if body.get("emoji"):
                return f"[reacted {body['emoji']} to a message]"
            return "[removed a reaction]"
        case "order":
            products = body.get("product_items")
            items: list[Any] = products if isinstance(products, list) else []
            return f"[order: {len(items)} item(s)]" + (f" {body['text']}" if body.get("text") else "")
        case "system":
            return str(body.get("body", "[system notice]"))
        case _:
            what = body.get("type")
            return f"[unsupported message{': ' + str(what) if what else ''}]"


def _contact_card(card: Any) -> str:
    if not isinstance(card, dict):
        return "?"
    name = card.get("name", {}).get("formatted_name") if isinstance(card.get("name"), dict) else None
    phones = [p.get("phone") for p in card.get("phones", []) if isinstance(p, dict) and p.get("phone")]
    return ", ".join(str(p) for p in [name, *phones] if p) or "?"
