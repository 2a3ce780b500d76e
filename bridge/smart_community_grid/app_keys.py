"""The application's shared objects, each behind a typed key."""

from __future__ import annotations

from aiohttp import web

from .issuer import Issuer
from .oauth import TokenAuthority
from .scenario import Scenario
from .vtn import Vtn

SCENARIO = web.AppKey("scenario", Scenario)
TOKENS = web.AppKey("tokens", TokenAuthority)
ISSUER = web.AppKey("issuer", Issuer)
VTN = web.AppKey("vtn", Vtn)
