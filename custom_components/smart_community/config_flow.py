"""Config flow of the Smart Community integration: enrol a home with its community bridge.

The resident enters the bridge's address and the enrollment code the community operator gave
them. Home Assistant first shows the fingerprints of the grid keys it is about to pin, then
redeems the code (once) for the home's own credential. Reauthentication takes a new code;
reconfiguration moves the home to a new bridge address. The options choose how the home answers
demand response (which devices, in which order, within which bounds) and what it reports.

The home's devices are config subentries: a SunSpec inverter is added by its Modbus TCP address
and unit id, and only once it answered and showed a SunSpec map with an inverter model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from datetime import timedelta
from typing import Any, Final, override

from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    ConfigSubentryFlow,
    OptionsFlow,
    SubentryFlowResult,
)
from homeassistant.const import (
    CONF_API_TOKEN,
    CONF_CODE,
    CONF_HOST,
    CONF_PORT,
    CONF_URL,
    UnitOfElectricPotential,
    UnitOfPower,
)
from homeassistant.core import callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.aiohttp_client import async_get_clientsession
from homeassistant.helpers.selector import (
    DurationSelector,
    EntitySelector,
    EntitySelectorConfig,
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
    CONF_CHEAPEST_WINDOW,
    CONF_ENTITY_ID,
    CONF_INVERTERS,
    CONF_KEYS,
    CONF_LOADS,
    CONF_MANUFACTURER,
    CONF_MAX_SHED_POWER,
    CONF_MINIMUM_VALUE,
    CONF_MODEL,
    CONF_NOMINAL_POWER,
    CONF_PHASES,
    CONF_PLACEMENT,
    CONF_POWER_LIMIT,
    CONF_POWER_SENSOR,
    CONF_RATED_POWER,
    CONF_SERIAL,
    CONF_STALE_AFTER,
    CONF_TELEMETRY,
    CONF_TELEMETRY_INTERVAL,
    CONF_TEMPERATURE_OFFSET,
    CONF_UNIT_ID,
    CONF_VERSION,
    CONF_VOLTAGE,
    DEFAULT_CHEAPEST_WINDOW,
    DEFAULT_MAX_SHED_POWER,
    DEFAULT_NOMINAL_POWER,
    DEFAULT_RATED_POWER,
    DEFAULT_STALE_AFTER,
    DEFAULT_TELEMETRY_INTERVAL,
    DOMAIN,
    LOGGER,
    SUBENTRY_INVERTER,
)
from .load_response import (
    DEFAULT_MINIMUM_CURRENT,
    DEFAULT_PHASES,
    DEFAULT_VOLTAGE,
    LoadKind,
    default_offset,
    kind_of,
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
from .uplink import SENSOR_QUANTITIES, Quantity

_URL_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.URL))
_CODE_SELECTOR = TextSelector(TextSelectorConfig(type=TextSelectorType.TEXT))
_USER_SCHEMA = probatio.Schema(
    {probatio.Required(CONF_URL): _URL_SELECTOR, probatio.Required(CONF_CODE): _CODE_SELECTOR}
)
_LOAD_DOMAINS: Final = ["switch", "input_boolean", "climate", "water_heater", "number"]
_KILOWATTS = NumberSelector(
    NumberSelectorConfig(
        min=0.1,
        max=100,
        step=0.1,
        mode=NumberSelectorMode.BOX,
        unit_of_measurement=UnitOfPower.KILO_WATT,
    )
)
_OFFSET = NumberSelector(
    NumberSelectorConfig(min=0.5, max=20, step=0.5, mode=NumberSelectorMode.BOX)
)
_MINIMUM = NumberSelector(
    NumberSelectorConfig(min=0, max=1000, step=1, mode=NumberSelectorMode.BOX)
)
_PHASES = NumberSelector(NumberSelectorConfig(min=1, max=3, step=1, mode=NumberSelectorMode.BOX))
_VOLTAGE = NumberSelector(
    NumberSelectorConfig(
        min=100,
        max=480,
        step=1,
        mode=NumberSelectorMode.BOX,
        unit_of_measurement=UnitOfElectricPotential.VOLT,
    )
)
_DURATION = DurationSelector()
_POWER_SENSOR = EntitySelector(EntitySelectorConfig(domain="sensor", device_class="power"))
_ENERGY_SENSOR = EntitySelector(EntitySelectorConfig(domain="sensor", device_class="energy"))
_BATTERY_SENSOR = EntitySelector(EntitySelectorConfig(domain="sensor", device_class="battery"))
# Bounds of the durations the options take.
_MINIMUM_STALE: Final = timedelta(minutes=1)
_MINIMUM_TELEMETRY: Final = timedelta(minutes=1)
_MAXIMUM_TELEMETRY: Final = timedelta(hours=1)
_CHEAPEST_RANGE: Final = (timedelta(minutes=15), timedelta(hours=24))


class SmartCommunityConfigFlow(ConfigFlow, domain=DOMAIN):
    """Enrol a home: check the bridge, pin the grid keys, redeem the enrollment code."""

    VERSION = 1

    @staticmethod
    @callback
    @override
    def async_get_options_flow(config_entry: ConfigEntry) -> SmartCommunityOptionsFlow:
        """The options: load response and reporting."""
        return SmartCommunityOptionsFlow()

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
        return self._user_form(user_input or {}, errors)

    def _user_form(self, entered: Mapping[str, Any], errors: dict[str, str]) -> ConfigFlowResult:
        """The bridge and enrollment code form, with what the resident entered last."""
        return self.async_show_form(
            step_id="user",
            data_schema=self.add_suggested_values_to_schema(_USER_SCHEMA, entered),
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
            # The code stays on the form too: a mistyped one is corrected, not typed again.
            return self._user_form(
                {CONF_URL: self._url, CONF_CODE: self._code}, {_field_of(err): _error_key(err)}
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


class SmartCommunityOptionsFlow(OptionsFlow):
    """Choose the devices that answer demand response, their bounds, and what is reported."""

    def __init__(self) -> None:
        """Start from nothing; the entry's options are read at the first step."""
        self._options: dict[str, Any] = {}
        self._queue: list[str] = []
        self._count = 0
        self._chosen: list[dict[str, Any]] = []
        self._inverter_queue: list[str] = []
        self._inverters: list[dict[str, Any]] = []

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Which part to change."""
        self._options = dict(self.config_entry.options)
        return self.async_show_menu(
            step_id="init", menu_options=["devices", "limits", "reporting", "prices"]
        )

    async def async_step_devices(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The loads, in priority order, and the inverter export limits."""
        errors: dict[str, str] = {}
        if user_input is not None:
            loads = user_input.get(CONF_LOADS, [])
            inverters = user_input.get(CONF_INVERTERS, [])
            if set(loads) & set(inverters):
                errors["base"] = "device_twice"
            else:
                self._queue, self._count, self._chosen = list(loads), len(loads), []
                self._inverter_queue, self._inverters = list(inverters), []
                return await self.async_step_load()
        own = [
            e.entity_id
            for e in er.async_entries_for_config_entry(
                er.async_get(self.hass), self.config_entry.entry_id
            )
        ]
        schema = probatio.Schema(
            {
                probatio.Optional(CONF_LOADS): EntitySelector(
                    EntitySelectorConfig(
                        domain=_LOAD_DOMAINS, multiple=True, reorder=True, exclude_entities=own
                    )
                ),
                probatio.Optional(CONF_INVERTERS): EntitySelector(
                    EntitySelectorConfig(domain="number", multiple=True, exclude_entities=own)
                ),
            }
        )
        current = user_input or {
            CONF_LOADS: [d[CONF_ENTITY_ID] for d in self._options.get(CONF_LOADS, [])],
            CONF_INVERTERS: [d[CONF_ENTITY_ID] for d in self._options.get(CONF_INVERTERS, [])],
        }
        return self.async_show_form(
            step_id="devices",
            data_schema=self.add_suggested_values_to_schema(schema, current),
            errors=errors,
        )

    async def async_step_load(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """One load's nominal power, power sensor and comfort bound."""
        if user_input is not None:
            self._chosen.append({CONF_ENTITY_ID: self._queue.pop(0), **user_input})
        if not self._queue:
            return await self.async_step_inverter()
        entity_id = self._queue[0]
        kind = kind_of(entity_id)
        before = _enrolled(self._options.get(CONF_LOADS, []), entity_id)
        fields: dict[Any, Any] = {
            probatio.Required(
                CONF_NOMINAL_POWER, default=before.get(CONF_NOMINAL_POWER, DEFAULT_NOMINAL_POWER)
            ): _KILOWATTS,
            probatio.Optional(CONF_POWER_SENSOR): _POWER_SENSOR,
        }
        if kind in (LoadKind.CLIMATE, LoadKind.WATER_HEATER):
            fields[
                probatio.Required(
                    CONF_TEMPERATURE_OFFSET,
                    default=before.get(CONF_TEMPERATURE_OFFSET, default_offset(kind)),
                )
            ] = _OFFSET
        elif kind is LoadKind.LEVEL:
            fields[
                probatio.Required(
                    CONF_MINIMUM_VALUE,
                    default=before.get(CONF_MINIMUM_VALUE, DEFAULT_MINIMUM_CURRENT),
                )
            ] = _MINIMUM
            # What turns the community's EV charging share (kW) into the charger's current.
            fields[
                probatio.Required(CONF_PHASES, default=before.get(CONF_PHASES, DEFAULT_PHASES))
            ] = _PHASES
            fields[
                probatio.Required(CONF_VOLTAGE, default=before.get(CONF_VOLTAGE, DEFAULT_VOLTAGE))
            ] = _VOLTAGE
        return self.async_show_form(
            step_id="load",
            data_schema=self.add_suggested_values_to_schema(
                probatio.Schema(fields), {CONF_POWER_SENSOR: before.get(CONF_POWER_SENSOR)}
            ),
            description_placeholders={
                "device": self._name(entity_id),
                "position": str(self._count - len(self._queue) + 1),
                "count": str(self._count),
            },
        )

    async def async_step_inverter(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """One inverter's rated power; then the devices are saved."""
        if user_input is not None:
            self._inverters.append({CONF_ENTITY_ID: self._inverter_queue.pop(0), **user_input})
        if not self._inverter_queue:
            return self.async_create_entry(
                data={**self._options, CONF_LOADS: self._chosen, CONF_INVERTERS: self._inverters}
            )
        entity_id = self._inverter_queue[0]
        before = _enrolled(self._options.get(CONF_INVERTERS, []), entity_id)
        return self.async_show_form(
            step_id="inverter",
            data_schema=probatio.Schema(
                {
                    probatio.Required(
                        CONF_RATED_POWER, default=before.get(CONF_RATED_POWER, DEFAULT_RATED_POWER)
                    ): _KILOWATTS
                }
            ),
            description_placeholders={"device": self._name(entity_id)},
        )

    async def async_step_limits(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """The most load one event may shed, and when a silent bridge makes everything revert."""
        errors: dict[str, str] = {}
        if user_input is not None:
            if timedelta(**user_input[CONF_STALE_AFTER]) < _MINIMUM_STALE:
                errors[CONF_STALE_AFTER] = "too_short"
            else:
                return self.async_create_entry(data={**self._options, **user_input})
        schema = probatio.Schema(
            {
                probatio.Required(CONF_MAX_SHED_POWER): _KILOWATTS,
                probatio.Required(CONF_STALE_AFTER): _DURATION,
            }
        )
        current = user_input or {
            CONF_MAX_SHED_POWER: self._options.get(CONF_MAX_SHED_POWER, DEFAULT_MAX_SHED_POWER),
            CONF_STALE_AFTER: self._options.get(CONF_STALE_AFTER, DEFAULT_STALE_AFTER),
        }
        return self.async_show_form(
            step_id="limits",
            data_schema=self.add_suggested_values_to_schema(schema, current),
            errors=errors,
        )

    async def async_step_reporting(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """The sensors the home reports, and how often while no event asks otherwise."""
        errors: dict[str, str] = {}
        if user_input is not None:
            interval = timedelta(**user_input[CONF_TELEMETRY_INTERVAL])
            if not _MINIMUM_TELEMETRY <= interval <= _MAXIMUM_TELEMETRY:
                errors[CONF_TELEMETRY_INTERVAL] = "out_of_range"
            else:
                sensors = {q: user_input[q] for q in SENSOR_QUANTITIES if user_input.get(q)}
                return self.async_create_entry(
                    data={
                        **self._options,
                        CONF_TELEMETRY: sensors,
                        CONF_TELEMETRY_INTERVAL: user_input[CONF_TELEMETRY_INTERVAL],
                    }
                )
        schema = probatio.Schema(
            {
                probatio.Optional(Quantity.GRID_IMPORT_POWER): _POWER_SENSOR,
                probatio.Optional(Quantity.GRID_EXPORT_POWER): _POWER_SENSOR,
                probatio.Optional(Quantity.GRID_IMPORT_ENERGY): _ENERGY_SENSOR,
                probatio.Optional(Quantity.GRID_EXPORT_ENERGY): _ENERGY_SENSOR,
                probatio.Optional(Quantity.PV_POWER): _POWER_SENSOR,
                probatio.Optional(Quantity.EV_POWER): _POWER_SENSOR,
                probatio.Optional(Quantity.BATTERY_LEVEL): _BATTERY_SENSOR,
                probatio.Required(CONF_TELEMETRY_INTERVAL): _DURATION,
            }
        )
        current = user_input or {
            **self._options.get(CONF_TELEMETRY, {}),
            CONF_TELEMETRY_INTERVAL: self._options.get(
                CONF_TELEMETRY_INTERVAL, DEFAULT_TELEMETRY_INTERVAL
            ),
        }
        return self.async_show_form(
            step_id="reporting",
            data_schema=self.add_suggested_values_to_schema(schema, current),
            errors=errors,
        )

    async def async_step_prices(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """How long a cheapest window the price sensors look for."""
        errors: dict[str, str] = {}
        if user_input is not None:
            window = timedelta(**user_input[CONF_CHEAPEST_WINDOW])
            if not _CHEAPEST_RANGE[0] <= window <= _CHEAPEST_RANGE[1]:
                errors[CONF_CHEAPEST_WINDOW] = "out_of_range"
            else:
                return self.async_create_entry(data={**self._options, **user_input})
        schema = probatio.Schema({probatio.Required(CONF_CHEAPEST_WINDOW): _DURATION})
        current = user_input or {
            CONF_CHEAPEST_WINDOW: self._options.get(CONF_CHEAPEST_WINDOW, DEFAULT_CHEAPEST_WINDOW)
        }
        return self.async_show_form(
            step_id="prices",
            data_schema=self.add_suggested_values_to_schema(schema, current),
            errors=errors,
        )

    def _name(self, entity_id: str) -> str:
        state = self.hass.states.get(entity_id)
        return state.name if state is not None else entity_id


def _enrolled(devices: list[dict[str, Any]], entity_id: str) -> dict[str, Any]:
    """What the options held of a device before, if it was enrolled."""
    return next((d for d in devices if d[CONF_ENTITY_ID] == entity_id), {})


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
