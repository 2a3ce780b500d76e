"""Config flow of the Smart Community integration: enrol a home with its community bridge."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, override

from homeassistant.config_entries import ConfigFlow, ConfigFlowResult
from homeassistant.const import CONF_API_TOKEN, CONF_URL
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import TextSelector, TextSelectorConfig, TextSelectorType
import probatio

from .bridge_client import (
    BridgeAuthenticationError,
    BridgeClient,
    BridgeConnectionError,
    BridgeResponseError,
)
from .const import CONF_KEYS, CONF_PLACEMENT, DOMAIN, LOGGER
from .protocol import Placement, PublicKey, jwks


class SmartCommunityConfigFlow(ConfigFlow, domain=DOMAIN):
    """Enrol a home: check the bridge and the credential, then pin the grid keys."""

    VERSION = 1

    _url: str
    _credential: str
    _placement: Placement
    _keys: list[PublicKey]

    @override
    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the bridge and the home credential, and test them."""
        errors: dict[str, str] = {}
        if user_input is not None:
            url = user_input[CONF_URL].strip().rstrip("/")
            credential = user_input[CONF_API_TOKEN].strip()
            try:
                placement, keys = await self._async_enrol(url, credential)
            except BridgeAuthenticationError:
                errors[CONF_API_TOKEN] = "invalid_auth"
            except BridgeConnectionError:
                errors[CONF_URL] = "cannot_connect"
            except BridgeResponseError:
                errors[CONF_URL] = "invalid_response"
            except Exception:  # noqa: BLE001 - shown to the user as "unexpected error"
                LOGGER.exception("Unexpected exception while enrolling with the bridge")
                errors["base"] = "unknown"
            else:
                await self.async_set_unique_id(f"{placement.community}/{placement.home}")
                self._abort_if_unique_id_configured()
                self._url, self._credential = url, credential
                self._placement, self._keys = placement, keys
                return await self.async_step_confirm()
        else:
            user_input = {}

        return self.async_show_form(
            step_id="user",
            data_schema=probatio.Schema(
                {
                    probatio.Required(CONF_URL, default=user_input.get(CONF_URL)): TextSelector(
                        TextSelectorConfig(type=TextSelectorType.URL)
                    ),
                    probatio.Required(CONF_API_TOKEN): TextSelector(
                        TextSelectorConfig(type=TextSelectorType.PASSWORD)
                    ),
                }
            ),
            errors=errors,
        )

    async def async_step_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show the home and the fingerprints of the grid keys it is about to pin."""
        placement = self._placement
        if user_input is not None:
            return self.async_create_entry(
                title=f"{placement.home} ({placement.community})",
                data={
                    CONF_URL: self._url,
                    CONF_API_TOKEN: self._credential,
                    CONF_PLACEMENT: asdict(placement),
                    CONF_KEYS: jwks(self._keys),
                },
            )
        return self.async_show_form(
            step_id="confirm",
            description_placeholders={
                "home": placement.home,
                "community": placement.community,
                "feeder": placement.feeder,
                "transformer": placement.transformer,
                "fingerprints": "\n".join(f"- {key.issuer}: `{key.kid}`" for key in self._keys),
            },
        )

    async def _async_enrol(self, url: str, credential: str) -> tuple[Placement, list[PublicKey]]:
        """Who the credential belongs to, and the grid keys the bridge trusts."""
        client = BridgeClient(url, credential, session=async_get_clientsession(self.hass))
        return await client.get_home(), await client.get_keys()
