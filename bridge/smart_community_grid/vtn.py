"""The grid's VTN: programs, events, reports and subscriptions, with their access rules.

Every program and event is stored as the grid signed it; every change is announced to the
subscriptions allowed to see the object. Nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
import secrets
from typing import Any

from smart_community_protocol import (
    Event,
    ModelError,
    Notification,
    ObjectType,
    Operation,
    Program,
    Report,
    Subscription,
    TimingError,
    addresses,
    event_window,
    format_datetime,
)
from smart_community_protocol.models import OpenADRModel
from smart_community_protocol.validation import check_body

from .errors import BadRequest, Conflict, NotFound
from .issuer import Issuer
from .oauth import Client, Principal
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
    ) -> None:
        """Serve ``clients``; sign with ``issuer``; call subscribers through ``webhooks``."""
        self._clients: Mapping[str, Client] = {client.client_id: client for client in clients}
        self._communities = tuple(communities)
        self._issuer = issuer
        self._webhooks = webhooks
        self._clock = clock
        self._programs: dict[str, Record[Program]] = {}
        self._events: dict[str, Record[Event]] = {}
        self._reports: dict[str, Record[Report]] = {}
        self._subscriptions: dict[str, Record[Subscription]] = {}

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
