"""``chatmill seed-demo``: a demo tenant to try Chatmill with.

Creates (or refreshes; running it again changes nothing else) the organization "Sunrise Bakery",
an owner login, a chatbot, a WhatsApp channel on Meta's sample phone_number_id ``106540352242922``
(the id in the webhook fixtures, so they route to it) using the platform app secret and verify token
(``WHATSAPP_APP_SECRET`` / ``WHATSAPP_VERIFY_TOKEN``), a price list with the pricing integration
enabled, and a knowledge source holding the bakery's FAQ, ingested at once (chunked and embedded
with the configured embedder, offline by default) so the assistant can answer from it right away.
Ids are fixed (uuid5), so scripts and docs can refer to them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from dataclasses import dataclass
from importlib import resources

import psycopg
from f.chatmill.lib.ingestion import ingest_source
from f.chatmill.lib.providers import ProviderConfig
from f.chatmill.lib.secretbox import SecretBox, hint

from chatmill.passwords import hash_password
from chatmill.settings import Settings

DEMO_NAMESPACE = uuid.UUID("5f0c7f8e-3b1a-4c47-9a58-2b1f4c6d7e80")
DEMO_PHONE_NUMBER_ID = "106540352242922"
DEMO_WABA_ID = "102290129340398"
DEMO_EMAIL = "owner@sunrise-bakery.example"
DEMO_PASSWORD = "Sunrise-demo-2026"  # noqa: S105 - development only, printed by the command
DEMO_ACCESS_TOKEN = "sandbox-access-token-demo"  # noqa: S105 - the local sandbox accepts any token
FAQ_FILE = "sunrise-bakery-faq.md"


def demo_id(name: str) -> uuid.UUID:
    return uuid.uuid5(DEMO_NAMESPACE, name)


@dataclass(frozen=True)
class Demo:
    organization_id: uuid.UUID
    owner_id: uuid.UUID
    chatbot_id: uuid.UUID
    channel_id: uuid.UUID
    source_id: uuid.UUID
    chunks: int = 0

    def describe(self, settings: Settings) -> str:
        return "\n".join(
            [
                "Demo data is ready.",
                f"  organization   {self.organization_id}  (Sunrise Bakery)",
                f"  owner login    {DEMO_EMAIL} / {DEMO_PASSWORD}",
                f"  chatbot        {self.chatbot_id}",
                f"  channel        {self.channel_id}  phone_number_id {DEMO_PHONE_NUMBER_ID}",
                f"  knowledge      {self.source_id}  ({FAQ_FILE}, {self.chunks} chunks)",
                f"  webhook URL    {settings.webhook_url()}",
            ]
        )


_ORGANIZATION = """
INSERT INTO organizations (id, name, billing_tier) VALUES (%(id)s, 'Sunrise Bakery', 'starter')
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, deleted_at = NULL
"""
_OWNER = """
INSERT INTO users (id, organization_id, email, password_hash, full_name, role)
VALUES (%(id)s, %(organization_id)s, %(email)s, %(password_hash)s, 'Demo Owner', 'owner')
ON CONFLICT DO NOTHING
"""
_CHATBOT = """
INSERT INTO chatbots (id, organization_id, name, system_prompt)
VALUES (%(id)s, %(organization_id)s, 'Sunrise Bakery assistant',
        'You are the assistant of Sunrise Bakery. Be warm and brief. Quote prices from the price list.')
ON CONFLICT (id) DO UPDATE SET deleted_at = NULL
"""
_CHANNEL = """
INSERT INTO whatsapp_channels (id, organization_id, chatbot_id, phone_number_id, waba_id, display_phone_number,
                               access_token_encrypted, access_token_hint)
VALUES (%(id)s, %(organization_id)s, %(chatbot_id)s, %(phone_number_id)s, %(waba_id)s, '+1 555 0100',
        %(access_token_encrypted)s, %(access_token_hint)s)
ON CONFLICT (id) DO UPDATE SET disconnected_at = NULL, access_token_encrypted = EXCLUDED.access_token_encrypted,
    access_token_hint = EXCLUDED.access_token_hint
