"""The mock grid as an aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime

import aiohttp
from aiohttp import web

from .api import add_routes, problems_middleware
from .app_keys import CLOCK, ISSUER, SCENARIO, TOKENS, VTN
from .issuer import Issuer, load_signer
from .oauth import TokenAuthority
from .runner import scenario_context
from .scenario import Scenario
from .vtn import Vtn, utc_now
from .webhooks import Webhooks


async def _vtn_context(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the VTN and the HTTP client its webhooks call out with."""
    scenario = app[SCENARIO]
    async with aiohttp.ClientSession() as session:
        webhooks = Webhooks(session, scenario.webhooks)
        app[VTN] = Vtn(
            clients=scenario.clients,
            communities=scenario.communities,
            issuer=app[ISSUER],
            webhooks=webhooks,
            clock=app[CLOCK],
            delegations=scenario.delegations,
            interconnection=scenario.interconnection,
        )
        yield
        app[VTN].close()
        await webhooks.close()


def create_app(scenario: Scenario, *, clock: Callable[[], datetime] = utc_now) -> web.Application:
    """Build the grid for a scenario; the signing key is loaded (or created) here.

    ``clock`` is the time of the grid's objects, signatures, delegations and decisions.
    """
    app = web.Application(middlewares=[problems_middleware], client_max_size=scenario.max_body_size)
    app[SCENARIO] = scenario
    app[CLOCK] = clock
    app[TOKENS] = TokenAuthority(scenario.grid, scenario.clients, lifetime=scenario.token_lifetime)
    app[ISSUER] = Issuer(load_signer(scenario.grid, scenario.signing_key), scenario.communities)
    app.cleanup_ctx.append(_vtn_context)
    app.cleanup_ctx.append(scenario_context)
    add_routes(app)
    return app
