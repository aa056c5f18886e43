from __future__ import annotations

from f.chatmill.ping_database import main

from chatmill.runner.references import postgres_resource


def test_ping_reports_the_server_version_through_the_resource(database_url: str) -> None:
    result = main(postgres_resource(database_url))  # type: ignore[arg-type]
    assert result["ok"] is True
    assert str(result["server_version"]).split(".")[0].isdigit()
