"""Grid connections of homes' PV systems, handled by the community under the grid's authority.

A home asks by registering a resource (``POST /resources``) whose attributes give the export
power it wants (``MAX_POWER_EXPORT``, kW) and its inverter (``X_INVERTER``: make, model,
serial). The community decides first: within what the grid's delegation lets it grant (an
``EXPORT_CAPACITY_LIMIT`` grant, and the hosting capacity allotted to the home's transformer,
less what the community has granted there already) it grants the connection itself. It signs
an ``EXPORT_CAPACITY_LIMIT`` event for the home (the export limit its inverter must keep) and
records the grant at the grid, as a resource of the bridge's VEN with status
``COMMUNITY_GRANTED``. Anything else it forwards to the grid (status ``REQUESTED``) and follows
the grid's decision, read back from that resource; a grid grant comes as the grid's own signed
event for the home.

The home reads its resource back with ``X_CONNECTION_STATUS`` REQUESTED, GRANTED or REFUSED
(``X_GRANTED_KW``, ``X_REASON`` beside). What the grid must still be told survives restarts: a
resource not yet posted upstream is posted at the next sync.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
import logging
import secrets
import time
from typing import Any

from smart_community_protocol import (
    Delegation,
    DelegationError,
    ModelError,
    Operation,
    Placement,
    ValuesMap,
    format_datetime,
)
from smart_community_protocol.validation import check_body

from .authority import CommunityAuthority, VenRegistration
from .intake import SignalIntake
from .ledger import HomeRecord, HomeResource, Ledger
from .upstream import GridClient, GridUnavailable

_LOGGER = logging.getLogger(__name__)

MAX_POWER_EXPORT = "MAX_POWER_EXPORT"
INVERTER = "X_INVERTER"
CONNECTION_STATUS = "X_CONNECTION_STATUS"
GRANTED_KW = "X_GRANTED_KW"
REASON = "X_REASON"
HOME_ATTRIBUTE = "X_HOME"
EXPORT_LIMIT = "EXPORT_CAPACITY_LIMIT"
COMMUNITY_PROGRAM = "X_COMMUNITY"

REQUESTED = "REQUESTED"
GRANTED = "GRANTED"
REFUSED = "REFUSED"
COMMUNITY_GRANTED = "COMMUNITY_GRANTED"
# A community grant's event is signed again once the delegation outlasts its signature by this.
RESIGN_MARGIN = 6 * 3600
# The attributes homes may set (what the community reads); its own it sets itself.
_HOME_ATTRIBUTES = frozenset({MAX_POWER_EXPORT, INVERTER})
_REQUEST_KEYS = frozenset({"objectType", "resourceName", "venID", "attributes"})


class ResourceRejected(ValueError):
    """A resource a home sent is not one the bridge takes; the message names what is wrong."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What the community does with a grid-connection request."""

    grant: bool  # True: the community grants it itself; False: it goes to the grid
    why: str


def decide(
    request_kw: float, transformer_target: str, granted_kw: float, delegation: Delegation | None
) -> Decision:
    """Grant within the delegation and the transformer's hosting capacity, else forward."""
    if delegation is None:
        return Decision(False, "the community holds no delegation to grant connections")
    grant = delegation.grant(EXPORT_LIMIT)
    capacity = delegation.hosting_kw.get(transformer_target)
    if grant is None or capacity is None:
        return Decision(False, f"the delegation grants no export capacity on {transformer_target}")
    if not grant.admits(request_kw):
        return Decision(
            False, f"{request_kw:g} kW is beyond the {grant.maximum:g} kW the community may grant"
        )
    left = capacity - granted_kw
    if request_kw > left:
        return Decision(False, f"{left:g} kW of {transformer_target}'s hosting capacity is left")
    return Decision(True, f"within {transformer_target}'s hosting capacity ({left:g} kW left)")


