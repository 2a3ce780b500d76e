"""Config flow of the Smart Community integration: enrol a home with its community bridge.

The resident enters the bridge's address and the enrollment code the community operator gave
them. Home Assistant first shows the fingerprints of the grid keys it is about to pin, then
redeems the code (once) for the home's own credential. Reauthentication takes a new code;
reconfiguration moves the home to a new bridge address.

The home's devices are config subentries: a SunSpec inverter is added by its Modbus TCP address
and unit id, and only once it answered and showed a SunSpec map with an inverter model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, override

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryFlow,
    SubentryFlowResult,
)
from homeassistant.const import CONF_API_TOKEN, CONF_CODE, CONF_HOST, CONF_PORT, CONF_URL
from homeassistant.core import callback
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    TextSelector,
    TextSelectorConfig,
    TextSelectorType,
)
import probatio

from .bridge_client import (
    BridgeAuthenticationError,
    BridgeClient,
    BridgeConnectionError,
    BridgeResponseError,
    Enrollment,
    EnrollmentRefusedError,
)
from .const import (
    CONF_KEYS,
    CONF_MANUFACTURER,
    CONF_MODEL,
    CONF_PLACEMENT,
    CONF_POWER_LIMIT,
    CONF_SERIAL,
    CONF_UNIT_ID,
    CONF_VERSION,
    DOMAIN,
    LOGGER,
    SUBENTRY_INVERTER,
)
from .modbus_device import (
    DEFAULT_PORT,
    DEFAULT_UNIT_ID,
    SunSpecClient,
    SunSpecConnectionError,
    SunSpecNotFoundError,
    SunSpecResponseError,
)
from .protocol import PublicKey, jwks

_URL_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))
_CODE_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.TEXT))


class SmartCommunityConfigFlow(ConfigFlow, domain=DOMAIN):
    """Enrol a home: check the bridge, pin the grid keys, redeem the enrollment code."""

    VERSION = 1

    _url: str
    _code: str
    _keys: list[PublicKey]

    @classmethod
    @callback
    def async_get_supported_subentry_types(
        cls, config_entry: ConfigEntry
    ) -> dict[str, type[ConfigSubentryFlow]]:
        """The devices a home can add."""
        return {SUBENTRY_INVERTER: InverterSubentryFlow}

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


_HOST_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.TEXT))
_PORT_SELECTOR = NumberSelector(
    NumberSelectorConfig(min=1, max=65535, step=1, mode=NumberSelectorMode.BOX)
)
# Modbus unit ids 1-247 address devices; 0 is broadcast, the rest reserved.
_UNIT_ID_SELECTOR = NumberSelector(
    NumberSelectorConfig(min=1, max=247, step=1, mode=NumberSelectorMode.BOX)
)
_INVERTER_SCHEMA = probatio.Schema(
    {
        probatio.Required(CONF_HOST): _HOST_SELECTOR,
        probatio.Required(CONF_PORT, default=DEFAULT_PORT): _PORT_SELECTOR,
        probatio.Required(CONF_UNIT_ID, default=DEFAULT_UNIT_ID): _UNIT_ID_SELECTOR,
    }
)


class InverterSubentryFlow(ConfigSubentryFlow):
    """Add a SunSpec inverter over Modbus TCP, once it answered with its SunSpec map."""

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> SubentryFlowResult:
        """Ask for the inverter's address; check it speaks SunSpec before adding it."""
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                data = await _probe_inverter(user_input)
            except Exception as err:  # noqa: BLE001 - every failure is shown on the form
                errors[_inverter_field_of(err)] = _inverter_error_key(err)
            else:
                unique_id = _inverter_unique_id(data)
                entry = self._get_entry()
                if any(sub.unique_id == unique_id for sub in entry.subentries.values()):
                    return self.async_abort(reason="already_configured")
                return self.async_create_entry(
                    title=f"{data[CONF_MANUFACTURER]} {data[CONF_MODEL]}".strip(),
                    data=data,
                    unique_id=unique_id,
                )
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(_INVERTER_SCHEMA, user_input or {}),
            errors=errors,
        )

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> SubentryFlowResult:
        """Move an inverter to a new address; it must still be the same inverter."""
        subentry = self._get_reconfigure_subentry()
        errors: dict[str, str] = {}
        if user_input is not None:
            try:
                data = await _probe_inverter(user_input)
            except Exception as err:  # noqa: BLE001 - every failure is shown on the form
                errors[_inverter_field_of(err)] = _inverter_error_key(err)
            else:
                if _inverter_unique_id(data) != subentry.unique_id:
                    return self.async_abort(reason="wrong_inverter")
                return self.async_update_and_abort(self._get_entry(), subentry, data=data)
        return self.async_show_form(
            step_id="reconfigure",
            data_schema=self.add_suggested_values_to_schema(
                _INVERTER_SCHEMA, user_input or dict(subentry.data)
            ),
            description_placeholders={"inverter": subentry.title},
            errors=errors,
        )


async def _probe_inverter(user_input: dict[str, Any]) -> dict[str, Any]:
    """Discover the SunSpec map and read the common model; the subentry's data."""
    host, port, unit_id = (
        user_input[CONF_HOST].strip(),
        int(user_input[CONF_PORT]),
        int(user_input[CONF_UNIT_ID]),
    )
    client = SunSpecClient(host, port, unit_id)
    try:
        sunspec_map = await client.discover()
        common = await client.read_common()
    finally:
        await client.close()
    return {
        CONF_HOST: host,
        CONF_PORT: port,
        CONF_UNIT_ID: unit_id,
        CONF_MANUFACTURER: common.manufacturer,
        CONF_MODEL: common.model,
        CONF_SERIAL: common.serial,
        CONF_VERSION: common.version,
        CONF_POWER_LIMIT: sunspec_map.controls is not None,
    }


def _inverter_unique_id(data: dict[str, Any]) -> str:
    """Manufacturer and serial number; the address for a device that reports no serial."""
    if data[CONF_SERIAL]:
        return f"{data[CONF_MANUFACTURER]}_{data[CONF_SERIAL]}".lower()
    return f"{data[CONF_HOST]}:{data[CONF_PORT]}/{data[CONF_UNIT_ID]}"


def _inverter_error_key(err: Exception) -> str:
    """The translation key of the form error for a failure to reach an inverter."""
    if isinstance(err, SunSpecConnectionError):
        return "cannot_connect"
    if isinstance(err, SunSpecNotFoundError):
        return "not_sunspec"
    if isinstance(err, SunSpecResponseError):
        return "invalid_response"
    LOGGER.exception("Unexpected exception while probing an inverter", exc_info=err)
    return "unknown"


def _inverter_field_of(err: Exception) -> str:
    """The form field an inverter error belongs to."""
    if isinstance(err, SunSpecConnectionError):
        return CONF_HOST
    if isinstance(err, SunSpecNotFoundError | SunSpecResponseError):
        return CONF_UNIT_ID
    return "base"
