"""Grid connections: a PV system's request, carried as a resource, and the grid's decision.

The community forwards a resident's request as a resource whose attributes say
``X_CONNECTION_STATUS`` REQUESTED and ``MAX_POWER_EXPORT`` (kW), targeted at one home. The grid
grants what its policy allows, publishing the limit as an EXPORT_CAPACITY_LIMIT event for that
home, or refuses with a reason; the resource's attributes then record the decision. A
connection the community granted itself under its delegation (COMMUNITY_GRANTED) is only
recorded. Nothing here stores or publishes: the VTN does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from smart_community_protocol import EventPayloadType
from smart_community_protocol.models import ValuesMap

from .demand_response import DemandResponse
from .errors import BadRequest
from .scenario import InterconnectionPolicy
from .targeting import home_targets

STATUS = "X_CONNECTION_STATUS"
MAX_POWER_EXPORT = "MAX_POWER_EXPORT"
GRANTED_KW = "X_GRANTED_KW"
GRANT_EVENT = "X_GRANT_EVENT"
REASON = "X_REASON"
# The attributes only the grid writes; a client's copies give way to the grid's decision.
_DECIDED = frozenset({GRANTED_KW, GRANT_EVENT, REASON})
# The specification's duration for "until further notice".
FOREVER = "P9999Y"
UNITS = "KW"


class ConnectionStatus(StrEnum):
    """Where a grid-connection request stands."""

    REQUESTED = "REQUESTED"
    GRANTED = "GRANTED"  # by the grid
    REFUSED = "REFUSED"  # by the grid
    COMMUNITY_GRANTED = "COMMUNITY_GRANTED"  # by the community, within its delegation


@dataclass(frozen=True, slots=True)
class ConnectionRequest:
    """What a request asks for: export of ``kilowatts`` at one home (its target)."""

    home: str
    kilowatts: float


@dataclass(frozen=True, slots=True)
class Decision:
    """The grid's answer to a request; a grant names the event that carries the limit."""

    request: ConnectionRequest
    status: ConnectionStatus
    reason: str | None = None
    event_id: str | None = None


def read_connection(
    attributes: list[ValuesMap] | None, targets: list[str] | None
) -> tuple[ConnectionStatus | None, ConnectionRequest | None]:
    """A resource's connection status and, unless the community granted it, its request.

    (None, None) for a resource that is no grid connection; BadRequest names what is wrong.
    """
    statuses = [attribute for attribute in attributes or () if attribute.type == STATUS]
    if not statuses:
        return None, None
    values = statuses[0].values
    known = [str(status) for status in ConnectionStatus]
    if len(statuses) > 1 or len(values) != 1 or values[0] not in known:
        raise BadRequest(f"attributes {STATUS}: expected one value, one of {', '.join(known)}")
    status = ConnectionStatus(str(values[0]))
    if status is ConnectionStatus.COMMUNITY_GRANTED:
        return status, None
    exports = [attribute for attribute in attributes or () if attribute.type == MAX_POWER_EXPORT]
    power = exports[0].values if len(exports) == 1 else []
    if (
        len(power) != 1
        or isinstance(power[0], bool)
        or not isinstance(power[0], int | float)
        or power[0] <= 0
    ):
        raise BadRequest(
            f"attributes {MAX_POWER_EXPORT}: a grid-connection request needs one positive"
            " number of kW"
        )
    homes = home_targets(targets)
    if len(homes) != 1:
        raise BadRequest(
            "targets: a grid-connection request names exactly one home (home:<c>/<h>),"
            f" not {len(homes)}"
        )
    return status, ConnectionRequest(homes[0], float(power[0]))


def decide(request: ConnectionRequest, policy: InterconnectionPolicy | None) -> Decision:
    """Grant what the policy approves; refuse the rest, saying why."""
    if policy is None:
        return Decision(
            request,
            ConnectionStatus.REFUSED,
            reason="This grid decides no grid-connection requests.",
        )
    if request.kilowatts <= policy.approve_up_to_kw:
        return Decision(request, ConnectionStatus.GRANTED)
    return Decision(
        request,
        ConnectionStatus.REFUSED,
        reason=(
            f"{request.kilowatts:g} kW is more than the {policy.approve_up_to_kw:g} kW the grid"
            " approves for one connection."
        ),
    )


def decided_attributes(
    attributes: list[dict[str, Any]], decision: Decision | None
) -> list[dict[str, Any]]:
    """A request's attributes with the grid's decision on it (None: still REQUESTED)."""
    status = decision.status if decision is not None else ConnectionStatus.REQUESTED
    result = [
        {"type": STATUS, "values": [str(status)]} if attribute.get("type") == STATUS else attribute
        for attribute in attributes
        if attribute.get("type") not in _DECIDED
    ]
    if decision is None:
        return result
    if decision.status is ConnectionStatus.GRANTED:
        result.append({"type": GRANTED_KW, "values": [decision.request.kilowatts]})
        result.append({"type": GRANT_EVENT, "values": [decision.event_id]})
    elif decision.reason is not None:
        result.append({"type": REASON, "values": [decision.reason]})
    return result


def interconnection_program(name: str) -> dict[str, Any]:
    """The program request body of the program grants are published in."""
    return {
        "programName": name,
        "payloadDescriptors": [
            {
                "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                "payloadType": str(EventPayloadType.EXPORT_CAPACITY_LIMIT),
                "units": UNITS,
            }
        ],
    }


def grant_event(
    program_id: str, resource_name: str, request: ConnectionRequest, now: datetime
) -> dict[str, Any]:
    """The event request body of a grant: the export limit at the home, from now on."""
    return DemandResponse(
        program_id=program_id,
        name=f"grid connection {resource_name}",
        payload_type=str(EventPayloadType.EXPORT_CAPACITY_LIMIT),
        value=request.kilowatts,
        start=now,
        duration=FOREVER,
        units=UNITS,
        targets=[request.home],
    ).event_body()
