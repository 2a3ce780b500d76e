"""Enrolling a home through the config flow."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import asdict
from unittest.mock import AsyncMock, patch

from homeassistant.config_entries import SOURCE_USER
from homeassistant.const import CONF_API_TOKEN, CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smart_community.bridge_client import (
    BridgeAuthenticationError,
    BridgeConnectionError,
    BridgeResponseError,
)
from custom_components.smart_community.const import CONF_KEYS, CONF_PLACEMENT, DOMAIN
from custom_components.smart_community.protocol import jwks

from .conftest import CREDENTIAL, PLACEMENT
from .fake_bridge import FakeGrid

pytestmark = pytest.mark.usefixtures("mock_setup_entry")

URL = "http://bridge.local:8080"


@pytest.fixture
def bridge_url() -> str:
    """The flow never connects: the client is mocked."""
    return URL


@pytest.fixture
def mock_client(grid: FakeGrid) -> Generator[AsyncMock]:
    """A bridge client that knows home h1 and offers the grid's key."""
    with patch(
        "custom_components.smart_community.config_flow.BridgeClient", autospec=True
    ) as client_class:
        client = client_class.return_value
        client.get_home.return_value = PLACEMENT
        client.get_keys.return_value = [grid.public_key]
        yield client


@pytest.mark.usefixtures("mock_client")
async def test_user_flow(hass: HomeAssistant, grid: FakeGrid) -> None:
    """The home is tested, shown with the key fingerprints, then created."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {}

    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input={CONF_URL: f"{URL}/", CONF_API_TOKEN: f" {CREDENTIAL} "}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "confirm"
    placeholders = result["description_placeholders"]
    assert placeholders is not None
    assert placeholders["home"] == "h1"
    assert placeholders["community"] == "c1"
    assert grid.public_key.kid in placeholders["fingerprints"]

    result = await hass.config_entries.flow.async_configure(result["flow_id"], user_input={})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "h1 (c1)"
    entry = result["result"]
    assert entry.unique_id == "c1/h1"
    assert entry.data == {
        CONF_URL: URL,
        CONF_API_TOKEN: CREDENTIAL,
        CONF_PLACEMENT: asdict(PLACEMENT),
        CONF_KEYS: jwks([grid.public_key]),
    }


@pytest.mark.parametrize(
    ("side_effect", "expected_errors"),
    [
        (BridgeConnectionError("refused"), {CONF_URL: "cannot_connect"}),
        (BridgeAuthenticationError("401"), {CONF_API_TOKEN: "invalid_auth"}),
        (BridgeResponseError("404"), {CONF_URL: "invalid_response"}),
        (RuntimeError("boom"), {"base": "unknown"}),
    ],
)
async def test_user_flow_errors(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    side_effect: Exception,
    expected_errors: dict[str, str],
) -> None:
    """Each failure is shown on the form, and the user can try again."""
    mock_client.get_home.side_effect = side_effect
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_USER},
        data={CONF_URL: URL, CONF_API_TOKEN: "wrong"},
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == expected_errors

    mock_client.get_home.side_effect = None
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], user_input={CONF_URL: URL, CONF_API_TOKEN: CREDENTIAL}
    )
    assert result["step_id"] == "confirm"
    result = await hass.config_entries.flow.async_configure(result["flow_id"], user_input={})
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.usefixtures("mock_client")
async def test_already_configured(hass: HomeAssistant, mock_config_entry: MockConfigEntry) -> None:
    """A home that is set up already is not added twice."""
    mock_config_entry.add_to_hass(hass)
    result = await hass.config_entries.flow.async_init(
        DOMAIN,
        context={"source": SOURCE_USER},
        data={CONF_URL: URL, CONF_API_TOKEN: CREDENTIAL},
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
