"""Actions of the Smart Community integration, registered once in ``async_setup``.

Every action names its home with an optional config entry (needed only when several homes are
set up) and runs through ``smart_community_action``, which turns bridge failures into
translated errors, so that each action states only what it does.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import Any, Final

from homeassistant.core import (
    HomeAssistant,
    ServiceCall,
    ServiceResponse,
    SupportsResponse,
    callback,
)
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv, selector, service
from homeassistant.util import dt as dt_util, slugify
import probatio

from .bridge_client import (
    BridgeAuthenticationError,
    BridgeConnectionError,
    BridgeError,
    BridgeRefusedError,
)
from .const import DOMAIN
from .coordinator import SmartCommunityConfigEntry
from .prices import WindowError, WindowProblem, cheapest_window
from .signals import price_unit
from .uplink import connection_of, connection_request, pending_connection

ATTR_CONFIG_ENTRY: Final = "config_entry"
ATTR_DURATION: Final = "duration"
ATTR_EARLIEST_START: Final = "earliest_start"
ATTR_LATEST_END: Final = "latest_end"
ATTR_EVENT_ID: Final = "event_id"
ATTR_SAVE_FILE: Final = "save_file"
ATTR_CODE: Final = "code"
ATTR_DETAIL: Final = "detail"
ATTR_CAPACITY: Final = "capacity"
ATTR_INVERTER_MAKE: Final = "inverter_make"
ATTR_INVERTER_MODEL: Final = "inverter_model"
ATTR_INVERTER_SERIAL: Final = "inverter_serial"
ATTR_NAME: Final = "name"

SERVICE_FIND_CHEAPEST_WINDOW: Final = "find_cheapest_window"
SERVICE_OPT_IN: Final = "opt_in"
SERVICE_OPT_OUT: Final = "opt_out"
SERVICE_EXPORT_AUDIT_LOG: Final = "export_audit_log"
SERVICE_REPORT_FAULT: Final = "report_fault"
SERVICE_REQUEST_GRID_CONNECTION: Final = "request_grid_connection"

# The report carries the code in capitals (X_FAULT_CODE LOSS_OF_SUPPLY).
FAULT_CODES: Final = ("loss_of_supply", "voltage_quality", "device_fault", "other")
MAX_DETAIL: Final = 500

ENTRY_SCHEMA: Final = {
    probatio.Optional(ATTR_CONFIG_ENTRY): selector.ConfigEntrySelector({"integration": DOMAIN})
}
FIND_CHEAPEST_WINDOW_SCHEMA: Final = probatio.Schema(
    {
        **ENTRY_SCHEMA,
        probatio.Required(ATTR_DURATION): cv.positive_time_period_dict,
        probatio.Optional(ATTR_EARLIEST_START): cv.datetime,
        probatio.Optional(ATTR_LATEST_END): cv.datetime,
    }
)

_TEXT = probatio.All(cv.string, probatio.Strip, probatio.Length(min=1, max=100))
PARTICIPATION_SCHEMA: Final = probatio.Schema(
    {**ENTRY_SCHEMA, probatio.Optional(ATTR_EVENT_ID): probatio.All(cv.string, probatio.Strip)}
)
EXPORT_AUDIT_LOG_SCHEMA: Final = probatio.Schema(
    {**ENTRY_SCHEMA, probatio.Optional(ATTR_SAVE_FILE, default=False): cv.boolean}
)
REPORT_FAULT_SCHEMA: Final = probatio.Schema(
    {
        **ENTRY_SCHEMA,
        probatio.Required(ATTR_CODE): probatio.In(FAULT_CODES),
        probatio.Optional(ATTR_DETAIL): cv.string,
    }
)
REQUEST_GRID_CONNECTION_SCHEMA: Final = probatio.Schema(
    {
        **ENTRY_SCHEMA,
        probatio.Required(ATTR_CAPACITY): probatio.All(
            probatio.Coerce(float), probatio.Range(min=0.1, max=1000)
        ),
        probatio.Required(ATTR_INVERTER_MAKE): _TEXT,
        probatio.Required(ATTR_INVERTER_MODEL): _TEXT,
        probatio.Required(ATTR_INVERTER_SERIAL): _TEXT,
        probatio.Optional(ATTR_NAME): _TEXT,
    }
)

type ActionHandler = Callable[[ServiceCall], Coroutine[Any, Any, ServiceResponse]]


def loaded_entry(call: ServiceCall) -> SmartCommunityConfigEntry:
    """The loaded entry an action names, or the only one; translated errors otherwise."""
    entry: SmartCommunityConfigEntry = service.async_get_config_entry(
        call.hass, DOMAIN, call.data.get(ATTR_CONFIG_ENTRY)
    )
    return entry


def smart_community_action(handler: ActionHandler) -> ActionHandler:
    """Run an action; bridge failures become translated Home Assistant errors."""

    @wraps(handler)
    async def run(call: ServiceCall) -> ServiceResponse:
        try:
            return await handler(call)
        except BridgeAuthenticationError as err:
            loaded_entry(call).async_start_reauth(call.hass)
            raise HomeAssistantError(
                translation_domain=DOMAIN, translation_key="authentication_failed"
            ) from err
        except BridgeConnectionError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="communication_error",
                translation_placeholders={"error": str(err)},
            ) from err
        except BridgeRefusedError as err:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="request_refused",
                translation_placeholders={"error": str(err)},
            ) from err
        except BridgeError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="invalid_response",
                translation_placeholders={"error": str(err)},
            ) from err

    return run


def _local(moment: datetime) -> datetime:
    """A moment the resident entered; without a time zone it is Home Assistant's."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt_util.get_default_time_zone())
    return dt_util.as_utc(moment)


