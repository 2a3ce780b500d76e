"""Diagnostics of the Smart Community integration: the entry, the link, the signals held, what
the home did with them and reported, and the devices it drives.

The home credential is redacted. Grid keys are public and shown by fingerprint; signed objects
are summarised (their signatures are public too, but long and of no help in a report), those the
community signed with the grid's delegation that vouches for them: its grid, delegate, key,
grants and validity, never the token itself. Devices are shown without their network addresses
or serial numbers.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict
from typing import Any, Final

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.const import CONF_API_TOKEN
from homeassistant.core import HomeAssistant

from .coordinator import AppliedObject, SmartCommunityConfigEntry, SmartCommunityData
from .inverter import inverter_diagnostics
from .protocol import Delegation, Event
from .zha_loads import async_zigbee_diagnostics

TO_REDACT = {CONF_API_TOKEN}
# The latest audit entries shown; the whole log is exported with an action.
AUDIT_TAIL: Final = 20


def _applied(applied: AppliedObject) -> dict[str, Any]:
    claims = applied.claims
    summary: dict[str, Any] = {
        "object_type": applied.model.object_type,
        "id": applied.model.id,
        "received_at": applied.received_at,
        "issuer": claims.iss,
        "audience": list(claims.aud),
        "sequence": claims.seq,
        "operation": claims.op,
        "valid_from": claims.nbf,
        "expires": claims.exp,
    }
    if applied.delegation is not None:
        summary["delegation"] = _delegation(applied.delegation)
    if isinstance(applied.model, Event):
        summary["program_id"] = applied.model.program_id
        summary["event_name"] = applied.model.event_name
        summary["intervals"] = len(applied.model.intervals)
    else:
        summary["program_name"] = applied.model.program_name
    return summary


def _delegation(delegation: Delegation) -> dict[str, Any]:
    """What a delegation lets the community sign, and until when."""
    return {
        "grid": delegation.grid,
        "delegate": delegation.delegate,
        "community": delegation.community,
        "key": delegation.key.kid,
        "grants": {
            payload_type: grant.to_claim() for payload_type, grant in delegation.grants.items()
        },
        "hosting_kw": dict(delegation.hosting_kw),
        "valid_from": delegation.not_before,
        "expires": delegation.expires,
    }


def _load_response(data: SmartCommunityData) -> dict[str, Any]:
    responder = data.responder
    return {
        "enrolled": responder.config.entity_ids,
        "engine": responder.engine.to_json(),
        "shed_power": responder.shed_power,
        "audit_entries": len(responder.audit),
        "audit_tail": [entry.to_json() for entry in list(responder.audit)[-AUDIT_TAIL:]],
    }


def _uplink(data: SmartCommunityData) -> dict[str, Any]:
    reporter = data.reporter
    last = reporter.last_reduction
    return {
        "queued": dict(Counter(item["kind"] for item in reporter.queue)),
        "last_reduction": None if last is None else last.to_json(),
    }


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: SmartCommunityConfigEntry
) -> dict[str, Any]:
    """What a resident can attach to a report: no credential, no secret."""
    coordinator = entry.runtime_data.coordinator
    state = coordinator.data
    offset = coordinator.client.clock_offset
    offered = coordinator.offered_keys
    return {
        "entry": {
            "title": entry.title,
            "data": async_redact_data(entry.data, TO_REDACT),
            "options": async_redact_data(entry.options, TO_REDACT),
        },
        "link": {
            "connected": coordinator.connected,
            "last_update_success": coordinator.last_update_success,
            "last_contact": state.last_contact,
            "last_seq": coordinator.last_seq,
            "bridge_clock_offset_seconds": None if offset is None else offset.total_seconds(),
            "pinned_keys": [key.kid for key in coordinator.pinned_keys],
            "offered_keys": None if offered is None else [key.kid for key in offered],
        },
        "signals": {
            "applied": [_applied(applied) for applied in coordinator.applied],
            "rejected": state.rejected,
            "last_rejection": asdict(state.last_rejection) if state.last_rejection else None,
        },
        "outlook": asdict(state.outlook),
        "prices": asdict(state.prices),
        "calendar": [asdict(period) for period in state.calendar],
        "load_response": _load_response(entry.runtime_data),
        "uplink": _uplink(entry.runtime_data),
        "inverters": inverter_diagnostics(entry),
        "zigbee_loads": async_zigbee_diagnostics(hass),
    }