def read_request(body: object, home: Placement) -> tuple[str, list[dict[str, Any]], float | None]:
    """(resource name, attributes, requested kW or None) of a resource a home sends.

    A ``VenResourceRequest`` (objectType and venID may be left out: the bridge provisions
    them); ResourceRejected names what is wrong.
    """
    if not isinstance(body, dict):
        raise ResourceRejected("body: expected a JSON object")
    unknown = sorted(set(body) - _REQUEST_KEYS)
    if unknown:
        raise ResourceRejected(f"{unknown[0]}: not a property a home sets on a resource")
    if body.get("objectType", "VEN_RESOURCE_REQUEST") != "VEN_RESOURCE_REQUEST":
        raise ResourceRejected("objectType: must be VEN_RESOURCE_REQUEST")
    if body.get("venID", home.home) != home.home:
        raise ResourceRejected(f"venID: this home's VEN is {home.home!r}")
    name = body.get("resourceName")
    if not isinstance(name, str) or not 1 <= len(name) <= 128:
        raise ResourceRejected("resourceName: expected a string of 1 to 128 characters")
    attributes = body.get("attributes", [])
    if not isinstance(attributes, list):
        raise ResourceRejected("attributes: expected an array of valuesMaps")
    kilowatts: float | None = None
    for index, attribute in enumerate(attributes):
        try:
            check_body(ValuesMap, attribute)
        except ModelError as err:
            raise ResourceRejected(f"attributes[{index}].{err}") from err
        kind, values = attribute["type"], attribute["values"]
        if kind not in _HOME_ATTRIBUTES:
            raise ResourceRejected(f"attributes[{index}].type: {kind!r} is set by the bridge")
        if kind == MAX_POWER_EXPORT:
            if (
                len(values) != 1
                or isinstance(values[0], bool)
                or not isinstance(values[0], int | float)
                or not 0 < values[0] <= 10_000
            ):
                raise ResourceRejected(
                    f"attributes[{index}].values: one export power in kW, above 0"
                )
            kilowatts = float(values[0])
        elif not all(isinstance(value, str) and len(value) <= 100 for value in values):
            raise ResourceRejected(
                f"attributes[{index}].values: the inverter's make, model, serial"
            )
    return name, attributes, kilowatts


def _attribute(body: Mapping[str, Any], kind: str) -> list[Any] | None:
    for attribute in body.get("attributes") or ():
        if isinstance(attribute, Mapping) and attribute.get("type") == kind:
            values = attribute.get("values")
            return values if isinstance(values, list) else None
    return None


def requested_kw(resource: HomeResource) -> float | None:
    """The export power a resource asks for, if it is a grid-connection request."""
    values = _attribute(resource.body, MAX_POWER_EXPORT)
    return float(values[0]) if values else None


