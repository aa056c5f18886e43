"""``/api/integrations``: the catalog of tools the assistant may use, and per-organization enablement.

``enable`` validates the config against the catalog row's ``config_schema`` (JSON Schema 2020-12,
formats checked) and fills the schema's defaults, then upserts; enabling again replaces the
config. ``DELETE`` disables (the config is kept for the next enable); disabling something not
enabled is 404. An unknown integration id in a body is 422.
"""

from __future__ import annotations

import json
from typing import Any

from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field

from chatmill.errors import NotFound, ValidationFailed
from management_api.db import connection, fetch_all, one
from management_api.endpoints import MANAGERS, SLUG_PATTERN, Context, Operation


class Integration(BaseModel):
    id: str
    name: str
    description: str
    config_schema: dict[str, Any]
    enabled: bool
    config: dict[str, Any]


class IntegrationList(BaseModel):
    items: list[Integration]


class EnableRequest(BaseModel):
    model_config = {
        "extra": "forbid",
        "json_schema_extra": {
            "examples": [{"integration_id": "pricing", "config": {"currency": "EUR", "tax_rate_percent": 21}}]
        },
    }
    integration_id: str = Field(pattern=SLUG_PATTERN)
    config: dict[str, Any] = Field(default_factory=dict)


_COLUMNS = """i.id, i.name, i.description, i.config_schema, coalesce(oi.enabled, false) AS enabled,
coalesce(oi.config, '{}'::jsonb) AS config"""
_CATALOG = f"""
SELECT {_COLUMNS} FROM integrations i
LEFT JOIN organization_integrations oi ON oi.integration_id = i.id AND oi.organization_id = %(organization_id)s
ORDER BY i.sort_order, i.id
"""
_ONE = f"""
SELECT {_COLUMNS} FROM integrations i
LEFT JOIN organization_integrations oi ON oi.integration_id = i.id AND oi.organization_id = %(organization_id)s
WHERE i.id = %(integration_id)s
"""
_UPSERT = """
INSERT INTO organization_integrations (organization_id, integration_id, enabled, config)
VALUES (%(organization_id)s, %(integration_id)s, true, %(config)s)
ON CONFLICT (organization_id, integration_id) DO UPDATE SET enabled = true, config = EXCLUDED.config
"""
_DISABLE = """
UPDATE organization_integrations SET enabled = false
WHERE organization_id = %(organization_id)s AND integration_id = %(integration_id)s AND enabled
RETURNING integration_id
"""


def _with_defaults(schema: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties", {})
    defaults = {
        name: prop["default"]
        for name, prop in properties.items()
        if isinstance(prop, dict) and "default" in prop
    }
    return defaults | config


def validate_config(schema: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """The config with defaults filled in, or 422 listing every violation."""
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    problems = [
        {
            "loc": ["body", "config", *(str(part) for part in error.absolute_path)],
            "message": error.message,
            "type": str(error.validator),
        }
        for error in sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if problems:
        raise ValidationFailed("the config does not match this integration's schema", details=problems)
    return _with_defaults(schema, config)


async def available_integrations(ctx: Context) -> IntegrationList:
    rows = await fetch_all(ctx.resources, _CATALOG, {"organization_id": ctx.org})
    return IntegrationList(items=[Integration.model_validate(row) for row in rows])


async def enable_integration(ctx: Context) -> Integration:
    body = ctx.body(EnableRequest)
    ids = {"organization_id": ctx.org, "integration_id": body.integration_id}
    async with connection(ctx.resources) as conn, conn.transaction():
        row = await one(conn, _ONE, ids)
        if row is None:
            raise ValidationFailed(
                f"unknown integration {body.integration_id!r}",
                details=[
                    {"loc": ["body", "integration_id"], "message": "unknown integration", "type": "enum"}
                ],
            )
        config = validate_config(row["config_schema"], body.config)
        await conn.execute(_UPSERT, ids | {"config": json.dumps(config)})
        row = await one(conn, _ONE, ids)
    return Integration.model_validate(row)


async def disable_integration(ctx: Context) -> None:
    ids = {"organization_id": ctx.org, "integration_id": ctx.path["integration_id"]}
    async with connection(ctx.resources) as conn:
        if await one(conn, _DISABLE, ids) is None:
            raise NotFound("this integration is not enabled")


_TAG = "integrations"
OPERATIONS = [
    Operation("GET", "/api/integrations/available", available_integrations,
              "The catalog, with this organization's enabled state and config", _TAG, response=IntegrationList),
    Operation("POST", "/api/integrations/enable", enable_integration, "Enable an integration (validated config)",
              _TAG, response=Integration, body=EnableRequest, roles=MANAGERS),
    Operation("DELETE", "/api/integrations/{integration_id}", disable_integration, "Disable an integration", _TAG,
              status=204, roles=MANAGERS),
]  # fmt: skip
