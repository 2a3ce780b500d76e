"""Actions of the Smart Community integration, registered once in ``async_setup``.

Every action names its home with an optional config entry (needed only when several homes are
set up) and runs through ``smart_community_action``, which turns bridge failures into
translated errors, so that each action states only what it does.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from functools import wraps
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
from homeassistant.util import dt as dt_util
import probatio

from .bridge_client import BridgeAuthenticationError, BridgeConnectionError, BridgeError
from .const import DOMAIN
from .coordinator import SmartCommunityConfigEntry
from .prices import WindowError, WindowProblem, cheapest_window
from .signals import price_unit

ATTR_CONFIG_ENTRY: Final = "config_entry"
ATTR_DURATION: Final = "duration"
ATTR_EARLIEST_START: Final = "earliest_start"
ATTR_LATEST_END: Final = "latest_end"

SERVICE_FIND_CHEAPEST_WINDOW: Final = "find_cheapest_window"

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


@callback
def async_setup_services(hass: HomeAssistant) -> None:
    """Register the integration's actions."""
    hass.services.async_register(
        DOMAIN,
        SERVICE_FIND_CHEAPEST_WINDOW,
        _async_find_cheapest_window,
        schema=FIND_CHEAPEST_WINDOW_SCHEMA,
        supports_response=SupportsResponse.ONLY,
    )
