"""Constants of the Smart Community integration."""

from datetime import timedelta
import logging
from typing import Final

DOMAIN: Final = "smart_community"
LOGGER = logging.getLogger(__package__)

MANUFACTURER: Final = "Smart Community"

# Entry data: where the home sits, and the grid keys it pinned at enrollment.
CONF_PLACEMENT: Final = "placement"
CONF_KEYS: Final = "keys"

# Push is the normal path; the REST resync only catches what push might have missed.
RESYNC_INTERVAL: Final = timedelta(minutes=15)

# Reconnects back off exponentially with jitter, so thousands of homes that lost the bridge
# at the same moment do not all come back at the same moment.
RECONNECT_MINIMUM: Final = timedelta(seconds=1)
RECONNECT_MAXIMUM: Final = timedelta(minutes=5)

# What must survive a restart: the replay guard, the last applied sequence, applied objects.
STORAGE_VERSION: Final = 1
STORAGE_SAVE_DELAY: Final = 1.0

# Past demand-response events stay on the calendar this long, and at most this many of them.
DEMAND_RESPONSE_HISTORY: Final = timedelta(days=30)
DEMAND_RESPONSE_HISTORY_SIZE: Final = 1000

# Repairs: a bridge unheard of this long, or a bridge clock this far from the home's. Signals
# are refused once clocks are a minute apart, so the warning comes before that.
BRIDGE_UNREACHABLE_AFTER: Final = timedelta(hours=1)
CLOCK_SKEW_LIMIT: Final = timedelta(seconds=30)
# Devices the home drives, each a config subentry of the home's entry.
SUBENTRY_INVERTER: Final = "inverter"
CONF_UNIT_ID: Final = "unit_id"
CONF_MANUFACTURER: Final = "manufacturer"
CONF_MODEL: Final = "model"
CONF_SERIAL: Final = "serial"
CONF_VERSION: Final = "version"
CONF_POWER_LIMIT: Final = "power_limit"
INVERTER_POLL_INTERVAL: Final = timedelta(seconds=30)
# An inverter limit lapses this long after its last write unless written again; it is written
# again halfway, and never more often than every MIN_INTERVAL.
INVERTER_LIMIT_REVERT: Final = timedelta(minutes=10)
INVERTER_LIMIT_REFRESH: Final = timedelta(minutes=5)
INVERTER_LIMIT_MIN_INTERVAL: Final = timedelta(seconds=10)

# Options of the load-response engine and of what the home reports upstream.
CONF_LOADS: Final = "loads"
CONF_INVERTERS: Final = "inverters"
CONF_ENTITY_ID: Final = "entity_id"
CONF_NOMINAL_POWER: Final = "nominal_power"
CONF_POWER_SENSOR: Final = "power_sensor"
CONF_TEMPERATURE_OFFSET: Final = "temperature_offset"
CONF_MINIMUM_VALUE: Final = "minimum_value"
CONF_RATED_POWER: Final = "rated_power"
CONF_MAX_SHED_POWER: Final = "max_shed_power"
CONF_STALE_AFTER: Final = "stale_after"
CONF_TELEMETRY: Final = "telemetry"
CONF_TELEMETRY_INTERVAL: Final = "telemetry_interval"
CONF_CHEAPEST_WINDOW: Final = "cheapest_window"
CONF_PHASES: Final = "phases"
CONF_VOLTAGE: Final = "voltage"

DEFAULT_NOMINAL_POWER: Final = 1.0  # kW
DEFAULT_RATED_POWER: Final = 5.0  # kW, an inverter's
DEFAULT_MAX_SHED_POWER: Final = 5.0  # kW
DEFAULT_STALE_AFTER: Final = {"hours": 0, "minutes": 15, "seconds": 0}
DEFAULT_TELEMETRY_INTERVAL: Final = {"hours": 0, "minutes": 5, "seconds": 0}
DEFAULT_CHEAPEST_WINDOW: Final = {"hours": 2, "minutes": 0, "seconds": 0}

# The engine switches one device at a time, this far apart, so a home never swings its whole
# load at once; the spread across homes comes from randomizeStart.
ACTION_SPACING: Final = timedelta(seconds=10)
# Sensors are read this often for telemetry and the baseline.
SAMPLE_INTERVAL: Final = timedelta(minutes=1)
# Reports waiting for the bridge, at most; the oldest telemetry goes first when full.
MAX_QUEUED_REPORTS: Final = 500
