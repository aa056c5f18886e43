"""Property-based fuzzing of every operation in ``/api/openapi.json`` with schemathesis, in-process.

Each operation gets a bounded number of generated requests, valid ones (positive mode) and invalid
ones (negative mode), sent as an authenticated owner; half of the requests use the ids of real
rows instead of random UUIDs, so handlers run deep instead of stopping at 404. Every response must
be a non-5xx whose status code, content type, headers and body are the ones the document declares.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from chatmill.settings import Settings
from management_api.app import create_app
from management_api.security import issue_access_token
from tests import factories

EXAMPLES_PER_OPERATION = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 8}
CHECKS = {
    GenerationMode.POSITIVE: [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_headers_conformance,
        response_schema_conformance,
    ],
    GenerationMode.NEGATIVE: [not_a_server_error, status_code_conformance, response_schema_conformance],
}


def _graph(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"messages": [{"id": "wamid.fuzz"}]})


@pytest.mark.timeout(240)
def test_every_operation_survives_fuzzing(settings: Settings, db: psycopg.Connection[Any]) -> None:
    organization = factories.create_organization(db, billing_tier="enterprise")
    owner = factories.create_user(db, organization, role="owner")
    agent = factories.create_user(db, organization, role="agent")
    chatbot = factories.create_chatbot(db, organization)
    channel = factories.create_channel(db, chatbot)
    conversation = factories.create_conversation(db, channel, last_inbound_at=None)
    message = factories.create_message(db, conversation)
    source = factories.create_knowledge_source(db, chatbot)
    factories.create_lead(db, chatbot)
    real_ids = {
        "chatbot_id": str(chatbot["id"]),
        "channel_id": str(channel["id"]),
        "conversation_id": str(conversation["id"]),
        "message_id": str(message["id"]),
        "source_id": str(source["id"]),
        "member_id": str(agent["id"]),
        "integration_id": "pricing",
    }

    def credentials() -> dict[str, str]:
        token, _ = issue_access_token(
            settings, user_id=owner["id"], organization_id=organization["id"], role="owner"
        )
        return {"Authorization": f"Bearer {token}"}

    app = create_app(settings, transport=httpx.MockTransport(_graph))
    schema = schemathesis.openapi.from_asgi("/api/openapi.json", app)
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) >= 40

    for mode in EXAMPLES_PER_OPERATION:
        for operation in operations:
            try:
                _fuzz(operation, mode, credentials, real_ids)
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE  # nothing to break in a request without inputs
            except (Exception, BaseExceptionGroup) as exc:  # schemathesis reports a FailureGroup
                failures.append(f"{mode.value} {operation.label}: {str(exc)[:1500]}")

    assert not failures, "\n\n".join(failures)


def _fuzz(
    operation: Any, mode: GenerationMode, credentials: Callable[[], dict[str, str]], real_ids: dict[str, str]
) -> None:
    @hypothesis_settings(
        max_examples=EXAMPLES_PER_OPERATION[mode],
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), use_real_ids=st.booleans())
    def fuzz(case: Any, use_real_ids: bool) -> None:
        if use_real_ids and case.path_parameters:
            case.path_parameters = {name: real_ids[name] for name in case.path_parameters}
        # A fresh token for every request: the fuzzer also calls logout, which revokes the token it sends.
        case.call_and_validate(headers=credentials(), checks=CHECKS[mode])

    fuzz()