"""
_PRICE_ITEM = """
INSERT INTO price_items (organization_id, sku, name, description, unit, unit_price_cents, currency)
VALUES (%(organization_id)s, %(sku)s, %(name)s, %(description)s, %(unit)s, %(cents)s, 'EUR')
ON CONFLICT (organization_id, sku) DO NOTHING
"""
_ENABLE_PRICING = """
INSERT INTO organization_integrations (organization_id, integration_id, config)
VALUES (%(organization_id)s, 'pricing', '{"currency": "EUR", "tax_rate_percent": 0}')
ON CONFLICT (organization_id, integration_id) DO NOTHING
"""
_SOURCE = """
INSERT INTO knowledge_sources (id, organization_id, chatbot_id, kind, name, file_name, content_type,
                               file_content, file_sha256)
VALUES (%(id)s, %(organization_id)s, %(chatbot_id)s, 'file', %(name)s, %(name)s, 'text/markdown',
        %(content)s, %(sha256)s)
ON CONFLICT (id) DO NOTHING
"""
_PRICES = [
    ("BREAD-SOURDOUGH", "Sourdough loaf", "Vegan, 800 g, baked daily", "loaf", 520),
    ("BREAD-GLUTENFREE", "Gluten-free bread", "Wednesdays and Saturdays", "loaf", 650),
    ("FOCACCIA-OLIVE", "Olive focaccia", "Vegan", "piece", 380),
    ("CAKE-CUSTOM-10", "Custom cake for 10 people", "3 days' notice", "cake", 3800),
    ("DELIVERY", "Delivery within 10 km", "Free for orders over 40 EUR", "order", 450),
]


class DemoConflict(RuntimeError):
    """The demo phone number is already connected to a chatbot of another organization."""


def seed_demo(database_url: str, settings: Settings) -> Demo:
    demo = Demo(
        organization_id=demo_id("organization"),
        owner_id=demo_id("owner"),
        chatbot_id=demo_id("chatbot"),
        channel_id=demo_id("channel"),
        source_id=demo_id("knowledge-faq"),
    )
    box = SecretBox([key.get_secret_value() for key in settings.encryption_keys])
    faq = resources.files("chatmill.demo").joinpath(FAQ_FILE).read_bytes()
    org = {"organization_id": demo.organization_id}
    with psycopg.connect(database_url) as conn, conn.transaction():
        holder = conn.execute(
            "SELECT id FROM whatsapp_channels WHERE phone_number_id = %s AND disconnected_at IS NULL",
            (DEMO_PHONE_NUMBER_ID,),
        ).fetchone()
        if holder is not None and holder[0] != demo.channel_id:
            raise DemoConflict(f"phone_number_id {DEMO_PHONE_NUMBER_ID} is connected to channel {holder[0]}")
        conn.execute(_ORGANIZATION, {"id": demo.organization_id})
        conn.execute(
            _OWNER,
            {**org, "id": demo.owner_id, "email": DEMO_EMAIL, "password_hash": hash_password(DEMO_PASSWORD)},
        )
        conn.execute(_CHATBOT, {**org, "id": demo.chatbot_id})
        conn.execute(
            _CHANNEL,
            {
                **org,
                "id": demo.channel_id,
                "chatbot_id": demo.chatbot_id,
                "phone_number_id": DEMO_PHONE_NUMBER_ID,
                "waba_id": DEMO_WABA_ID,
                "access_token_encrypted": box.encrypt(DEMO_ACCESS_TOKEN),
                "access_token_hint": hint(DEMO_ACCESS_TOKEN),
            },
        )
        for sku, name, description, unit, cents in _PRICES:
            conn.execute(
                _PRICE_ITEM,
                {**org, "sku": sku, "name": name, "description": description, "unit": unit, "cents": cents},
            )
        conn.execute(_ENABLE_PRICING, org)
        conn.execute(
            _SOURCE,
            {
                **org,
                "id": demo.source_id,
                "chatbot_id": demo.chatbot_id,
                "name": FAQ_FILE,
                "content": faq,
                "sha256": hashlib.sha256(faq).digest(),
            },
        )
    with psycopg.connect(database_url, autocommit=True) as conn:
        result = ingest_source(conn, demo.source_id, ProviderConfig.from_settings(settings))
    if result.status == "failed":
        raise RuntimeError(f"the demo FAQ could not be ingested: {result.error}")
    return dataclasses.replace(demo, chunks=result.chunks)
