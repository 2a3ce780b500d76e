"""Enrolling a home through the config flow: enrollment code, reauthentication, reconfiguration."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import asdict
from typing import Any
from unittest.mock import AsyncMock, patch

from homeassistant.config_entries import SOURCE_USER, ConfigFlowResult
from homeassistant.const import CONF_API_TOKEN, CONF_CODE, CONF_URL
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.smart_community.bridge_client import (
    BridgeAuthenticationError,
    BridgeConnectionError,
    BridgeResponseError,
    Enrollment,
    EnrollmentRefusedError,
)
from custom_components.smart_community.const import CONF_KEYS, CONF_PLACEMENT, DOMAIN
from custom_components.smart_community.protocol import Placement, jwks

from .conftest import CREDENTIAL, PLACEMENT
from .fake_bridge import FakeGrid

pytestmark = pytest.mark.usefixtures("mock_setup_entry")

URL = "http://bridge.local:8080"
CODE = "ABCD-EFGH-JKLM-NPQR-STUV-WXYZ"
NEW_CREDENTIAL = "sch_new-credential"


@pytest.fixture
def bridge_url() -> str:
    """The flow never connects: the client is mocked."""
    return URL


@pytest.fixture
def mock_client(grid: FakeGrid) -> Generator[AsyncMock]:
    """A bridge client that offers the grid's key and redeems the code for home h1."""
    with patch(
        "custom_components.smart_community.config_flow.BridgeClient", autospec=True
    ) as client_class:
        client = client_class.return_value
        client.get_keys.return_value = [grid.public_key]
        client.get_home.return_value = PLACEMENT
        client.enroll.return_value = Enrollment(placement=PLACEMENT, credential=NEW_CREDENTIAL)
        yield client


async def start(hass: HomeAssistant) -> str:
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    assert result["errors"] == {}
    return str(result["flow_id"])


async def test_user_flow(hass: HomeAssistant, grid: FakeGrid, mock_client: AsyncMock) -> None:
    """The keys are shown before the code is used; then the home is created with its credential."""
    flow_id = await start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input={CONF_URL: f"{URL}/", CONF_CODE: f" {CODE} "}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "confirm"
    placeholders = result["description_placeholders"]
    assert placeholders is not None
    assert placeholders["url"] == URL
    assert grid.public_key.kid in placeholders["fingerprints"]
    mock_client.enroll.assert_not_called()  # nothing is spent before the resident confirms

    result = await hass.config_entries.flow.async_configure(flow_id, user_input={})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    mock_client.enroll.assert_awaited_once_with(CODE)
    assert result["title"] == "h1 (c1)"
    entry = result["result"]
    assert entry.unique_id == "c1/h1"
    assert entry.data == {
        CONF_URL: URL,
        CONF_API_TOKEN: NEW_CREDENTIAL,
        CONF_PLACEMENT: asdict(PLACEMENT),
        CONF_KEYS: jwks([grid.public_key]),
    }


def suggested(result: ConfigFlowResult) -> dict[str, Any]:
    """The values a form shows filled in."""
    return {
        str(key): key.description["suggested_value"]
        for key in result["data_schema"].schema
        if key.description and "suggested_value" in key.description
    }