def _window_error(err: WindowError, duration: timedelta) -> ServiceValidationError:
    hours = f"{duration.total_seconds() / 3600:g}"
    match err.problem:
        case WindowProblem.INVALID_DURATION:
            return ServiceValidationError(
                translation_domain=DOMAIN, translation_key="invalid_duration"
            )
        case WindowProblem.INVALID_RANGE:
            return ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="invalid_range",
                translation_placeholders={"hours": hours},
            )
        case WindowProblem.NO_PRICES:
            return ServiceValidationError(translation_domain=DOMAIN, translation_key="no_prices")
        case WindowProblem.NOT_COVERED:
            return ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="window_not_covered",
                translation_placeholders={"hours": hours},
            )


@smart_community_action
async def _async_find_cheapest_window(call: ServiceCall) -> ServiceResponse:
    """The cheapest window of a duration among the prices the home knows."""
    entry = loaded_entry(call)
    state = entry.runtime_data.coordinator.data
    duration: timedelta = call.data[ATTR_DURATION]
    earliest = call.data.get(ATTR_EARLIEST_START)
    latest = call.data.get(ATTR_LATEST_END)
    try:
        window = cheapest_window(
            state.outlook.price_forecast,
            duration,
            earliest=max(dt_util.utcnow(), _local(earliest)) if earliest else dt_util.utcnow(),
            latest=_local(latest) if latest else None,
        )
    except WindowError as err:
        raise _window_error(err, duration) from err
    return {
        "start": dt_util.as_local(window.start).isoformat(),
        "end": dt_util.as_local(window.end).isoformat(),
        "average_price": window.average,
        "unit": price_unit(state.outlook.price_forecast, call.hass.config.currency),
    }


@smart_community_action
async def _async_opt_in(call: ServiceCall) -> ServiceResponse:
    """Take part in an event (the current or next one by default)."""
    responder = loaded_entry(call).runtime_data.responder
    await responder.async_participate(call.data.get(ATTR_EVENT_ID), True)
    return None


