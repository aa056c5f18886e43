"""The WhatsApp library's pure parts: payload builders, split_text, error classification."""

from __future__ import annotations

import httpx
import pytest
from f.chatmill.lib.whatsapp import (
    TEXT_LIMIT,
    WhatsAppError,
    classify,
    read_receipt,
    split_text,
    text_message,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def test_text_message_matches_the_cloud_api_shape() -> None:
    assert text_message("16505551234", "Hello", reply_to="wamid.IN") == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "16505551234",
        "type": "text",
        "text": {"preview_url": False, "body": "Hello"},
        "context": {"message_id": "wamid.IN"},
    }
    assert "context" not in text_message("16505551234", "Hello")


def test_text_message_refuses_over_4096_and_empty() -> None:
    assert len(text_message("1650555", "x" * TEXT_LIMIT)["text"]["body"]) == 4096
    with pytest.raises(ValueError, match="4097 characters"):
        text_message("1650555", "x" * (TEXT_LIMIT + 1))
    with pytest.raises(ValueError, match="empty"):
        text_message("1650555", "  ")


def test_read_receipt_with_and_without_typing_indicator() -> None:
    assert read_receipt("wamid.IN") == {
        "messaging_product": "whatsapp",
        "status": "read",
        "message_id": "wamid.IN",
        "typing_indicator": {"type": "text"},
    }
    assert "typing_indicator" not in read_receipt("wamid.IN", typing=False)


def test_split_prefers_paragraphs_then_sentences_then_words() -> None:
    first = "A" * 3000 + "."
    second = "B" * 2000 + "."
    assert split_text(f"{first}\n\n{second}") == [first, second]
    # No paragraph break: the cut falls after the last sentence that fits.
    one = ("Short sentence. " * 200).strip()  # 3199 characters
    two = "Another one here. " * 100
    parts = split_text(one + " " + two.strip())
    assert all(part.endswith(".") for part in parts)
    assert all(len(part) <= TEXT_LIMIT for part in parts)
    # No sentence end at all: cut between words.
    words = " ".join(["word"] * 1500)  # 7499 characters
    parts = split_text(words)
    assert [len(part) for part in parts] == [4094, 3404]
    assert all(not part.startswith(" ") and not part.endswith(" ") for part in parts)


def test_split_keeps_a_closing_quote_with_its_sentence() -> None:
    text = 'He said "stop." ' + "x " * 20
    assert split_text(text, limit=20)[0] == 'He said "stop."'


def test_split_cuts_a_word_longer_than_the_limit() -> None:
    assert split_text("abcdefghij", limit=4) == ["abcd", "efgh", "ij"]
    assert split_text("   ") == []
    assert split_text("short") == ["short"]


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(
        alphabet=st.sampled_from(list("ab .!?\n\t\"'é😀")) | st.characters(codec="utf-8"), max_size=600
    ),
    limit=st.integers(min_value=1, max_value=80),
)
def test_split_never_exceeds_never_drops_keeps_order(text: str, limit: int) -> None:
    parts = split_text(text, limit=limit)
    assert all(0 < len(part) <= limit for part in parts)
    assert all(part == part.strip() for part in parts)
    # Nothing but whitespace at the cuts is lost, and parts appear in the text in order.
    assert "".join("".join(parts).split()) == "".join(text.split())
    position = 0
    for part in parts:
        found = text.find(part, position)
        assert found >= 0
        position = found + len(part)


@pytest.mark.parametrize(
    ("code", "status", "expected", "retryable"),
    [
        (1, 500, "transient", True),
        (2, 503, "transient", True),
        (131000, 500, "transient", True),
        (131016, 503, "transient", True),
        (131057, 503, "transient", True),
        (4, 400, "rate_limit", True),
        (80007, 400, "rate_limit", True),
        (130429, 400, "rate_limit", True),
        (131056, 400, "pair_rate_limit", True),
        (131047, 400, "window_closed", False),
        (131026, 400, "permanent", False),
        (131050, 400, "permanent", False),
        (130403, 400, "permanent", False),
        (131051, 400, "permanent", False),
        (131048, 400, "permanent", False),
        (368, 400, "permanent", False),
        (100, 400, "permanent", False),
        (132001, 400, "permanent", False),
        (190, 401, "auth", False),
        (0, 401, "auth", False),
        (10, 403, "auth", False),
        (200, 403, "auth", False),
        (299, 403, "auth", False),
        (None, None, "transient", True),  # network failure
        (999999, 503, "transient", True),  # unknown code: the HTTP status decides
        (999999, 429, "rate_limit", True),
        (999999, 400, "permanent", False),
    ],
)
def test_classification_follows_the_error_code_table(
    code: int | None, status: int | None, expected: str, retryable: bool
) -> None:
    error = WhatsAppError("x", code=code, http_status=status)
    assert classify(code, status) == expected
    assert error.classification == expected
    assert error.retryable is retryable


def test_throttling_behind_http_400_is_still_retryable() -> None:
    response = httpx.Response(
        400,
        json={
            "error": {
                "message": "(#131056) pair rate limit hit",
                "type": "OAuthException",
                "code": 131056,
                "error_data": {"messaging_product": "whatsapp", "details": "slow down"},
                "fbtrace_id": "Axyz",
            }
        },
    )
    error = WhatsAppError.from_response(response)
    assert (error.code, error.http_status, error.title, error.details) == (
        131056,
        400,
        "OAuthException",
        "slow down",
    )
    assert error.retryable
    assert [error.backoff_seconds(n) for n in (1, 2, 3)] == [4.0, 16.0, 64.0]
    assert error.as_dict()["classification"] == "pair_rate_limit"


def test_a_non_json_error_body_is_classified_by_status() -> None:
    error = WhatsAppError.from_response(httpx.Response(502, text="<html>bad gateway</html>"))
    assert (error.code, error.classification, error.retryable) == (None, "transient", True)
    assert WhatsAppError("x", code=131047, http_status=400).backoff_seconds(1) == 0.0
    assert WhatsAppError("x", code=190).alert_tenant
    assert WhatsAppError("x", code=131048).alert_tenant
