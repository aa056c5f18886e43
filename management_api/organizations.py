"""``/api/organizations``: usage against the tier's limits, and the billing tier.

Usage is the current calendar month in UTC (``usage_monthly``, written by the flows). Decisions:
"messages used" counts inbound and outbound messages; "tokens used" counts prompt, completion and
embedding tokens. A NULL limit means unlimited. Changing tier records the new tier only (payment is
outside this product); a downgrade below what is already in use is allowed and only blocks
creating more chatbots or channels.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from pydantic import BaseModel, Field

from chatmill.errors import NotFound, ValidationFailed
from management_api.db import connection, fetch_all, one
from management_api.endpoints import OWNERS, Context, Operation


class Tier(BaseModel):
    code: str
    name: str
    monthly_message_limit: int | None
    monthly_token_limit: int | None
    max_chatbots: int | None
    max_channels: int | None
    price_cents: int


class Meter(BaseModel):
    used: int
    limit: int | None = Field(description="null: unlimited")


class Usage(BaseModel):
    tier: Tier
    period_start: date
    period_end: date = Field(description="exclusive")
    messages: Meter
    tokens: Meter
    chatbots: Meter
    channels: Meter
    messages_in: int
    messages_out: int
    prompt_tokens: int
    completion_tokens: int
    embedding_tokens: int


class Billing(BaseModel):
    tier: Tier
    available_tiers: list[Tier]


class BillingChange(BaseModel):
    model_config = {"json_schema_extra": {"examples": [{"tier": "starter"}]}}
    tier: str = Field(min_length=1, max_length=32)


_TIER_COLUMNS = "t.code, t.name, t.monthly_message_limit, t.monthly_token_limit, t.max_chatbots, t.max_channels, t.price_cents"
_USAGE = f"""
SELECT {_TIER_COLUMNS},
       coalesce(u.messages_in, 0) AS messages_in, coalesce(u.messages_out, 0) AS messages_out,
       coalesce(u.prompt_tokens, 0) AS prompt_tokens, coalesce(u.completion_tokens, 0) AS completion_tokens,
       coalesce(u.embedding_tokens, 0) AS embedding_tokens,
       (SELECT count(*) FROM chatbots c
         WHERE c.organization_id = o.id AND c.deleted_at IS NULL) AS chatbot_count,
       (SELECT count(*) FROM whatsapp_channels w
         WHERE w.organization_id = o.id AND w.disconnected_at IS NULL) AS channel_count
FROM organizations o
JOIN billing_tiers t ON t.code = o.billing_tier
LEFT JOIN usage_monthly u ON u.organization_id = o.id AND u.period = %(period)s
WHERE o.id = %(organization_id)s
"""
_TIERS = f"SELECT {_TIER_COLUMNS} FROM billing_tiers t ORDER BY t.sort_order, t.code"
_CURRENT_TIER = f"""
SELECT {_TIER_COLUMNS} FROM organizations o JOIN billing_tiers t ON t.code = o.billing_tier
WHERE o.id = %(organization_id)s
"""
_SET_TIER = """
UPDATE organizations SET billing_tier = %(tier)s WHERE id = %(organization_id)s AND deleted_at IS NULL
RETURNING id
"""


def current_period(now: datetime | None = None) -> tuple[date, date]:
    today = (now or datetime.now(UTC)).date()
    start = today.replace(day=1)
    end = date(start.year + 1, 1, 1) if start.month == 12 else date(start.year, start.month + 1, 1)
    return start, end


async def usage(ctx: Context) -> Usage:
    start, end = current_period()
    async with connection(ctx.resources) as conn:
        row = await one(conn, _USAGE, {"organization_id": ctx.org, "period": start})
    if row is None:
        raise NotFound("organization not found")
    tier = Tier.model_validate(row)
    tokens = row["prompt_tokens"] + row["completion_tokens"] + row["embedding_tokens"]
    return Usage(
        tier=tier,
        period_start=start,
        period_end=end,
        messages=Meter(used=row["messages_in"] + row["messages_out"], limit=tier.monthly_message_limit),
        tokens=Meter(used=tokens, limit=tier.monthly_token_limit),
        chatbots=Meter(used=row["chatbot_count"], limit=tier.max_chatbots),
        channels=Meter(used=row["channel_count"], limit=tier.max_channels),
        **{
            k: row[k]
            for k in ("messages_in", "messages_out", "prompt_tokens", "completion_tokens", "embedding_tokens")
        },
    )


async def _billing(ctx: Context) -> Billing:
    async with connection(ctx.resources) as conn:
        current = await one(conn, _CURRENT_TIER, {"organization_id": ctx.org})
    if current is None:
        raise NotFound("organization not found")
    tiers = await fetch_all(ctx.resources, _TIERS)
    return Billing(tier=Tier.model_validate(current), available_tiers=[Tier.model_validate(t) for t in tiers])


async def get_billing(ctx: Context) -> Billing:
    return await _billing(ctx)


async def change_billing(ctx: Context) -> Billing:
    body = ctx.body(BillingChange)
    tiers = {row["code"] for row in await fetch_all(ctx.resources, _TIERS)}
    if body.tier not in tiers:
        raise ValidationFailed(
            f"unknown tier {body.tier!r}",
            details=[{"loc": ["body", "tier"], "message": f"one of {sorted(tiers)}", "type": "enum"}],
        )
    async with connection(ctx.resources) as conn:
        await one(conn, _SET_TIER, {"tier": body.tier, "organization_id": ctx.org})
    return await _billing(ctx)


OPERATIONS = [
    Operation("GET", "/api/organizations/usage", usage, "Usage this month against the tier's limits",
              "organizations", response=Usage),
    Operation("GET", "/api/organizations/billing", get_billing, "Current tier and the tiers available",
              "organizations", response=Billing),
    Operation("PUT", "/api/organizations/billing", change_billing, "Change the billing tier (owner only)",
              "organizations", response=Billing, body=BillingChange, roles=OWNERS),
]  # fmt: skip
