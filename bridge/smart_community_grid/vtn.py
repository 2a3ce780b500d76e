"""The grid's VTN: programs, events, reports, subscriptions, VENs and resources, with their
access rules.

Every program and event is stored as the grid signed it; every change is announced to the
subscriptions allowed to see the object. A VEN of a client the scenario delegates to carries
the grid's delegation; a resource that requests a grid connection gets the grid's decision.
Nothing here knows about HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
import secrets
from types import MappingProxyType
from typing import Any

from smart_community_protocol import (
    Event,
    ModelError,
    Notification,
    ObjectType,
    Operation,
    Program,
    PublicKey,
    Report,
    Subscription,
    TimingError,
    addresses,
    community_target,
    event_window,
    format_datetime,
)
from smart_community_protocol.models import OpenADRModel, Resource, Ven
from smart_community_protocol.validation import check_body

from .delegations import (
    IssuedDelegation,
    accept_attributes,
    delegate,
    delegate_key,
    with_delegation,
)
from .errors import BadRequest, Conflict, NotFound
from .interconnection import (
    STATUS,
    ConnectionRequest,
    ConnectionStatus,
    Decision,
    decide,
    decided_attributes,
    grant_event,
    read_connection,
)
from .issuer import Issuer
from .oauth import Client, Principal, Role
from .scenario import DelegationPlan, InterconnectionPolicy
from .targeting import check_targets
from .webhooks import Callback, Webhooks

MAX_PAGE = 50


@dataclass(frozen=True, slots=True)
class Page:
    """Which slice of a listing to return (the specification's ``skip`` and ``limit``)."""

    skip: int = 0
    limit: int = MAX_PAGE

    def of[T](self, items: list[T]) -> list[T]:
        """The slice of ``items`` this page covers."""
        return items[self.skip : self.skip + self.limit]


@dataclass(slots=True)
class Record[M]:
    """A stored object: its model for filtering, its JSON (signed where the grid signs)."""

    model: M
    wire: dict[str, Any]


@dataclass(slots=True)
class VenRecord:
    """A stored VEN, the key it asks a delegation for, and the delegation it holds."""

    model: Ven
    wire: dict[str, Any]
    key: PublicKey | None
    delegation: IssuedDelegation | None = None

    @property
    def owner(self) -> str:
        """The client the VEN belongs to (the grid always sets it)."""
        return str(self.model.client_id)


@dataclass(slots=True)
class ResourceRecord:
    """A stored resource and, for a grid connection, the request and decision about it."""

    model: Resource
    wire: dict[str, Any]
    decision: Decision | None = None  # the grid's decision in force (its grant event stands)
    pending: ConnectionRequest | None = None  # a request the grid decides at ``due``
    due: datetime | None = None

    @property
    def owner(self) -> str:
        """The client the resource's VEN belongs to (the grid always sets it)."""
        return str(self.model.client_id)


def utc_now() -> datetime:
    """The current time, aware, in UTC (the default clock)."""
    return datetime.now(UTC)


def _parse[M: OpenADRModel](model: type[M], body: object, provided: dict[str, Any]) -> M:
    """The model of a request body, with the grid-provided properties overriding the client's."""
    if not isinstance(body, dict):
        raise BadRequest("body: expected a JSON object")
    # The specification has the VTN ignore any metadata a client sends.
    merged = {**body, **provided}
    try:
        check_body(model, merged)
        return model.parse(merged)
    except ModelError as err:
        raise BadRequest(str(err)) from err


def _request_body(who: Principal, body: object, kind: str) -> dict[str, Any]:
    """A copy of a VEN or resource request; a VEN client sends VEN_<kind>_REQUEST, BL sends
    BL_<kind>_REQUEST (the specification's two forms)."""
    if not isinstance(body, dict):
        raise BadRequest("body: expected a JSON object")
    expected = f"{who.role}_{kind}_REQUEST"
    if body.get("objectType") != expected:
        raise BadRequest(f"objectType: a {who.role} client sends {expected}")
    return dict(body)


def _matches(targets: list[str] | None, wanted: Iterable[str]) -> bool:
    """The ``targets`` query filter; objects without targets are for everyone and always match."""
    query = frozenset(wanted)
    return not query or addresses(targets, query)


class Vtn:
    """The objects of the grid and the rules for reading, writing and announcing them."""

    def __init__(
        self,
        *,
        clients: Iterable[Client],
        communities: Iterable[str],
        issuer: Issuer,
        webhooks: Webhooks,
        clock: Callable[[], datetime] = utc_now,
        delegations: Mapping[str, DelegationPlan] = MappingProxyType({}),
        interconnection: InterconnectionPolicy | None = None,
    ) -> None:
        """Serve ``clients``; sign with ``issuer``; call subscribers through ``webhooks``.

        ``delegations`` (by client id) are what the grid delegates to VEN clients' bridges;
        ``interconnection`` is how it decides grid-connection requests (None: it refuses them).
        """
        self._clients: Mapping[str, Client] = {client.client_id: client for client in clients}
        self._communities = tuple(communities)
        self._issuer = issuer
        self._webhooks = webhooks
        self._clock = clock
        self._delegations = delegations
        self._interconnection = interconnection
        # The grid's own decisions (grants) are published as its business logic.
        self._operator = Principal.grid(issuer.signer.issuer)
        self._programs: dict[str, Record[Program]] = {}
        self._events: dict[str, Record[Event]] = {}
        self._reports: dict[str, Record[Report]] = {}
        self._subscriptions: dict[str, Record[Subscription]] = {}
        self._vens: dict[str, VenRecord] = {}
        self._resources: dict[str, ResourceRecord] = {}
        self._timer: asyncio.TimerHandle | None = None

    def close(self) -> None:
        """Stop the timer of pending decisions (the grid is shutting down)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- programs --------------------------------------------------------------------------

    def list_programs(
        self, who: Principal, *, targets: list[str], page: Page
    ) -> list[dict[str, Any]]:
        """Programs the caller may see, filtered by targets."""
        return page.of(
            [
                record.wire
                for record in self._programs.values()
                if who.may_see(record.model.targets) and _matches(record.model.targets, targets)
            ]
        )

    def get_program(self, who: Principal, program_id: str) -> dict[str, Any]:
        """One program, if the caller may see it."""
        return self._visible_program(who, program_id).wire

    def create_program(self, body: object) -> dict[str, Any]:
        """Store, sign and announce a new program."""
        model = _parse(Program, body, self._metadata(ObjectType.PROGRAM, None))
        self._check_program(model)
        now = self._clock()
        signed = self._issuer.sign_program(model.to_json_dict(), Operation.CREATE, now)
        self._programs[model.id] = Record(model, signed)
        self._announce(
            ObjectType.PROGRAM, Operation.CREATE, signed, model.targets, program_id=model.id
        )
        return signed

    def update_program(self, who: Principal, program_id: str, body: object) -> dict[str, Any]:
        """Replace a program's content; the new version is signed and announced."""
        existing = self._visible_program(who, program_id)
        model = _parse(Program, body, self._metadata(ObjectType.PROGRAM, existing.wire))
        self._check_program(model)
        signed = self._issuer.sign_program(model.to_json_dict(), Operation.UPDATE, self._clock())
        self._programs[program_id] = Record(model, signed)
        self._announce(
            ObjectType.PROGRAM, Operation.UPDATE, signed, model.targets, program_id=model.id
        )
        return signed

    def delete_program(self, who: Principal, program_id: str) -> dict[str, Any]:
        """Remove a program that has no events; returns it signed for DELETE."""
        existing = self._visible_program(who, program_id)
        events = sum(1 for record in self._events.values() if record.model.program_id == program_id)
        if events:
            raise Conflict(f"program '{program_id}' still has {events} events; delete them first")
        del self._programs[program_id]
        signed = self._issuer.sign_program(existing.wire, Operation.DELETE, self._clock())
        self._announce(
            ObjectType.PROGRAM,
            Operation.DELETE,
            signed,
            existing.model.targets,
            program_id=program_id,
        )
        return signed

    def _visible_program(self, who: Principal, program_id: str) -> Record[Program]:
        record = self._programs.get(program_id)
        if record is None or not who.may_see(record.model.targets):
            raise NotFound(f"no program '{program_id}'")
        return record

    def _check_program(self, model: Program) -> None:
        if not model.program_name:
            raise BadRequest("programName: must not be empty")
        for record in self._programs.values():
            if record.model.program_name == model.program_name and record.model.id != model.id:
                raise Conflict(
                    f"programName '{model.program_name}' is taken by program '{record.model.id}'"
                )
        check_targets(model.targets, self._communities)

    # --- events ----------------------------------------------------------------------------

    def list_events(
        self,
        who: Principal,
        *,
        program_id: str | None,
        targets: list[str],
        active: bool,
        page: Page,
    ) -> list[dict[str, Any]]:
        """Events the caller may see, filtered by program, targets and (``active``) not ended."""
        now = self._clock()
        return page.of(
            [
                record.wire
                for record in self._events.values()
                if who.may_see(record.model.targets)
                and (program_id is None or record.model.program_id == program_id)
                and _matches(record.model.targets, targets)
                and not (active and self._ended(record.model, now))
            ]
        )

    def get_event(self, who: Principal, event_id: str) -> dict[str, Any]:
        """One event, if the caller may see it."""
        return self._visible_event(who, event_id).wire

    def create_event(self, who: Principal, body: object) -> dict[str, Any]:
        """Store, sign and announce a new event."""
        model = _parse(Event, body, self._metadata(ObjectType.EVENT, None))
        self._check_event(who, model)
        now = self._clock()
        signed = self._issuer.sign_event(model.to_json_dict(), model, Operation.CREATE, now)
        self._events[model.id] = Record(model, signed)
        self._announce(
            ObjectType.EVENT, Operation.CREATE, signed, model.targets, program_id=model.program_id
        )
        return signed

    def update_event(self, who: Principal, event_id: str, body: object) -> dict[str, Any]:
        """Replace an event's content; the new version is signed and announced."""
        existing = self._visible_event(who, event_id)
        model = _parse(Event, body, self._metadata(ObjectType.EVENT, existing.wire))
        self._check_event(who, model)
        signed = self._issuer.sign_event(
            model.to_json_dict(), model, Operation.UPDATE, self._clock()
        )
        self._events[event_id] = Record(model, signed)
        self._announce(
            ObjectType.EVENT, Operation.UPDATE, signed, model.targets, program_id=model.program_id
        )
        return signed

    def delete_event(self, who: Principal, event_id: str) -> dict[str, Any]:
        """Remove an event; returns it signed for DELETE (the cancellation subscribers get)."""
        existing = self._visible_event(who, event_id)
        del self._events[event_id]
        signed = self._issuer.sign_event(
            existing.wire, existing.model, Operation.DELETE, self._clock()
        )
        self._announce(
            ObjectType.EVENT,
            Operation.DELETE,
            signed,
            existing.model.targets,
            program_id=existing.model.program_id,
        )
        return signed

    def _visible_event(self, who: Principal, event_id: str) -> Record[Event]:
        record = self._events.get(event_id)
        if record is None or not who.may_see(record.model.targets):
            raise NotFound(f"no event '{event_id}'")
        return record

    def _check_event(self, who: Principal, model: Event) -> None:
        if model.program_id not in self._programs:
            raise BadRequest(f"programID: '{model.program_id}' names no program")
        self._visible_program(who, model.program_id)
        check_targets(model.targets, self._communities)
        try:
            event_window(model, received_at=self._clock())
        except TimingError as err:
            raise BadRequest(f"intervals: {err}") from err

    @staticmethod
    def _ended(model: Event, now: datetime) -> bool:
        # "Now"-relative starts (0001-01-01) count from when the grid last stored the event.
        window = event_window(model, received_at=model.modification_date_time)
        return window is not None and window[1] is not None and window[1] <= now

    # --- reports ---------------------------------------------------------------------------

    def list_reports(
        self,
        who: Principal,
        *,
        program_id: str | None,
        event_id: str | None,
        client_name: str | None,
        page: Page,
    ) -> list[dict[str, Any]]:
        """Reports the caller may read (a VEN its own, BL all), filtered."""
        return page.of(
            [
                record.wire
                for record in self._reports.values()
                if who.owns(record.model.client_id)
                and (program_id is None or record.model.program_id == program_id)
                and (event_id is None or record.model.event_id == event_id)
                and (client_name is None or record.model.client_name == client_name)
            ]
        )

    def create_report(self, who: Principal, body: object) -> dict[str, Any]:
        """Store a VEN's report on an event it can see."""
        provided = {**self._metadata(ObjectType.REPORT, None), "clientID": who.client_id}
        model = _parse(Report, body, provided)
        if model.event_id not in self._events or not who.may_see(
            self._events[model.event_id].model.targets
        ):
            raise BadRequest(f"eventID: '{model.event_id}' names no event")
        wire = model.to_json_dict()
        self._reports[model.id] = Record(model, wire)
        self._announce(
            ObjectType.REPORT,
            Operation.CREATE,
            wire,
            None,
            program_id=model.program_id,
            owner=model.client_id,
        )
        return wire

    # --- subscriptions ---------------------------------------------------------------------

    def list_subscriptions(
        self,
        who: Principal,
        *,
        program_id: str | None,
        client_name: str | None,
        objects: list[ObjectType],
        page: Page,
    ) -> list[dict[str, Any]]:
        """Subscriptions the caller may read (a VEN its own, BL all), filtered."""
        return page.of(
            [
                record.wire
                for record in self._subscriptions.values()
                if who.owns(record.model.client_id)
                and (program_id is None or record.model.program_id == program_id)
                and (client_name is None or record.model.client_name == client_name)
                and (
                    not objects
                    or any(
                        kind in operation.objects
                        for operation in record.model.object_operations
                        for kind in objects
                    )
                )
            ]
        )

    async def create_subscription(self, who: Principal, body: object) -> dict[str, Any]:
        """Store a subscription once every callback URL has passed the echo check."""
        provided = {**self._metadata(ObjectType.SUBSCRIPTION, None), "clientID": who.client_id}
        model = _parse(Subscription, body, provided)
        if model.program_id is not None:
            if model.program_id not in self._programs:
                raise BadRequest(f"programID: '{model.program_id}' names no program")
            self._visible_program(who, model.program_id)
        check_targets(model.targets, self._communities)
        if not model.object_operations:
            raise BadRequest("objectOperations: must list at least one callback")
        for operation in model.object_operations:
            self._webhooks.check_url(operation.callback_url)
        for operation in model.object_operations:
            await self._webhooks.verify(operation.callback_url)
        wire = model.to_json_dict()
        self._subscriptions[model.id] = Record(model, wire)
        return wire

    async def delete_subscription(self, who: Principal, subscription_id: str) -> dict[str, Any]:
        """Remove a subscription (a VEN only its own) and stop its deliveries."""
        record = self._subscriptions.get(subscription_id)
        if record is None or not who.owns(record.model.client_id):
            raise NotFound(f"no subscription '{subscription_id}'")
        del self._subscriptions[subscription_id]
        await self._webhooks.forget(subscription_id)
        return record.wire

    # --- VENs ------------------------------------------------------------------------------

    def list_vens(
        self, who: Principal, *, ven_name: str | None, targets: list[str], page: Page
    ) -> list[dict[str, Any]]:
        """VENs the caller may read (a VEN client its own, BL all), filtered."""
        records = [
            record
            for record in self._vens.values()
            if who.owns(record.owner)
            and (ven_name is None or record.model.ven_name == ven_name)
            and _matches(record.model.targets, targets)
        ]
        return [self._ven_answer(record) for record in page.of(records)]

    def get_ven(self, who: Principal, ven_id: str) -> dict[str, Any]:
        """One VEN, if the caller may read it, with a current delegation where it has one."""
        return self._ven_answer(self._visible_ven(who, ven_id))

    def create_ven(self, who: Principal, body: object) -> dict[str, Any]:
        """Store a VEN (a VEN client's own; BL's for any VEN client) and announce it."""
        record = self._ven_record(who, body, None)
        self._vens[record.model.id] = record
        answer = self._ven_answer(record)
        self._announce_ven(Operation.CREATE, record, answer)
        return answer

    def update_ven(self, who: Principal, ven_id: str, body: object) -> dict[str, Any]:
        """Replace a VEN's content; a new key (or owner) brings a new delegation."""
        existing = self._visible_ven(who, ven_id)
        record = self._ven_record(who, body, existing)
        if record.key == existing.key and record.owner == existing.owner:
            record.delegation = existing.delegation
        self._vens[ven_id] = record
        answer = self._ven_answer(record)
        self._announce_ven(Operation.UPDATE, record, answer)
        return answer

    def delete_ven(self, who: Principal, ven_id: str) -> dict[str, Any]:
        """Remove a VEN and its resources (the grid's grants to them are withdrawn)."""
        existing = self._visible_ven(who, ven_id)
        for resource_id in [
            r.model.id for r in self._resources.values() if r.model.ven_id == ven_id
        ]:
            self.delete_resource(who, resource_id)
        del self._vens[ven_id]
        self._announce_ven(Operation.DELETE, existing, existing.wire)
        return existing.wire

    def _visible_ven(self, who: Principal, ven_id: str) -> VenRecord:
        record = self._vens.get(ven_id)
        if record is None or not who.owns(record.owner):
            raise NotFound(f"no VEN '{ven_id}'")
        return record

    def _ven_record(self, who: Principal, body: object, existing: VenRecord | None) -> VenRecord:
        """A VEN from a request body, checked; VEN clients get their own id and community."""
        body = _request_body(who, body, "VEN")
        accept_attributes(body)
        provided = self._metadata(ObjectType.VEN, existing.wire if existing else None)
        if who.role is Role.VEN:
            assert who.community is not None
            provided |= {"clientID": who.client_id, "targets": [community_target(who.community)]}
        model = _parse(Ven, body, provided)
        if model.client_id is None:
            raise BadRequest("clientID: required property is missing")
        owner = self._clients.get(model.client_id)
        if owner is None or owner.role is not Role.VEN or owner.community is None:
            raise BadRequest(f"clientID: '{model.client_id}' names no VEN client of this grid")
        if model.targets is None:
            model.targets = [community_target(owner.community)]
        check_targets(model.targets, self._communities)
        if not 1 <= len(model.ven_name) <= 128:
            raise BadRequest("venName: must be 1 to 128 characters")
        for other in self._vens.values():
            if other.model.ven_name == model.ven_name and other.model.id != model.id:
                raise Conflict(f"venName '{model.ven_name}' is taken by VEN '{other.model.id}'")
        key = delegate_key(model.attributes, self._issuer.signer.issuer)
        return VenRecord(model, model.to_json_dict(), key)

    def _ven_answer(self, record: VenRecord) -> dict[str, Any]:
        """The VEN as the grid answers: with the delegation its client is granted, if any.

        A delegation with less than half its lifetime left is replaced by a new one first.
        """
        plan = self._delegations.get(record.owner)
        owner = self._clients.get(record.owner)
        if plan is None or record.key is None or owner is None or owner.community is None:
            record.delegation = None
            return record.wire
        now = self._clock()
        if record.delegation is None or record.delegation.renew_by(now):
            record.delegation = delegate(
                self._issuer.signer, plan, community=owner.community, key=record.key, now=now
            )
        return with_delegation(record.wire, record.delegation)

    def _announce_ven(
        self, operation: Operation, record: VenRecord, answer: dict[str, Any]
    ) -> None:
        self._announce(
            ObjectType.VEN,
            operation,
            answer,
            record.model.targets,
            program_id=None,
            owner=record.owner,
        )

    # --- resources -------------------------------------------------------------------------

    def list_resources(
        self,
        who: Principal,
        *,
        ven_id: str | None,
        resource_name: str | None,
        targets: list[str],
        page: Page,
    ) -> list[dict[str, Any]]:
        """Resources the caller may read (a VEN client its own, BL all), filtered."""
        self._settle()
        return page.of(
            [
                record.wire
                for record in self._resources.values()
                if who.owns(record.owner)
                and (ven_id is None or record.model.ven_id == ven_id)
                and (resource_name is None or record.model.resource_name == resource_name)
                and _matches(record.model.targets, targets)
            ]
        )

    def get_resource(self, who: Principal, resource_id: str) -> dict[str, Any]:
        """One resource, if the caller may read it, with any decision that is due."""
        self._settle()
        return self._visible_resource(who, resource_id).wire

    def create_resource(self, who: Principal, body: object) -> dict[str, Any]:
        """Store a resource of one of the caller's VENs; a grid-connection request is decided
        at once, or after the scenario's ``decide_after``."""
        self._settle()
        record = self._resource_record(who, body, None)
        self._resources[record.model.id] = record
        self._connect(record, None)
        self._announce_resource(Operation.CREATE, record)
        return record.wire

    def update_resource(self, who: Principal, resource_id: str, body: object) -> dict[str, Any]:
        """Replace a resource's content; a new request is decided anew."""
        self._settle()
        existing = self._visible_resource(who, resource_id)
        record = self._resource_record(who, body, existing)
        self._resources[resource_id] = record
        self._connect(record, existing)
        self._announce_resource(Operation.UPDATE, record)
        return record.wire

    def delete_resource(self, who: Principal, resource_id: str) -> dict[str, Any]:
        """Remove a resource; a grid connection granted to it is withdrawn (its event deleted)."""
        existing = self._visible_resource(who, resource_id)
        del self._resources[resource_id]
        if existing.decision is not None:
            self._withdraw(existing.decision.event_id)
        self._schedule()
        self._announce_resource(Operation.DELETE, existing)
        return existing.wire

    def _visible_resource(self, who: Principal, resource_id: str) -> ResourceRecord:
        record = self._resources.get(resource_id)
        if record is None or not who.owns(record.owner):
            raise NotFound(f"no resource '{resource_id}'")
        return record

    def _resource_record(
        self, who: Principal, body: object, existing: ResourceRecord | None
    ) -> ResourceRecord:
        """A resource from a request body, checked, with what it asks of the grid."""
        body = _request_body(who, body, "RESOURCE")
        provided = self._metadata(ObjectType.RESOURCE, existing.wire if existing else None)
        if who.role is Role.VEN:
            provided["clientID"] = who.client_id
        model = _parse(Resource, body, provided)
        ven = self._vens.get(model.ven_id)
        if ven is None or not who.owns(ven.owner):
            raise BadRequest(f"venID: '{model.ven_id}' names no VEN of this client")
        if model.client_id != ven.owner:
            raise BadRequest(
                f"clientID: must be '{ven.owner}', the client VEN '{model.ven_id}' is of"
            )
        if not 1 <= len(model.resource_name) <= 128:
            raise BadRequest("resourceName: must be 1 to 128 characters")
        community = self._clients[ven.owner].community
        check_targets(model.targets, (community,) if community else ())
        status, request = read_connection(model.attributes, model.targets)
        record = ResourceRecord(model, model.to_json_dict())
        previous = existing.decision if existing else None
        if status in {ConnectionStatus.GRANTED, ConnectionStatus.REFUSED}:
            if previous is None or previous.status is not status or previous.request != request:
                raise BadRequest(
                    f"attributes {STATUS}: {status} is the grid's decision, not a request;"
                    " send REQUESTED to ask for a grid connection (again)"
                )
            record.decision = previous
        elif status is ConnectionStatus.REQUESTED:
            # The grant in force stands until the grid has decided on the new request.
            record.decision = previous
            record.pending = request
            if existing is not None and existing.pending == request:
                record.due = existing.due
            else:
                delay = self._interconnection.decide_after if self._interconnection else 0
                record.due = self._clock() + timedelta(seconds=delay)
        return record

    def _connect(self, record: ResourceRecord, existing: ResourceRecord | None) -> None:
        """Apply what a stored resource asks: decide a due request, or record the status."""
        attributes = record.wire.get("attributes") or []
        now = self._clock()
        if record.pending is not None and record.due is not None and record.due <= now:
            self._decide(record, now)
        elif record.pending is not None:
            record.wire["attributes"] = decided_attributes(attributes, None)
        elif record.decision is not None:
            record.wire["attributes"] = decided_attributes(attributes, record.decision)
        elif existing is not None and existing.decision is not None:
            # Recorded as the community granted it (or no longer a connection): the grid's
            # own grant is withdrawn.
            self._withdraw(existing.decision.event_id)
        self._schedule()

    def _settle(self) -> None:
        """Decide every request that is due (and announce it); the timer waits for the next."""
        now = self._clock()
        for record in self._resources.values():
            if record.pending is None or record.due is None or record.due > now:
                continue
            self._decide(record, now)
            record.wire["modificationDateTime"] = format_datetime(now)
            self._announce_resource(Operation.UPDATE, record)
        self._schedule()

    def _decide(self, record: ResourceRecord, now: datetime) -> None:
        """Decide the pending request; a grant is published (or its earlier event updated)."""
        request = record.pending
        assert request is not None
        decision = decide(request, self._interconnection)
        previous = record.decision.event_id if record.decision else None
        if decision.status is ConnectionStatus.GRANTED:
            assert self._interconnection is not None
            program = self._program_named(self._interconnection.program)
            if program is None:
                decision = Decision(
                    request,
                    ConnectionStatus.REFUSED,
                    reason=f"The grid has no program '{self._interconnection.program}' to"
                    " publish the grant in.",
                )
            else:
                body = grant_event(program, record.model.resource_name, request, now)
                event = (
                    self.update_event(self._operator, previous, body)
                    if previous in self._events
                    else self.create_event(self._operator, body)
                )
                decision = replace(decision, event_id=event["id"])
        if decision.status is not ConnectionStatus.GRANTED:
            self._withdraw(previous)
        record.decision = decision
        record.pending = record.due = None
        record.wire["attributes"] = decided_attributes(
            record.wire.get("attributes") or [], decision
        )

    def _withdraw(self, event_id: str | None) -> None:
        """Delete a grant event the grid published, unless BL has already."""
        if event_id is not None and event_id in self._events:
            self.delete_event(self._operator, event_id)

    def _schedule(self) -> None:
        """Set the one timer for the earliest pending decision (none pending: no timer)."""
        self.close()
        dues = [record.due for record in self._resources.values() if record.due is not None]
        if dues:
            delay = (min(dues) - self._clock()).total_seconds()
            self._timer = asyncio.get_running_loop().call_later(max(0.0, delay), self._settle)

    def _program_named(self, name: str) -> str | None:
        return next(
            (r.model.id for r in self._programs.values() if r.model.program_name == name), None
        )

    def _announce_resource(self, operation: Operation, record: ResourceRecord) -> None:
        self._announce(
            ObjectType.RESOURCE,
            operation,
            record.wire,
            record.model.targets,
            program_id=None,
            owner=record.owner,
        )

    # --- shared ----------------------------------------------------------------------------

    def _metadata(self, object_type: ObjectType, existing: dict[str, Any] | None) -> dict[str, Any]:
        now = format_datetime(self._clock())
        if existing is None:
            return {
                "id": f"{object_type.lower()}-{secrets.token_hex(8)}",
                "createdDateTime": now,
                "modificationDateTime": now,
                "objectType": str(object_type),
            }
        return {
            "id": existing["id"],
            "createdDateTime": existing["createdDateTime"],
            "modificationDateTime": now,
            "objectType": str(object_type),
        }

    def _announce(
        self,
        object_type: ObjectType,
        operation: Operation,
        obj: dict[str, Any],
        targets: list[str] | None,
        *,
        program_id: str | None,
        owner: str | None = None,
    ) -> None:
        """Queue a notification for every subscription that asked for it and may see it.

        ``owner`` is the client that created a VEN object (a report); only it and BL see those.
        """
        body = Notification(
            object_type=object_type, operation=operation, object=obj, targets=targets
        ).to_json_dict()
        for record in self._subscriptions.values():
            subscription = record.model
            client = self._clients.get(subscription.client_id)
            if client is None:
                continue
            viewer = Principal.of(client)
            visible = viewer.owns(owner) if owner is not None else viewer.may_see(targets)
            if (
                not visible
                or (subscription.program_id is not None and subscription.program_id != program_id)
                or (
                    subscription.targets and not addresses(targets, frozenset(subscription.targets))
                )
            ):
                continue
            for wanted in subscription.object_operations:
                if object_type in wanted.objects and operation in wanted.operations:
                    self._webhooks.send(
                        subscription.id, Callback(wanted.callback_url, wanted.bearer_token), body
                    )
