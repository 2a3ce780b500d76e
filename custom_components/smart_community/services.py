"""Actions of the Smart Community integration, registered once in ``async_setup``."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
import functools
from pathlib import Path
from typing import Any, Final

from homeassistant.core import HomeAssistant, ServiceCall, ServiceResponse, SupportsResponse
from homeassistant.exceptions import HomeAssistantError, ServiceValidationError
from homeassistant.helpers import config_validation as cv, service
from homeassistant.util import slugify
import probatio

from .bridge_client import BridgeError, BridgeRefusedError
from .const import DOMAIN
from .coordinator import SmartCommunityConfigEntry
from .uplink import connection_of, connection_request, pending_connection

ATTR_CONFIG_ENTRY_ID: Final = "config_entry_id"
ATTR_EVENT_ID: Final = "event_id"
ATTR_SAVE_FILE: Final = "save_file"
ATTR_CODE: Final = "code"
ATTR_DETAIL: Final = "detail"
ATTR_CAPACITY: Final = "capacity"
ATTR_INVERTER_MAKE: Final = "inverter_make"
ATTR_INVERTER_MODEL: Final = "inverter_model"
ATTR_INVERTER_SERIAL: Final = "inverter_serial"
ATTR_NAME: Final = "name"

SERVICE_OPT_IN: Final = "opt_in"
SERVICE_OPT_OUT: Final = "opt_out"
SERVICE_EXPORT_AUDIT_LOG: Final = "export_audit_log"
SERVICE_REPORT_FAULT: Final = "report_fault"
SERVICE_REQUEST_GRID_CONNECTION: Final = "request_grid_connection"

# The report carries the code in capitals (X_FAULT_CODE LOSS_OF_SUPPLY).
FAULT_CODES: Final = ("loss_of_supply", "voltage_quality", "device_fault", "other")
MAX_DETAIL: Final = 500

_ENTRY = {probatio.Optional(ATTR_CONFIG_ENTRY_ID): cv.string}
_TEXT = probatio.All(cv.string, probatio.Strip, probatio.Length(min=1, max=100))
_PARTICIPATION_SCHEMA = probatio.Schema(
    {**_ENTRY, probatio.Optional(ATTR_EVENT_ID): probatio.All(cv.string, probatio.Strip)}
)
_EXPORT_SCHEMA = probatio.Schema(
    {**_ENTRY, probatio.Optional(ATTR_SAVE_FILE, default=False): cv.boolean}
)
_FAULT_SCHEMA = probatio.Schema(
    {
        **_ENTRY,
        probatio.Required(ATTR_CODE): probatio.In(FAULT_CODES),
        probatio.Optional(ATTR_DETAIL): cv.string,
    }
)
_CONNECTION_SCHEMA = probatio.Schema(
    {
        **_ENTRY,
        probatio.Required(ATTR_CAPACITY): probatio.All(
            probatio.Coerce(float), probatio.Range(min=0.1, max=1000)
        ),
        probatio.Required(ATTR_INVERTER_MAKE): _TEXT,
        probatio.Required(ATTR_INVERTER_MODEL): _TEXT,
        probatio.Required(ATTR_INVERTER_SERIAL): _TEXT,
        probatio.Optional(ATTR_NAME): _TEXT,
    }
)

type _Handler = Callable[[ServiceCall], Coroutine[Any, Any, ServiceResponse]]


def _entry(call: ServiceCall) -> SmartCommunityConfigEntry:
    entry: SmartCommunityConfigEntry = service.async_get_config_entry(
        call.hass, DOMAIN, call.data.get(ATTR_CONFIG_ENTRY_ID)
    )
    return entry


def _handle_bridge_errors(handler: _Handler) -> _Handler:
    """Turn the bridge's failures into translated errors the resident can act on."""

    @functools.wraps(handler)
    async def wrapper(call: ServiceCall) -> ServiceResponse:
        try:
            return await handler(call)
        except BridgeRefusedError as err:
            raise ServiceValidationError(
                translation_domain=DOMAIN,
                translation_key="request_refused",
                translation_placeholders={"error": str(err)},
            ) from err
        except BridgeError as err:
            raise HomeAssistantError(
                translation_domain=DOMAIN,
                translation_key="communication_error",
                translation_placeholders={"error": str(err)},
            ) from err

    return wrapper


async def _opt_in(call: ServiceCall) -> ServiceResponse:
    await _entry(call).runtime_data.responder.async_participate(call.data.get(ATTR_EVENT_ID), True)
    return None


async def _opt_out(call: ServiceCall) -> ServiceResponse:
    await _entry(call).runtime_data.responder.async_participate(call.data.get(ATTR_EVENT_ID), False)
    return None


async def _export_audit_log(call: ServiceCall) -> ServiceResponse:
    entry = _entry(call)
    responder = entry.runtime_data.responder
    path: Path | None = None
    if call.data[ATTR_SAVE_FILE]:
        name = f"audit_{slugify(entry.unique_id or entry.entry_id)}.csv"
        path = Path(call.hass.config.path(DOMAIN, name))
    text = await responder.async_export_csv(path)
    return {"csv": text, "entries": len(responder.audit), "path": str(path) if path else None}


async def _report_fault(call: ServiceCall) -> ServiceResponse:
    detail: str | None = (call.data.get(ATTR_DETAIL) or "").strip() or None
    if detail is not None and len(detail) > MAX_DETAIL:
        raise ServiceValidationError(
            translation_domain=DOMAIN,
            translation_key="detail_too_long",
            translation_placeholders={"maximum": str(MAX_DETAIL), "length": str(len(detail))},
        )
    _entry(call).runtime_data.reporter.async_fault(call.data[ATTR_CODE].upper(), detail)
    return None


@_handle_bridge_errors
async def _request_grid_connection(call: ServiceCall) -> ServiceResponse:
    client = _entry(call).runtime_data.coordinator.client
    serial = call.data[ATTR_INVERTER_SERIAL]
    # Asking twice for the same inverter returns the open request instead of filing another.
    connection = pending_connection(await client.get_resources(), serial)
    requested = connection is None
    if connection is None:
        stored = await client.post_resource(
            connection_request(
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
    response: dict[str, Any] = {
        "resource_id": connection.resource_id,
        "name": connection.name,
        "status": connection.status,
        "capacity": connection.capacity,
        "requested": requested,
    }
    return response


def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's actions."""
    for name, handler, schema, supports in (
        (SERVICE_OPT_IN, _opt_in, _PARTICIPATION_SCHEMA, SupportsResponse.NONE),
        (SERVICE_OPT_OUT, _opt_out, _PARTICIPATION_SCHEMA, SupportsResponse.NONE),
        (SERVICE_EXPORT_AUDIT_LOG, _export_audit_log, _EXPORT_SCHEMA, SupportsResponse.OPTIONAL),
        (SERVICE_REPORT_FAULT, _report_fault, _FAULT_SCHEMA, SupportsResponse.NONE),
        (
            SERVICE_REQUEST_GRID_CONNECTION,
            _request_grid_connection,
            _CONNECTION_SCHEMA,
            SupportsResponse.OPTIONAL,
        ),
    ):
        hass.services.async_register(
            DOMAIN, name, handler, schema=schema, supports_response=supports
        )
