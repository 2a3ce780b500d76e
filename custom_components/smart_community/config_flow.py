"""Config flow of the Smart Community integration: enrol a home with its community bridge.

The resident enters the bridge's address and the enrollment code the community operator gave
them. Home Assistant first shows the fingerprints of the grid keys it is about to pin, then
redeems the code (once) for the home's own credential. Reauthentication takes a new code;
reconfiguration moves the home to a new bridge address.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, override

from homeassistant.config_entries import ConfigFlow, ConfigFlowResult
from homeassistant.const import CONF_API_TOKEN, CONF_CODE, CONF_URL
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import TextSelector, TextSelectorConfig, TextSelectorType
import probatio

from .bridge_client import (
    BridgeAuthenticationError,
    BridgeClient,
    BridgeConnectionError,
    BridgeResponseError,
    Enrollment,
    EnrollmentRefusedError,
)
from .const import CONF_KEYS, CONF_PLACEMENT, DOMAIN, LOGGER
from .protocol import PublicKey, jwks

_URL_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))
_CODE_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.TEXT))


class SmartCommunityConfigFlow(ConfigFlow, domain=DOMAIN):
    """Enrol a home: check the bridge, pin the grid keys, redeem the enrollment code."""

    VERSION = 1

    _url: str
    _code: str
    _keys: list[PublicKey]

    @override
    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Ask for the bridge and the enrollment code; fetch the grid keys it trusts."""
        errors: dict[str, str] = {}
        if user_input is not None:
            url = user_input[CONF_URL].strip().rstrip("/")
            try:
                self._keys = await self._client(url).get_keys()
            except Exception as err:  # noqa: BLE001 - every failure is shown on the form
                errors[CONF_URL] = _error_key(err)
            else:
                self._url, self._code = url, user_input[CONF_CODE].strip()
                return await self.async_step_confirm()
        else:
            user_input = {}
        return self.async_show_form(
            step_id="user",
            data_schema=probatio.Schema(
                {
                    probatio.Required(CONF_URL, default=user_input.get(CONF_URL)): _URL_SELECTOR,
                    probatio.Required(CONF_CODE): _CODE_SELECTOR,
                }
            ),
            errors=errors,
        )

    async def async_step_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Show the fingerprints of the grid keys; on confirmation, redeem the code."""
        if user_input is None:
            return self.async_show_form(
                step_id="confirm",
                description_placeholders={
                    "url": self._url,
                    "fingerprints": "\n".join(f"- {k.issuer}: `{k.kid}`" for k in self._keys),
                },
            )
        try:
            enrollment = await self._client(self._url).enroll(self._code)
        except Exception as err:  # noqa: BLE001 - every failure is shown on the form
            return self.async_show_form(
                step_id="user",
                data_schema=self.add_suggested_values_to_schema(
                    probatio.Schema(
                        {
                            probatio.Required(CONF_URL): _URL_SELECTOR,
                            probatio.Required(CONF_CODE): _CODE_SELECTOR,
                        }
                    ),
                    {CONF_URL: self._url},
                ),
                errors={_field_of(err): _error_key(err)},
            )
        placement = enrollment.placement
        await self.async_set_unique_id(f"{placement.community}/{placement.home}")
        # Enrolling a home that is set up already gives it the new credential.
        self._abort_if_unique_id_configured(updates=self._entry_data(enrollment))
        return self.async_create_entry(
            title=f"{placement.home} ({placement.community})", data=self._entry_data(enrollment)
        )

    async def async_step_reauth(self, entry_data: Mapping[str, Any]) -> ConfigFlowResult:
        """The bridge refused the home's credential: ask for a new enrollment code."""
        return await self.async_step_reauth_confirm()

    async def async_step_reauth_confirm(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Redeem a new enrollment code for the same home."""
        entry = self._get_reauth_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            self._url = entry.data[CONF_URL]
            try:
                self._keys = await self._client(self._url).get_keys()
                enrollment = await self._client(self._url).enroll(user_input[CONF_CODE].strip())
            except Exception as err:  # noqa: BLE001 - every failure is shown on the form
                errors[_field_of(err)] = _error_key(err)
            else:
                placement = enrollment.placement
                await self.async_set_unique_id(f"{placement.community}/{placement.home}")
                self._abort_if_unique_id_mismatch(reason="wrong_home")
                return self.async_update_reload_and_abort(
                    entry, data_updates=self._entry_data(enrollment)
                )
        return self.async_show_form(
            step_id="reauth_confirm",
            data_schema=probatio.Schema({probatio.Required(CONF_CODE): _CODE_SELECTOR}),
            description_placeholders={"home": entry.title},
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Point the home at a new bridge address (its credential stays)."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            url = user_input[CONF_URL].strip().rstrip("/")
            client = BridgeClient(
                url, entry.data[CONF_API_TOKEN], session=async_get_clientsession(self.hass)
            )
            try:
                placement = await client.get_home()
                keys = await client.get_keys()
            except Exception as err:  # noqa: BLE001 - every failure is shown on the form
                errors[CONF_URL] = _error_key(err)
            else:
                await self.async_set_unique_id(f"{placement.community}/{placement.home}")
                self._abort_if_unique_id_mismatch(reason="wrong_home")
                return self.async_update_reload_and_abort(
                    entry, data_updates={CONF_URL: url, CONF_KEYS: jwks(keys)}
                )
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                probatio.Schema({probatio.Required(CONF_URL): _URL_SELECTOR}),
                user_input or {CONF_URL: entry.data[CONF_URL]},
            ),
            errors=errors,
        )

    def _client(self, url: str) -> BridgeClient:
        return BridgeClient(url, None, session=async_get_clientsession(self.hass))

    def _entry_data(self, enrollment: Enrollment) -> dict[str, Any]:
        return {
            CONF_URL: self._url,
            CONF_API_TOKEN: enrollment.credential,
            CONF_PLACEMENT: asdict(enrollment.placement),
            CONF_KEYS: jwks(self._keys),
        }


def _error_key(err: Exception) -> str:
    """The translation key of the form error for a failure."""
    if isinstance(err, EnrollmentRefusedError):
        return "invalid_code"
    if isinstance(err, BridgeAuthenticationError):
        return "invalid_auth"
    if isinstance(err, BridgeConnectionError):
        return "cannot_connect"
    if isinstance(err, BridgeResponseError):
        return "invalid_response"
    LOGGER.exception("Unexpected exception while talking to the bridge", exc_info=err)
    return "unknown"


def _field_of(err: Exception) -> str:
    """The form field an error belongs to."""
    if isinstance(err, EnrollmentRefusedError):
        return CONF_CODE
    if isinstance(err, BridgeConnectionError | BridgeResponseError):
        return CONF_URL
    return "base"
