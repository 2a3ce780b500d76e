"""Diagnostics: what a resident can attach to a report, without the home credential."""

from __future__ import annotations

import json

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)
from pytest_homeassistant_custom_component.typing import ClientSessionGenerator

from .conftest import CREDENTIAL, NOW
from .fake_bridge import FakeBridge, FakeGrid, dr_event, notification, price_event, program


async def test_diagnostics(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    hass_client: ClientSessionGenerator,
) -> None:
    """The link, the signals held and their meaning, with the credential redacted."""
    await bridge.wait_for_ack(await bridge.publish(grid.sign(program("tariff"))))
    tariff = grid.sign(price_event("tou", start=NOW, prices=[0.5, 0.9]))
    await bridge.wait_for_ack(await bridge.publish(tariff))
    await bridge.wait_for_ack(await bridge.publish(grid.sign(dr_event("peak", start=NOW))))
    forged = {**grid.sign(dr_event("fake", start=NOW)), "eventName": "Forged"}
    await bridge.wait_for_ack(await bridge.push(notification(forged)))

    diagnostics = await get_diagnostics_for_config_entry(hass, hass_client, init_integration)

    assert CREDENTIAL not in json.dumps(diagnostics)
    entry = diagnostics["entry"]
    assert entry["data"]["api_token"] == "**REDACTED**"
    assert entry["data"]["url"] == bridge.url
    assert entry["data"]["placement"]["home"] == "h1"
    link = diagnostics["link"]
    assert link["connected"] is True
    assert link["last_seq"] == 4
    assert link["pinned_keys"] == [grid.public_key.kid]
    assert link["offered_keys"] == [grid.public_key.kid]
    assert abs(link["bridge_clock_offset_seconds"]) <= 1
    applied = {item["id"]: item for item in diagnostics["signals"]["applied"]}
    assert set(applied) == {"tariff", "tou", "peak"}
    assert applied["tou"]["intervals"] == 2
    assert applied["tou"]["issuer"] == "demo-grid"
    assert applied["tariff"]["program_name"] == "Program tariff"
    assert diagnostics["signals"]["rejected"] == 1
    assert diagnostics["signals"]["last_rejection"]["reason"] == "bad_signature"
    assert diagnostics["outlook"]["price"]["value"] == 0.5
    assert diagnostics["prices"]["today"]["maximum"] == 0.9
    assert [period["event_id"] for period in diagnostics["calendar"]] == ["peak"]
