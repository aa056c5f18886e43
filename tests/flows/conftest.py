from __future__ import annotations

from typing import Any

import pytest

from tests import factories
from tests.webhooks import SAMPLE_PHONE_NUMBER_ID

FAQ = """# Opening hours
We are open Monday to Friday from 7:00 to 19:00 and on Saturday from 8:00 to 16:00.

# Delivery
We deliver within 10 km for 4.50 EUR; free for orders over 40 EUR.
"""


@pytest.fixture
def channel(db: factories.Conn) -> dict[str, Any]:
    organization = factories.create_organization(db)
    chatbot = factories.create_chatbot(db, organization, debounce_ms=0)
    return factories.create_channel(db, chatbot, phone_number_id=SAMPLE_PHONE_NUMBER_ID)
