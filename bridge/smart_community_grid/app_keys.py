"""The application's shared objects, each behind a typed key."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from aiohttp import web

from .issuer import Issuer
from .oauth import TokenAuthority
from .scenario import Scenario
from .vtn import Vtn

SCENARIO = web.AppKey("scenario", Scenario)
TOKENS = web.AppKey("tokens", TokenAuthority)
ISSUER = web.AppKey("issuer", Issuer)
VTN = web.AppKey("vtn", Vtn)
# The time the grid's objects, signatures and decisions follow (tests move it).
CLOCK = web.AppKey[Callable[[], datetime]]("clock")
