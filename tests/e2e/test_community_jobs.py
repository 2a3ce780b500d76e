"""End to end, the community's own jobs under the grid's delegation: a resident asks for a PV
grid connection in Home Assistant; the community grants what its delegation allows, the grid
decides the rest, and the export limit the home must keep reaches its sensor, signed by the
community and verified against the grid's key alone."""

from __future__ import annotations

from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
import pytest

from custom_components.smart_community.const import DOMAIN
from smart_community_bridge.state import AUTHORITY

from .stack import Stack, setup_home, state, wait_for


@pytest.fixture
def grid_settings() -> dict[str, Any]:
    """The grid delegates connections up to 10 kW and 6 kW of t1's capacity to the community,
    and decides larger requests itself, granting up to 10 kW."""
    return {
        "delegation": {
            "lifetime": 3600,
            "grants": {"EXPORT_CAPACITY_LIMIT": {"min": 0, "max": 10}},
            "hosting_kw": {"t1": 6},
        },
        "interconnection": {"approve_up_to_kw": 10},
    }


async def ask(hass: HomeAssistant, capacity: float, serial: str) -> dict[str, Any]:
    response = await hass.services.async_call(
        DOMAIN,
        "request_grid_connection",
        {
            "capacity": capacity,
            "inverter_make": "Acme",
            "inverter_model": "PV",
            "inverter_serial": serial,
        },
        blocking=True,
        return_response=True,
    )
    assert isinstance(response, dict)
    return response


async def resources(stack: Stack, credential: str) -> dict[str, str]:
    """What the bridge tells the home of its requests: resource name -> status."""
    headers = {"Authorization": f"Bearer {credential}"}
    async with stack.session.get(f"{stack.bridge_url}/resources", headers=headers) as response:
        found = await response.json()
    return {
        r["resourceName"]: next(
            a["values"][0] for a in r["attributes"] if a["type"] == "X_CONNECTION_STATUS"
        )
        for r in found
    }


async def test_grid_connections_granted_by_the_community_or_decided_by_the_grid(
    hass: HomeAssistant, stack: Stack
) -> None:
    await setup_home(hass, stack)
    entry = hass.config_entries.async_entries(DOMAIN)[0]
    ids = {
        e.translation_key: e.entity_id
        for e in er.async_entries_for_config_entry(er.async_get(hass), entry.entry_id)
    }
    authority = stack.bridge[AUTHORITY]
    await wait_for(lambda: authority.current is not None, "the grid's delegation to the bridge")
    assert authority.current is not None
    assert authority.current.hosting_kw == {"transformer:c1/t1": 6.0}

    # Within the delegation: the community grants it at once, and signs the export limit.
    granted = await ask(hass, 5, "SN-1")
    assert granted["status"] == "GRANTED"
    await wait_for(
        lambda: state(hass, ids["export_limit"]) == "5.0", "the community's export limit"
    )

    # Beyond what the community may grant: the grid decides, and refuses it.
    refused = await ask(hass, 12, "SN-2")
    assert refused["status"] == "REQUESTED"
    # Within the grid's own limit but beyond t1's capacity left to the community: the grid grants.
    forwarded = await ask(hass, 4, "SN-3")
    assert forwarded["status"] == "REQUESTED"
    credential = entry.data["api_token"]
    decided = await resources(stack, credential)
    assert decided == {"PV SN-1": "GRANTED", "PV SN-2": "REFUSED", "PV SN-3": "GRANTED"}
    # The grid's own grant, signed by the grid, reaches the home as well.
    rejected = ids["rejected_signals"]
    assert state(hass, rejected) == "0"