@pytest.mark.parametrize(
    ("side_effect", "expected_errors"),
    [
        (BridgeConnectionError("refused"), {CONF_URL: "cannot_connect"}),
        (BridgeResponseError("404"), {CONF_URL: "invalid_response"}),
        (RuntimeError("boom"), {CONF_URL: "unknown"}),
    ],
)
async def test_bridge_errors_before_the_code_is_used(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    side_effect: Exception,
    expected_errors: dict[str, str],
) -> None:
    """Each failure is shown on the form, and the resident can try again."""
    mock_client.get_keys.side_effect = side_effect
    flow_id = await start(hass)
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input={CONF_URL: URL, CONF_CODE: CODE}
    )
    assert result["step_id"] == "user"
    assert result["errors"] == expected_errors
    assert suggested(result) == {CONF_URL: URL, CONF_CODE: CODE}  # nothing entered is lost
    mock_client.get_keys.side_effect = None
    result = await hass.config_entries.flow.async_configure(
        flow_id, user_input={CONF_URL: URL, CONF_CODE: CODE}
    )
    assert result["step_id"] == "confirm"
    result = await hass.config_entries.flow.async_configure(flow_id, user_input={})
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize(
    ("side_effect", "expected_errors"),
    [
        (EnrollmentRefusedError("403"), {CONF_CODE: "invalid_code"}),
        (BridgeConnectionError("gone"), {CONF_URL: "cannot_connect"}),
        (RuntimeError("boom"), {"base": "unknown"}),
    ],
)
async def test_refused_code_returns_to_the_form(
    hass: HomeAssistant,
    mock_client: AsyncMock,
    side_effect: Exception,
    expected_errors: dict[str, str],
) -> None:
    mock_client.enroll.side_effect = side_effect
    flow_id = await start(hass)
    await hass.config_entries.flow.async_configure(
        flow_id, user_input={CONF_URL: URL, CONF_CODE: CODE}
    )
    result = await hass.config_entries.flow.async_configure(flow_id, user_input={})
    assert result["step_id"] == "user"
    assert result["errors"] == expected_errors
    assert suggested(result) == {CONF_URL: URL, CONF_CODE: CODE}
    mock_client.enroll.side_effect = None
    await hass.config_entries.flow.async_configure(
        flow_id, user_input={CONF_URL: URL, CONF_CODE: CODE}
    )
    result = await hass.config_entries.flow.async_configure(flow_id, user_input={})
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_enrolling_a_configured_home_updates_it(
    hass: HomeAssistant, mock_client: AsyncMock, mock_config_entry: MockConfigEntry
) -> None:
    """A new code for a home that is set up already gives the entry the new credential."""
    mock_config_entry.add_to_hass(hass)
    flow_id = await start(hass)
    await hass.config_entries.flow.async_configure(
        flow_id, user_input={CONF_URL: URL, CONF_CODE: CODE}
    )
    result = await hass.config_entries.flow.async_configure(flow_id, user_input={})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert mock_config_entry.data[CONF_API_TOKEN] == NEW_CREDENTIAL


async def test_reauth(
    hass: HomeAssistant, mock_client: AsyncMock, mock_config_entry: MockConfigEntry
) -> None:
    mock_config_entry.add_to_hass(hass)
    assert mock_config_entry.data[CONF_API_TOKEN] == CREDENTIAL
    result = await mock_config_entry.start_reauth_flow(hass)
    assert result["step_id"] == "reauth_confirm"

    mock_client.enroll.side_effect = EnrollmentRefusedError("used")
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_CODE: "OLD"})
    assert result["errors"] == {CONF_CODE: "invalid_code"}

    mock_client.enroll.side_effect = None
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_CODE: CODE})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reauth_successful"
    assert mock_config_entry.data[CONF_API_TOKEN] == NEW_CREDENTIAL


async def test_reauth_with_another_homes_code(
    hass: HomeAssistant, mock_client: AsyncMock, mock_config_entry: MockConfigEntry
) -> None:
    mock_config_entry.add_to_hass(hass)
    other = Placement(community="c1", feeder="f1", transformer="t1", home="h2")
    mock_client.enroll.return_value = Enrollment(placement=other, credential="sch_other")
    result = await mock_config_entry.start_reauth_flow(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], {CONF_CODE: CODE})
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_home"
    assert mock_config_entry.data[CONF_API_TOKEN] == CREDENTIAL


async def test_reconfigure(
    hass: HomeAssistant, mock_client: AsyncMock, mock_config_entry: MockConfigEntry
) -> None:
    mock_config_entry.add_to_hass(hass)
    result = await mock_config_entry.start_reconfigure_flow(hass)
    assert result["step_id"] == "reconfigure"

    mock_client.get_home.side_effect = BridgeAuthenticationError("401")
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: "http://new-bridge:8080"}
    )
    assert result["errors"] == {CONF_URL: "invalid_auth"}

    mock_client.get_home.side_effect = None
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: "http://new-bridge:8080/"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert mock_config_entry.data[CONF_URL] == "http://new-bridge:8080"
    assert mock_config_entry.data[CONF_API_TOKEN] == CREDENTIAL


async def test_reconfigure_to_another_homes_bridge(
    hass: HomeAssistant, mock_client: AsyncMock, mock_config_entry: MockConfigEntry
) -> None:
    mock_config_entry.add_to_hass(hass)
    mock_client.get_home.return_value = Placement(
        community="c2", feeder="f", transformer="t", home="h1"
    )
    result = await mock_config_entry.start_reconfigure_flow(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {CONF_URL: "http://elsewhere"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "wrong_home"
