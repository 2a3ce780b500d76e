"""The find_cheapest_window action, and the error handling every action shares."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from typing import Any

from homeassistant.const import CONF_API_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.util import dt as dt_util
from probatio import Invalid
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smart_community.const import CONF_KEYS, CONF_PLACEMENT, DOMAIN
from custom_components.smart_community.protocol import Placement, jwks
from custom_components.smart_community.services import loaded_entry, smart_community_action

from .conftest import NOW, async_setup_integration
from .fake_bridge import FakeBridge, FakeGrid, price_event

HOUR = timedelta(hours=1)
PRICES = [0.9, 0.5, 0.2, 0.4, 0.8]


async def _find(hass: HomeAssistant, **data: Any) -> ServiceResponse:
    return await hass.services.async_call(
        DOMAIN, "find_cheapest_window", data, blocking=True, return_response=True
    )


@pytest.fixture
async def priced(
    hass: HomeAssistant, mock_config_entry: MockConfigEntry, bridge: FakeBridge, grid: FakeGrid
) -> MockConfigEntry:
    """Home h1, set up with five hourly prices from now."""
    bridge.serve(grid.sign(price_event("tou", start=NOW, prices=PRICES)))
    await async_setup_integration(hass, mock_config_entry)
    return mock_config_entry


@pytest.mark.usefixtures("priced")
async def test_find_cheapest_window(hass: HomeAssistant) -> None:
    """The cheapest window of the length, in Home Assistant's time zone, with its unit."""
    assert await _find(hass, duration={"hours": 2}) == {
        "start": dt_util.as_local(NOW + 2 * HOUR).isoformat(),
        "end": dt_util.as_local(NOW + 4 * HOUR).isoformat(),
        "average_price": pytest.approx(0.3),
        "unit": "CNY/kWh",
    }


async def test_find_within_bounds(hass: HomeAssistant, priced: MockConfigEntry) -> None:
    """Earliest start and latest end bound the window; times without a zone are local."""
    local_now = dt_util.as_local(NOW).replace(tzinfo=None)
    response = await _find(
        hass,
        config_entry=priced.entry_id,
        duration={"minutes": 30},
        earliest_start=(local_now + HOUR / 2).isoformat(),
        latest_end=(local_now + 2 * HOUR).isoformat(),
    )
    assert response["start"] == dt_util.as_local(NOW + HOUR).isoformat()
    assert response["average_price"] == pytest.approx(0.5)
    # An earliest start in the past means now.
    response = await _find(
        hass, duration={"hours": 1}, earliest_start=(local_now - 5 * HOUR).isoformat()
    )
    assert response["start"] == dt_util.as_local(NOW + 2 * HOUR).isoformat()


@pytest.mark.usefixtures("priced")
@pytest.mark.parametrize(
    ("data", "key", "placeholders"),
    [
        ({"duration": {"hours": 6}}, "window_not_covered", {"hours": "6"}),
        (
            {"duration": {"hours": 2}, "latest_end": (NOW + HOUR).isoformat()},
            "invalid_range",
            {"hours": "2"},
        ),
        (
            {"duration": {"hours": 1}, "earliest_start": (NOW + 6 * HOUR).isoformat()},
            "no_prices",
            {},
        ),
    ],
)
async def test_find_errors(
    hass: HomeAssistant, data: dict[str, Any], key: str, placeholders: dict[str, str]
) -> None:
    """A question without an answer is a translated validation error that says why."""
    with pytest.raises(ServiceValidationError) as raised:
        await _find(hass, **data)
    assert raised.value.translation_domain == DOMAIN
    assert raised.value.translation_key == key
    assert (raised.value.translation_placeholders or {}) == placeholders
    assert str(raised.value)  # the message is rendered from the translation


@pytest.mark.usefixtures("priced")
async def test_find_without_a_length(hass: HomeAssistant) -> None:
    """A window of no length is refused, and a negative one by the action's schema."""
    with pytest.raises(ServiceValidationError) as raised:
        await _find(hass, duration={"hours": 0})
    assert raised.value.translation_key == "invalid_duration"
    with pytest.raises(Invalid):
        await _find(hass, duration={"hours": -1})


async def test_entry_must_be_loaded_and_named(
    hass: HomeAssistant, priced: MockConfigEntry, grid: FakeGrid
) -> None:
    """With several homes the entry is needed; an unloaded one is refused."""
    other = MockConfigEntry(
        domain=DOMAIN,
        title="h2 (c1)",
        unique_id="c1/h2",
        data={
            CONF_URL: "http://127.0.0.1:9",
            CONF_API_TOKEN: "h2",
            CONF_PLACEMENT: asdict(Placement("c1", "f1", "t1", "h2")),
            CONF_KEYS: jwks([grid.public_key]),
        },
    )
    other.add_to_hass(hass)
    with pytest.raises(ServiceValidationError) as raised:
        await _find(hass, duration={"hours": 1}, config_entry=other.entry_id)
    assert raised.value.translation_key == "service_config_entry_not_loaded"
    assert await _find(hass, duration={"hours": 1}, config_entry=priced.entry_id)


@pytest.mark.usefixtures("init_integration")
async def test_no_prices(hass: HomeAssistant) -> None:
    """A home that knows no prices says so."""
    with pytest.raises(ServiceValidationError) as raised:
        await _find(hass, duration={"hours": 1})
    assert raised.value.translation_key == "no_prices"


@pytest.mark.parametrize(
    ("break_bridge", "key"),
    [
        (lambda bridge: setattr(bridge, "available", False), "communication_error"),
        (lambda bridge: setattr(bridge, "credential", "revoked"), "authentication_failed"),
        (lambda bridge: setattr(bridge, "broken", True), "invalid_response"),
    ],
)
async def test_bridge_failures_in_actions(
    hass: HomeAssistant,
    priced: MockConfigEntry,
    bridge: FakeBridge,
    break_bridge: Any,
    key: str,
) -> None:
    """An action that talks to the bridge turns its failures into translated errors."""

    @smart_community_action
    async def ask_the_bridge(call: ServiceCall) -> ServiceResponse:
        placement = await loaded_entry(call).runtime_data.coordinator.client.get_home()
        return {"home": placement.home}

    hass.services.async_register(
        DOMAIN, "ask_the_bridge", ask_the_bridge, supports_response=SupportsResponse.ONLY
    )
    assert await hass.services.async_call(
        DOMAIN, "ask_the_bridge", blocking=True, return_response=True
    ) == {"home": "h1"}

    break_bridge(bridge)
    with pytest.raises(HomeAssistantError) as raised:
        await hass.services.async_call(
            DOMAIN, "ask_the_bridge", blocking=True, return_response=True
        )
    assert raised.value.translation_key == key
    if key == "authentication_failed":
        flows = hass.config_entries.flow.async_progress_by_handler(DOMAIN)
        assert [flow["context"]["source"] for flow in flows] == ["reauth"]
