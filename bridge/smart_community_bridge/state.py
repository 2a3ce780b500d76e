"""The application's shared objects, each behind a typed key."""

from __future__ import annotations

from aiohttp import web

from .authority import CommunityAuthority
from .charging import ChargingManager
from .config import BridgeConfig
from .faults import FaultResponse
from .heap import HeapKeeper
from .intake import SignalIntake
from .interconnection import Interconnection
from .ledger import Ledger
from .relay import Relay
from .reporting import UpstreamReporter
from .telemetry import TelemetryIngest
from .upstream import UpstreamLink

CONFIG = web.AppKey("config", BridgeConfig)
LEDGER = web.AppKey("ledger", Ledger)
RELAY = web.AppKey("relay", Relay)
INTAKE = web.AppKey("intake", SignalIntake)
UPSTREAM = web.AppKey("upstream", UpstreamLink)
INGEST = web.AppKey("ingest", TelemetryIngest)
REPORTER = web.AppKey("reporter", UpstreamReporter)
HEAP = web.AppKey("heap", HeapKeeper)
AUTHORITY = web.AppKey("authority", CommunityAuthority)
INTERCONNECTION = web.AppKey("interconnection", Interconnection)
FAULTS = web.AppKey("faults", FaultResponse)
CHARGING = web.AppKey("charging", ChargingManager)