@smart_community_action
async def _async_opt_out(call: ServiceCall) -> ServiceResponse:
    """Leave an event (the current or next one by default); the grid is told."""
    responder = loaded_entry(call).runtime_data.responder
    await responder.async_participate(call.data.get(ATTR_EVENT_ID), False)
    return None


@smart_community_action
async def _async_export_audit_log(call: ServiceCall) -> ServiceResponse:
    """The audit log as CSV, and written to a file under the configuration if asked."""
    entry = loaded_entry(call)
    responder = entry.runtime_data.responder
    path: Path | None = None
    if call.data[ATTR_SAVE_FILE]:
        name = f"audit_{slugify(entry.unique_id or entry.entry_id)}.csv"
        path = Path(call.hass.config.path(DOMAIN, name))
    text = await responder.async_export_csv(path)
    return {"csv": text, "entries": len(responder.audit), "path": str(path) if path else None}


@smart_community_action
async def _async_report_fault(call: ServiceCall) -> ServiceResponse:
    """Tell the community of a fault at the home (sent at once, and again until stored)."""
    detail: str | None = (call.data.get(ATTR_DETAIL) or "").strip() or None
    if detail is not None and len(detail) > MAX_DETAIL:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="detail_too_long",
            translation_placeholders={"maximum": str(MAX_DETAIL), "length": str(len(detail))},
        )
    loaded_entry(call).runtime_data.reporter.async_fault(call.data[ATTR_CODE].upper(), detail)
    return None


@smart_community_action
async def _async_request_grid_connection(call: ServiceCall) -> ServiceResponse:
    """Ask the community to connect a PV system; the grant comes as an export limit event."""
    coordinator = loaded_entry(call).runtime_data.coordinator
    client = coordinator.client
    serial = call.data[ATTR_INVERTER_SERIAL]
    # Asking twice for the same inverter returns the open request instead of filing another.
    connection = pending_connection(await client.get_resources(), serial)
    requested = connection is None
    if connection is None:
        stored = await client.post_resource(
            connection_request(
                home=coordinator.placement.home,
                name=call.data.get(ATTR_NAME) or f"PV {serial}",
                capacity=call.data[ATTR_CAPACITY],
                make=call.data[ATTR_INVERTER_MAKE],
                model=call.data[ATTR_INVERTER_MODEL],
                serial=serial,
            )
        )
        connection = connection_of(stored)
        if connection is None:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="invalid_response",
                translation_placeholders={"error": "/resources answered no grid connection"},
            )
    return {
        "resource_id": connection.resource_id,
        "name": connection.name,
        "status": connection.status,
        "capacity": connection.capacity,
        "requested": requested,
    }


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's actions."""
    for name, handler, schema, supports in (
        (
            SERVICE_FIND_CHEAPEST_WINDOW,
            _async_find_cheapest_window,
            FIND_CHEAPEST_WINDOW_SCHEMA,
            SupportsResponse.ONLY,
        ),
        (SERVICE_OPT_IN, _async_opt_in, PARTICIPATION_SCHEMA, SupportsResponse.NONE),
        (SERVICE_OPT_OUT, _async_opt_out, PARTICIPATION_SCHEMA, SupportsResponse.NONE),
        (
            SERVICE_EXPORT_AUDIT_LOG,
            _async_export_audit_log,
            EXPORT_AUDIT_LOG_SCHEMA,
            SupportsResponse.OPTIONAL,
        ),
        (SERVICE_REPORT_FAULT, _async_report_fault, REPORT_FAULT_SCHEMA, SupportsResponse.NONE),
        (
            SERVICE_REQUEST_GRID_CONNECTION,
            _async_request_grid_connection,
            REQUEST_GRID_CONNECTION_SCHEMA,
            SupportsResponse.OPTIONAL,
        ),
    ):
        hass.services.async_register(
            DOMAIN, name, handler, schema=schema, supports_response=supports
        )
