"""How ``chatmill dev`` includes the local runner and the WhatsApp sandbox."""

from __future__ import annotations

import asyncio

import pytest

from chatmill import devserver
from chatmill.runner.flowfile import FlowLoadError
from chatmill.settings import Settings
from tests.conftest import make_settings


def test_the_runner_runs_unless_windmill_is_configured() -> None:
    assert list(devserver.background_tasks(make_settings())) == ["runner"]
    windmill = make_settings(windmill_url="http://windmill:8000", windmill_token="t" * 40)
    assert devserver.background_tasks(windmill) == {}


def test_the_sandbox_is_served_only_when_the_graph_api_points_at_it() -> None:
    assert devserver.app_specs(make_settings(sandbox_port=18003))["sandbox"].port == 18003
    assert "sandbox" not in devserver.app_specs(
        make_settings(whatsapp_graph_url="https://graph.facebook.com")
    )


def test_a_failing_background_part_ends_dev_with_status_1() -> None:
    async def refuses(settings: Settings, stop: asyncio.Event) -> None:
        raise FlowLoadError("f/x__flow/flow.yaml", "unsupported module type 'branchone'", module_id="pick")

    status = asyncio.run(devserver.serve(make_settings(), [], background={"runner": refuses}))
    assert status == 1


@pytest.mark.parametrize("fails", [False, True])
def test_background_parts_are_told_to_stop_when_a_server_ends(fails: bool) -> None:
    stopped: list[bool] = []

    async def part(settings: Settings, stop: asyncio.Event) -> None:
        await stop.wait()
        stopped.append(True)

    async def ends(settings: Settings, stop: asyncio.Event) -> None:
        if fails:
            raise RuntimeError("boom")

    status = asyncio.run(devserver.serve(make_settings(), [], background={"part": part, "ends": ends}))
    assert stopped == [True]
    assert status == (1 if fails else 0)