def _with_status(
    body: Mapping[str, Any],
    status: str,
    *,
    granted_kw: float | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """The body with the bridge's own attributes set anew."""
    own = {CONNECTION_STATUS, GRANTED_KW, REASON}
    attributes = [a for a in body.get("attributes") or () if a.get("type") not in own]
    attributes.append({"type": CONNECTION_STATUS, "values": [status]})
    if granted_kw is not None:
        attributes.append({"type": GRANTED_KW, "values": [granted_kw]})
    if reason is not None:
        attributes.append({"type": REASON, "values": [reason]})
    now = format_datetime(datetime.now(UTC))
    return {**body, "attributes": attributes, "modificationDateTime": now}


class Interconnection:
    """Takes homes' grid-connection requests; grants, forwards, and follows the grid."""

    def __init__(
        self,
        ledger: Ledger,
        authority: CommunityAuthority,
        intake: SignalIntake,
        client: GridClient,
        registration: VenRegistration,
    ) -> None:
        """Decide under ``authority``; publish grants through ``intake``; tell the grid through
        ``client``, as resources of the bridge's VEN (``registration``)."""
        self._ledger = ledger
        self._authority = authority
        self._intake = intake
        self._client = client
        self._registration = registration
        self._lock = asyncio.Lock()  # one decision at a time: capacity is shared

    async def register(self, home: Placement, body: object) -> HomeResource:
        """Store a home's resource and, for a grid-connection request, decide on it."""
        name, attributes, kilowatts = read_request(body, home)
        now = format_datetime(datetime.now(UTC))
        resource_id = f"resource-{secrets.token_hex(8)}"
        stored = {
            "id": resource_id,
            "createdDateTime": now,
            "modificationDateTime": now,
            "objectType": "RESOURCE",
            "resourceName": name,
            "venID": home.home,
            "clientID": home.home,
            "targets": [home.home_target],
            "attributes": attributes,
        }
        async with self._lock:
            if kilowatts is None:
                resource = HomeResource(resource_id, home.home, stored, "", None, None)
                await self._ledger.add_home_resource(resource)
                return resource
            granted_here = await self._granted_kw(home)
            decision = decide(
                kilowatts, f"transformer:{home.community}/{home.transformer}", granted_here,
                self._authority.current,
            )  # fmt: skip
            if decision.grant:
                resource = HomeResource(
                    resource_id, home.home, _with_status(stored, GRANTED, granted_kw=kilowatts),
                    GRANTED, None, COMMUNITY_GRANTED,
                )  # fmt: skip
                await self._ledger.add_home_resource(resource)
                await self._publish_grant(resource, home, kilowatts)
            else:
                resource = HomeResource(
                    resource_id, home.home, _with_status(stored, REQUESTED), REQUESTED, None, None
                )
                await self._ledger.add_home_resource(resource)
            _LOGGER.info(
                "grid connection of %s for home %s: %s (%s)",
                f"{kilowatts:g} kW", home.home, "granted" if decision.grant else "forwarded",
                decision.why,
            )  # fmt: skip
        await self._tell_grid()
        return resource

    async def _granted_kw(self, home: Placement) -> float:
        """Export capacity the community itself granted on the home's transformer so far."""
        homes = {h.home_id: h.transformer for h in await self._ledger.homes()}
        return sum(
            requested_kw(resource) or 0.0
            for resource in await self._ledger.home_resources()
            if resource.upstream_status == COMMUNITY_GRANTED
            and homes.get(resource.home_id) == home.transformer
        )

    async def _publish_grant(
        self,
        resource: HomeResource,
        home: Placement,
        kilowatts: float,
        operation: Operation = Operation.CREATE,
    ) -> None:
        """The community's signed export limit for the home, relayed like any signal."""
        now = datetime.now(UTC)
        event = {
            "id": f"grant-{resource.id}",
            "objectType": "EVENT",
            "createdDateTime": format_datetime(now),
            "modificationDateTime": format_datetime(now),
            "programID": COMMUNITY_PROGRAM,
            "eventName": f"grid connection of {resource.body['resourceName']}",
            "targets": [home.home_target],
            "payloadDescriptors": [
                {
                    "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                    "payloadType": EXPORT_LIMIT,
                    "units": "KW",
                }
            ],
            "intervalPeriod": {"start": format_datetime(now), "duration": "P9999Y"},
            "intervals": [{"id": 0, "payloads": [{"type": EXPORT_LIMIT, "values": [kilowatts]}]}],
        }
        try:
            signed = self._authority.sign_event(
                event, audience=[home.home_target], operation=operation
            )
        except DelegationError as err:
            _LOGGER.warning("cannot sign the grant for %s: %s", resource.id, err)
            return
        await self._intake.accept(signed, operation)

    async def _tell_grid(self) -> None:
        try:
            await self.sync()
        except GridUnavailable as err:
            _LOGGER.info("the grid will hear of the request later: %s", err)

    async def sync(self) -> None:
        """Post what the grid has not seen; take the grid's decisions; renew grant signatures."""
        ven_id = self._registration.ven_id
        if ven_id is None:
            return
        async with self._lock:
            resources = await self._ledger.home_resources()
            placements = {h.home_id: h for h in await self._ledger.homes()}
            for resource in resources:
                if resource.upstream_id is None and requested_kw(resource) is not None:
                    await self._post_upstream(ven_id, resource)
            upstream = {r["id"]: r for r in await self._client.resources(ven_id)}
            for resource in await self._ledger.home_resources():
                copy = upstream.get(resource.upstream_id) if resource.upstream_id else None
                if copy is not None and resource.status == REQUESTED:
                    await self._follow(resource, copy)
            await self._renew_grants(placements)

    async def _post_upstream(self, ven_id: str, resource: HomeResource) -> None:
        status = resource.upstream_status or REQUESTED
        own = {CONNECTION_STATUS, GRANTED_KW, REASON}
        attributes = [a for a in resource.body["attributes"] if a.get("type") not in own]
        attributes.append({"type": CONNECTION_STATUS, "values": [status]})
        attributes.append({"type": HOME_ATTRIBUTE, "values": [resource.home_id]})
        stored = await self._client.post_resource(
            {
                "objectType": "VEN_RESOURCE_REQUEST",
                "resourceName": f"{resource.home_id}/{resource.body['resourceName']}",
                "venID": ven_id,
                "targets": resource.body["targets"],
                "attributes": attributes,
            }
        )
        await self._ledger.update_home_resource(
            replace(resource, upstream_id=str(stored["id"]), upstream_status=status)
        )

    async def _follow(self, resource: HomeResource, copy: Mapping[str, Any]) -> None:
        """Take the grid's decision on a forwarded request."""
        status = (_attribute(copy, CONNECTION_STATUS) or [None])[0]
        if status == GRANTED:
            granted = (_attribute(copy, GRANTED_KW) or [requested_kw(resource)])[0]
            body = _with_status(resource.body, GRANTED, granted_kw=granted)
        elif status == REFUSED:
            reason = (_attribute(copy, REASON) or ["the grid refused it"])[0]
            body = _with_status(resource.body, REFUSED, reason=str(reason))
        else:
            return
        await self._ledger.update_home_resource(
            replace(resource, body=body, status=str(status), upstream_status=str(status))
        )
        _LOGGER.info("the grid %s the grid connection %s", str(status).lower(), resource.id)

    async def _renew_grants(self, placements: Mapping[str, HomeRecord]) -> None:
        """Sign the community's grants again under a delegation that outlasts their signatures."""
        delegation = self._authority.current
        if delegation is None:
            return
        now = time.time()
        current = {s.object_id: s for s in await self._ledger.current_objects("EVENT", now=now)}
        for resource in await self._ledger.home_resources():
            record = placements.get(resource.home_id)
            if resource.upstream_status != COMMUNITY_GRANTED or record is None:
                continue
            signal = current.get(f"grant-{resource.id}")
            if signal is not None and delegation.expires - signal.expires <= RESIGN_MARGIN:
                continue
            placement = Placement(
                community=self._authority.community,
                feeder=record.feeder,
                transformer=record.transformer,
                home=record.home_id,
            )
            operation = Operation.CREATE if signal is None else Operation.UPDATE
            await self._publish_grant(resource, placement, requested_kw(resource) or 0.0, operation)

    async def withdraw(self, home: Placement, resource_id: str) -> HomeResource | None:
        """Remove a home's own resource (None when it has none by that id).

        A connection the community granted is cancelled (its export limit is withdrawn with a
        signed DELETE); the grid's copy goes too, now or at a later sync.
        """
        resource = next(
            (r for r in await self._ledger.home_resources(home.home) if r.id == resource_id), None
        )
        if resource is None:
            return None
        async with self._lock:
            if resource.upstream_status == COMMUNITY_GRANTED:
                await self._publish_grant(resource, home, 0.0, Operation.DELETE)
            await self._ledger.delete_home_resource(resource_id)
        if resource.upstream_id is not None:
            try:
                await self._client.delete_resource(resource.upstream_id)
            except GridUnavailable as err:
                _LOGGER.warning("the grid keeps resource %s for now: %s", resource.upstream_id, err)
        return resource

    async def run(self, every: float) -> None:
        """Follow the grid every ``every`` seconds until cancelled."""
        while True:
            await asyncio.sleep(every)
            try:
                await self.sync()
            except GridUnavailable as err:
                _LOGGER.info("grid connections not synchronised: %s", err)


def listing(resources: Sequence[HomeResource]) -> list[dict[str, Any]]:
    """Resources as homes read them."""
    return [resource.body for resource in resources]
