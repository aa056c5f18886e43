"""The OpenAPI 3.1 document, built from the operation table and the pydantic models it validates with.

Request and response schemas are ``pydantic`` JSON Schemas (validation mode for input, serialization
mode for output) collected into ``components/schemas``; parameters come from the path template
(ids are UUIDs, ``integration_id`` a slug) and the query model; error responses are derived from
what each operation can refuse (see :attr:`Operation.error_statuses`). Nothing is written by hand
per endpoint, so the document cannot drift from what the code enforces.
"""

from __future__ import annotations

import copy
import inspect
import sys
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from management_api.endpoints import EVERYONE, SLUG_PARAMS, SLUG_PATTERN, Operation

REF = "#/components/schemas/{model}"
_STATUS_TEXT = {
    200: "OK",
    201: "Created",
    204: "No Content",
    400: "Bad request",
    401: "Missing, invalid, expired or revoked credentials",
    403: "The caller's role does not allow this action",
    404: "Not found (also for another organization's resources)",
    409: "Conflict with the current state",
    413: "Request body too large",
    415: "Unsupported media type",
    422: "Validation failed (details lists every problem)",
    429: "Rate limited; retry after Retry-After seconds",
    500: "Unexpected error (logged with the request id)",
    501: "Not implemented yet",
    502: "An upstream service (WhatsApp) refused the request",
    503: "A dependency is unavailable; retry later",
}


class ErrorInfo(BaseModel):
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["chatbot not found"])
    details: Any = Field(default=None, description="present for validation errors and some conflicts")


class ErrorResponse(BaseModel):
    """Every failure, in one shape."""

    error: ErrorInfo


def _drop_null(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter cannot be JSON null: keep only the non-null branch of ``X | None``."""
    options = schema.get("anyOf")
    if isinstance(options, list):
        rest = [option for option in options if option != {"type": "null"}]
        if len(rest) == 1:
            merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "anyOf"} | dict(rest[0])
            if merged.get("default", 0) is None:
                merged.pop("default")
            return merged
    return schema


def _parameters(op: Operation, components: dict[str, Any]) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = []
    for name in op.path_params:
        path_schema = (
            {"type": "string", "pattern": SLUG_PATTERN}
            if name in SLUG_PARAMS
            else {"type": "string", "format": "uuid"}
        )
        parameters.append({"name": name, "in": "path", "required": True, "schema": path_schema})
    if op.query is not None:
        schema: dict[str, Any] = op.query.model_json_schema(ref_template=REF)
        components.update(schema.pop("$defs", {}))
        required = set(schema.get("required", []))
        properties: dict[str, Any] = schema.get("properties", {})
        for name, prop in properties.items():
            prop = _drop_null(dict(prop))
            description = prop.pop("description", None)
            prop.pop("title", None)
            parameter: dict[str, Any] = {
                "name": name,
                "in": "query",
                "required": name in required,
                "schema": prop,
            }
            if description:
                parameter["description"] = description
            parameters.append(parameter)
    return parameters


def _example(model: type[BaseModel]) -> Any:
    extra = model.model_config.get("json_schema_extra")
    if isinstance(extra, dict):
        examples = extra.get("examples")
        if isinstance(examples, list) and examples:
            return examples[0]
    return None


def body_example(model: type[BaseModel]) -> Any:
    """The first documented example of a request body model (used by docs and tests)."""
    return copy.deepcopy(_example(model))


def _responses(op: Operation, refs: dict[tuple[type[BaseModel], str], dict[str, Any]]) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": _STATUS_TEXT.get(op.status, "OK")}
    if op.media_type == "text/csv":
        ok["content"] = {"text/csv": {"schema": {"type": "string"}}}
    elif op.response is not None:
        ok["content"] = {"application/json": {"schema": refs[(op.response, "serialization")]}}
    responses: dict[str, Any] = {str(op.status): ok}
    for status in op.error_statuses:
        responses[str(status)] = {"$ref": f"#/components/responses/Error{status}"}
    return responses


def _operation(
    op: Operation, refs: dict[tuple[type[BaseModel], str], dict[str, Any]], components: dict[str, Any]
) -> dict[str, Any]:
    roles = "public (no token)" if op.roles is None else ", ".join(sorted(op.roles))
    entry: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "description": (op.description + "\n\n" if op.description else "") + f"Roles: {roles}.",
        "tags": [op.tag],
        "responses": _responses(op, refs),
        "security": [] if op.roles is None else [{"bearerAuth": []}],
    }
    if op.roles is not None and op.roles != EVERYONE:
        entry["x-roles"] = sorted(op.roles)
    parameters = _parameters(op, components)
    if parameters:
        entry["parameters"] = parameters
    if op.body is not None:
        schema = refs[(op.body, "validation")]
        if op.body_kind == "multipart":
            content = {
                "multipart/form-data": {
                    "schema": schema,
                    "encoding": {"file": {"contentType": "application/octet-stream"}},
                }
            }
        else:
            content = {"application/json": {"schema": schema}}
            example = _example(op.body)
            if example is not None:
                content["application/json"]["example"] = example
        entry["requestBody"] = {"required": True, "content": content}
    return entry


def build_openapi(operations: Sequence[Operation], *, version: str = "0.1.0") -> dict[str, Any]:
    inputs: list[tuple[type[BaseModel], JsonSchemaMode]] = [(ErrorResponse, "serialization")]
    for op in operations:
        if op.body is not None:
            inputs.append((op.body, "validation"))
        if op.response is not None:
            inputs.append((op.response, "serialization"))
    unique = list(dict.fromkeys(inputs))
    refs_by_key, top = models_json_schema(unique, ref_template=REF)
    refs: dict[tuple[type[BaseModel], str], dict[str, Any]] = {}
    for (model, mode), ref in refs_by_key.items():
        assert isinstance(model, type)
        assert issubclass(model, BaseModel)
        refs[(model, mode)] = dict(ref)
    components: dict[str, Any] = dict(top.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    tags: dict[str, str] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs, components)
        # A tag is described by the docstring of the module that implements it (the decisions live there).
        module = sys.modules.get(op.handler.__module__)
        tags.setdefault(op.tag, inspect.cleandoc(module.__doc__ or "") if module else "")
    error_ref = refs[(ErrorResponse, "serialization")]
    responses = {}
    for status, text in _STATUS_TEXT.items():
        if status < 400:
            continue
        response: dict[str, Any] = {
            "description": text,
            "content": {"application/json": {"schema": error_ref}},
        }
        if status == 429:
            response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
        responses[f"Error{status}"] = response
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Chatmill management API",
            "version": version,
            "description": (
                "The dashboard's backend. Authenticate with `POST /api/auth/login` and send "
                "`Authorization: Bearer <access_token>`. Every resource is scoped to the caller's "
                "organization: another organization's id answers 404. Errors always look like "
                '`{"error": {"code", "message", "details"?}}`. Lists use opaque keyset cursors.'
            ),
        },
        "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
        "tags": [{"name": name, "description": text} for name, text in tags.items()],
        "paths": paths,
        "components": {
            "schemas": components,
            "responses": responses,
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        },
    }
