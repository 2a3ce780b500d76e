"""Coordinator of the Smart Community integration: verified grid signals, pushed and resynced.

The bridge pushes signals over a WebSocket; REST is the resync path. Nothing the bridge sends
becomes state before it is verified against the grid keys pinned at enrollment and addressed to
this home. What must survive a restart (replay guard, last applied sequence, applied objects)
lives in a Store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
import random
from typing import TYPE_CHECKING, Any, TypedDict, override

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import CALLBACK_TYPE, Event as HassEvent, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers.event import async_track_point_in_utc_time
from homeassistant.helpers.storage import Store
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util

from .bridge_client import (
    BridgeAuthenticationError,
    BridgeClient,
    BridgeConnectionError,
    BridgeError,
    PushStream,
)
from .const import (
    CONF_KEYS,
    CONF_PLACEMENT,
    DOMAIN,
    LOGGER,
    RECONNECT_MAXIMUM,
    RECONNECT_MINIMUM,
    RESYNC_INTERVAL,
    STORAGE_SAVE_DELAY,
    STORAGE_VERSION,
)
from .protocol import (
    Claims,
    Event,
    ModelError,
    Notification,
    ObjectType,
    Operation,
    Placement,
    Program,
    PublicKey,
    RejectReason,
    SignalRejected,
    TimingError,
    VerifiedObject,
    Verifier,
    event_window,
    format_datetime,
    keys_from_jwks,
    parse_datetime,
)
from .protocol.push import Signal, Welcome
from .signals import Outlook, ReceivedEvent, outlook

if TYPE_CHECKING:
    from .reporter import UplinkReporter
    from .responder import LoadResponder

# Stale versions that a delivery path explains by itself (a resync or a replay racing a newer
# version) are dropped quietly; only the ones nothing explains count as rejections.
_STALE = frozenset({RejectReason.REPLAYED, RejectReason.OLDER_VERSION})


@dataclass(frozen=True, kw_only=True, slots=True)
class Rejection:
    """A signal that was not accepted, and why."""

    reason: str
    message: str
    object_ref: str | None
    at: datetime


@dataclass(frozen=True, kw_only=True, slots=True)
class AppliedObject:
    """A verified program or event, as signed and as understood."""

    signed: dict[str, Any]
    claims: Claims
    received_at: datetime
    model: Program | Event


@dataclass(frozen=True, kw_only=True)
class SignalState:
    """What the entities show: verified programs and events, evaluated now."""

    programs: Mapping[str, Program]
    events: Mapping[str, Event]
    outlook: Outlook
    rejected: int
    last_rejection: Rejection | None


class _StoredObject(TypedDict):
    signed: dict[str, Any]
    received_at: str


class _StoredRejection(TypedDict):
    reason: str
    message: str
    object_ref: str | None
    at: str


class StoredState(TypedDict):
    """What the coordinator keeps across restarts."""

    last_seq: int
    guard: list[list[Any]]
    objects: list[_StoredObject]
    rejected: int
    last_rejection: _StoredRejection | None


@dataclass(kw_only=True)
class SmartCommunityData:
    """Runtime data of a config entry."""

    coordinator: SmartCommunityCoordinator
    community_device_id: str
    reporter: UplinkReporter
    responder: LoadResponder


type SmartCommunityConfigEntry = ConfigEntry[SmartCommunityData]


def stored_state(hass: HomeAssistant, entry_id: str) -> Store[StoredState]:
    """Where a config entry keeps what survives a restart."""
    return Store(hass, STORAGE_VERSION, f"{DOMAIN}.{entry_id}")


def reconnect_delay(failures: int) -> float:
    """Seconds to wait after ``failures`` failed connections: exponential, with jitter."""
    ceiling = min(
        RECONNECT_MAXIMUM.total_seconds(),
        RECONNECT_MINIMUM.total_seconds() * 2 ** min(failures, 16),
    )
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - spreads reconnects, not a secret


def _timestamp_now() -> float:
    return dt_util.utcnow().timestamp()


def _object_ref(obj: object) -> str | None:
    if isinstance(obj, Mapping) and "objectType" in obj and "id" in obj:
        return f"{obj['objectType']} {obj['id']}"
    return None


def _understood(verified: VerifiedObject, received_at: datetime) -> AppliedObject | None:
    """Parse a verified object into its model; None for object types the home does not keep."""
    model: Program | Event
    if verified.object_type == ObjectType.EVENT:
        model = Event.parse(verified.object)
        event_window(model, received_at=received_at)  # timing the home cannot resolve: malformed
    elif verified.object_type == ObjectType.PROGRAM:
        model = Program.parse(verified.object)
    else:
        return None
    return AppliedObject(
        signed=verified.object, claims=verified.claims, received_at=received_at, model=model
    )


class SmartCommunityCoordinator(DataUpdateCoordinator[SignalState]):
    """Keeps the verified signals of one home, pushed by its bridge."""

    config_entry: SmartCommunityConfigEntry

    def __init__(
        self, hass: HomeAssistant, entry: SmartCommunityConfigEntry, client: BridgeClient
    ) -> None:
        """Trust the keys the entry pinned; accept what is addressed to the entry's home."""
        self.client = client
        self.placement = Placement(**entry.data[CONF_PLACEMENT])
        self._keys: list[PublicKey] = keys_from_jwks(entry.data[CONF_KEYS])
        self._verifier = Verifier(self._keys, audience=self.placement.targets, clock=_timestamp_now)
        self._store = stored_state(hass, entry.entry_id)
        self._objects: dict[tuple[str, str], AppliedObject] = {}
        self._last_seq = 0
        self._rejected = 0
        self._last_rejection: Rejection | None = None
        self._dirty = False
        self._listening = False
        self._stopping = asyncio.Event()
        self._connected = False
        self._resync_on_connect = False
        self._replay_until = 0
        self._stream: PushStream | None = None
        self._unsub_timer: CALLBACK_TYPE | None = None
        self._unsub_stop: CALLBACK_TYPE | None = None
        super().__init__(
            hass,
            LOGGER,
            config_entry=entry,
            name=f"{DOMAIN} {entry.title}",
            update_interval=RESYNC_INTERVAL,
        )

    @property
    def connected(self) -> bool:
        """Whether the push channel is up."""
        return self._connected

    @override
    async def _async_setup(self) -> None:
        """Restore what the home had applied before it restarted."""
        if (stored := await self._store.async_load()) is not None:
            self._restore(stored)

    @override
    async def _async_update_data(self) -> SignalState:
        """Resynchronise over REST: every program and every active event."""
        if self._listening and not self._connected:
            # Without push the home would miss signals between resyncs: stay unavailable.
            raise UpdateFailed(translation_domain=DOMAIN, translation_key="push_disconnected")
        try:
            programs = await self.client.get_programs()
            events = await self.client.get_events(active=True)
        except BridgeAuthenticationError as err:
            raise ConfigEntryAuthFailed(
                translation_domain=DOMAIN, translation_key="authentication_failed"
            ) from err
        except BridgeConnectionError as err:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="communication_error",
                translation_placeholders={"error": str(err)},
            ) from err
        except BridgeError as err:
            raise UpdateFailed(
                translation_domain=DOMAIN,
                translation_key="invalid_response",
                translation_placeholders={"error": str(err)},
            ) from err
        received_at = dt_util.utcnow()
        for signed in (*programs, *events):
            self._accept(signed, None, received_at, stale_expected=True)
        self._async_schedule_save()
        return self._evaluate()

    @callback
    def async_start_push(self) -> None:
        """Listen on the push channel until the entry unloads or Home Assistant stops."""
        self._listening = True
        self._unsub_stop = self.hass.bus.async_listen_once(
            EVENT_HOMEASSISTANT_STOP, self._async_on_stop
        )
        self.config_entry.async_create_background_task(
            self.hass, self._async_listen(), f"{DOMAIN} push {self.config_entry.title}"
        )

    @override
    async def async_shutdown(self) -> None:
        """Stop listening and timers; write what is not yet stored."""
        await super().async_shutdown()
        if self._unsub_stop is not None:
            self._unsub_stop()
            self._unsub_stop = None
        if self._unsub_timer is not None:
            self._unsub_timer()
            self._unsub_timer = None
        await self._async_close_push()
        if self._dirty:
            await self._store.async_save(self._stored())

    async def _async_on_stop(self, _event: HassEvent) -> None:
        self._unsub_stop = None  # a fired one-time listener is gone already
        await self._async_close_push()

    async def _async_close_push(self) -> None:
        self._stopping.set()
        if self._stream is not None:
            await self._stream.close()

    async def _async_listen(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                async with self.client.push(since=self._last_seq) as stream:
                    self._stream = stream
                    failures = 0
                    await self._async_connected(stream.welcome)
                    async for signal in stream:
                        await self._async_handle(stream, signal)
            except BridgeError as err:
                if self._stopping.is_set():
                    return
                if isinstance(err, BridgeAuthenticationError):
                    self.config_entry.async_start_reauth_if_available(self.hass)
                self._async_disconnected(err)
            except Exception as err:  # noqa: BLE001 - logged with its traceback
                # A bug must not leave the home believing stale signals: go unavailable, retry.
                LOGGER.exception("Unexpected error on the push channel")
                self._async_disconnected(err)
            finally:
                self._stream = None
            await asyncio.sleep(reconnect_delay(failures))
            failures += 1

    async def _async_connected(self, welcome: Welcome) -> None:
        if welcome.last_seq < self._last_seq:
            LOGGER.warning(
                "The bridge's ledger ends at %s, before the %s this home applied; resynchronising",
                welcome.last_seq,
                self._last_seq,
            )
            self._last_seq = welcome.last_seq
        self._replay_until = welcome.last_seq
        self._connected = True
        LOGGER.debug("Push channel up; the bridge replays from %s", self._last_seq)
        if self._resync_on_connect:
            self._resync_on_connect = False
            await self.async_refresh()

    @callback
    def _async_disconnected(self, err: Exception) -> None:
        self._connected = False
        self._resync_on_connect = True
        self.async_set_update_error(err)

    async def _async_handle(self, stream: PushStream, signal: Signal) -> None:
        if self._apply_signal(signal, dt_util.utcnow()):
            self.async_set_updated_data(self._evaluate())
        self._last_seq = max(self._last_seq, signal.seq)
        self._async_schedule_save()
        # Acknowledged once applied or dropped; a lost acknowledgement only means a replay,
        # which the replay guard absorbs.
        await stream.ack(signal.seq)

    def _apply_signal(self, signal: Signal, received_at: datetime) -> bool:
        """Verify and apply one pushed notification; returns whether anything changed."""
        try:
            notification = Notification.parse(signal.notification)
        except ModelError as err:
            self._reject(RejectReason.MALFORMED, str(err), signal.notification.get("object"))
            return True
        if notification.object_type not in (ObjectType.EVENT, ObjectType.PROGRAM):
            return False
        return self._accept(
            notification.object,
            notification.operation,
            received_at,
            stale_expected=signal.seq <= self._replay_until,
        )

    def _accept(
        self,
        signed: object,
        operation: Operation | None,
        received_at: datetime,
        *,
        stale_expected: bool,
    ) -> bool:
        """Verify an object and apply it; returns whether anything changed."""
        try:
            verified = self._verifier.verify(signed, operation=operation)
        except SignalRejected as err:
            if err.reason is RejectReason.REPLAYED or (stale_expected and err.reason in _STALE):
                LOGGER.debug("Dropped %s: %s", _object_ref(signed), err.message)
                return False
            self._reject(err.reason, err.message, signed)
            return True
        key = (verified.object_type, verified.object_id)
        if operation is Operation.DELETE:
            self._objects.pop(key, None)
            return True
        try:
            applied = _understood(verified, received_at)
        except (ModelError, TimingError) as err:
            self._reject(RejectReason.MALFORMED, str(err), signed)
            return True
        if applied is None:
            return False
        self._objects[key] = applied
        return True

    def _reject(self, reason: RejectReason, message: str, obj: object) -> None:
        ref = _object_ref(obj)
        LOGGER.warning("Rejected %s from the bridge (%s): %s", ref or "a signal", reason, message)
        self._rejected += 1
        self._last_rejection = Rejection(
            reason=reason, message=message, object_ref=ref, at=dt_util.utcnow()
        )

    def _evaluate(self) -> SignalState:
        """Drop what has lapsed, evaluate the rest now, and wake up at the next change."""
        now = dt_util.utcnow()
        for key, applied in list(self._objects.items()):
            # JWT semantics: a signature is no longer valid from its "exp" on.
            if applied.claims.exp <= now.timestamp() or _ended(applied, now):
                del self._objects[key]
        programs = {
            a.model.id: a.model for a in self._objects.values() if isinstance(a.model, Program)
        }
        events = [
            ReceivedEvent(event=a.model, received_at=a.received_at)
            for a in self._objects.values()
            if isinstance(a.model, Event)
        ]
        result = outlook(events, programs, now)
        expiries = [dt_util.utc_from_timestamp(a.claims.exp) for a in self._objects.values()]
        wake = min(
            (moment for moment in (result.next_boundary, *expiries) if moment is not None),
            default=None,
        )
        self._async_schedule_wake(wake)
        return SignalState(
            programs=programs,
            events={event.event.id: event.event for event in events},
            outlook=result,
            rejected=self._rejected,
            last_rejection=self._last_rejection,
        )

    @callback
    def _async_schedule_wake(self, moment: datetime | None) -> None:
        if self._unsub_timer is not None:
            self._unsub_timer()
            self._unsub_timer = None
        if moment is not None:
            self._unsub_timer = async_track_point_in_utc_time(self.hass, self._async_wake, moment)

    @callback
    def _async_wake(self, _now: datetime) -> None:
        """A price or demand-response boundary: re-evaluate without asking the bridge."""
        self._unsub_timer = None
        # Not async_set_updated_data: that would mark a disconnected home available again.
        self.data = self._evaluate()
        self.async_update_listeners()

    @callback
    def _async_schedule_save(self) -> None:
        self._dirty = True
        self._store.async_delay_save(self._stored, STORAGE_SAVE_DELAY)

    def _stored(self) -> StoredState:
        """What to write now; the Store calls this when it writes."""
        self._dirty = False
        self._verifier.guard.prune(_timestamp_now())
        rejection = self._last_rejection
        return {
            "last_seq": self._last_seq,
            "guard": self._verifier.guard.export(),
            "objects": [
                {"signed": a.signed, "received_at": format_datetime(a.received_at)}
                for a in self._objects.values()
            ],
            "rejected": self._rejected,
            "last_rejection": None
            if rejection is None
            else {
                "reason": rejection.reason,
                "message": rejection.message,
                "object_ref": rejection.object_ref,
                "at": format_datetime(rejection.at),
            },
        }

    def _restore(self, stored: StoredState) -> None:
        self._last_seq = stored["last_seq"]
        self._verifier.guard.load(stored["guard"])
        self._rejected = stored["rejected"]
        if (rejection := stored["last_rejection"]) is not None:
            self._last_rejection = Rejection(
                reason=rejection["reason"],
                message=rejection["message"],
                object_ref=rejection["object_ref"],
                at=parse_datetime(rejection["at"]),
            )
        # Checked again, as anything read back: with a fresh replay guard, since the versions
        # are the ones applied, but against the pinned keys, the audience and the clock.
        checker = Verifier(self._keys, audience=self.placement.targets, clock=_timestamp_now)
        for item in stored["objects"]:
            try:
                verified = checker.verify(item["signed"])
                applied = _understood(verified, parse_datetime(item["received_at"]))
            except (SignalRejected, ModelError, TimingError) as err:
                LOGGER.debug("Not restoring %s: %s", _object_ref(item["signed"]), err)
                continue
            if applied is not None:
                self._objects[(verified.object_type, verified.object_id)] = applied


def _ended(applied: AppliedObject, now: datetime) -> bool:
    if not isinstance(applied.model, Event):
        return False
    window = event_window(applied.model, received_at=applied.received_at)
    return window is not None and window[1] is not None and window[1] <= now
