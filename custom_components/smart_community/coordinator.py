"""Coordinator of the Smart Community integration: verified grid signals, pushed and resynced.

The bridge pushes signals over a WebSocket; REST is the resync path. Nothing the bridge sends
becomes state before it is verified against the grid keys pinned at enrollment and addressed to
this home. What must survive a restart (replay guard, last applied sequence, applied objects,
past demand-response events, when the bridge was last heard from) lives in a Store. The
coordinator also watches the link (bridge reachable, clocks, offered grid keys) and raises or
clears the repair issues that follow from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
import random
from typing import TYPE_CHECKING, Any, Final, NotRequired, TypedDict, override

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import EVENT_HOMEASSISTANT_STOP
from homeassistant.core import CALLBACK_TYPE, Event as HassEvent, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryAuthFailed
from homeassistant.helpers import config_validation as cv
from homeassistant.helpers.event import async_track_point_in_utc_time
from homeassistant.helpers.storage import Store
from homeassistant.helpers.update_coordinator import DataUpdateCoordinator, UpdateFailed
from homeassistant.util import dt as dt_util
import probatio

from . import repairs
from .bridge_client import (
    BridgeAuthenticationError,
    BridgeClient,
    BridgeConnectionError,
    BridgeError,
    PushStream,
)
from .const import (
    BRIDGE_UNREACHABLE_AFTER,
    CLOCK_SKEW_LIMIT,
    CONF_CHEAPEST_WINDOW,
    CONF_KEYS,
    CONF_PLACEMENT,
    DEFAULT_CHEAPEST_WINDOW,
    DEMAND_RESPONSE_HISTORY,
    DEMAND_RESPONSE_HISTORY_SIZE,
    DOMAIN,
    LOGGER,
    RECONNECT_MAXIMUM,
    RECONNECT_MINIMUM,
    RESYNC_INTERVAL,
    STORAGE_SAVE_DELAY,
    STORAGE_VERSION,
)
from .prices import PriceSummary, PriceWindow, summarise
from .protocol import (
    Claims,
    Delegation,
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
from .protocol.push import Reconnect, Signal, Welcome
from .signals import (
    HORIZON,
    Alert,
    ChangeKind,
    DemandResponseChange,
    DemandResponsePeriod,
    Outlook,
    ReceivedEvent,
    demand_response_periods,
    describe_event,
    is_demand_response,
    outlook,
)

if TYPE_CHECKING:
    from .inverter import InverterCoordinator
    from .reporter import UplinkReporter
    from .responder import LoadResponder

# Stale versions that a delivery path explains by itself (a resync or a replay racing a newer
# version) are dropped quietly; only the ones nothing explains count as rejections.
_STALE = frozenset({RejectReason.REPLAYED, RejectReason.OLDER_VERSION})
# Rejections that mean the signature itself does not hold: the relay or its path is suspect.
_FORGED = frozenset(
    {RejectReason.BAD_SIGNATURE, RejectReason.UNSIGNED, RejectReason.ALGORITHM_NOT_ALLOWED}
)
# A community signature the grid's delegation does not cover: as suspect as a forged one.
_OVERSTEPPED = frozenset({RejectReason.INVALID_DELEGATION, RejectReason.BEYOND_DELEGATION})
# Rejections that a clock explains: the grid's, the bridge's or this home's is off.
_CLOCK = frozenset({RejectReason.ISSUED_IN_FUTURE, RejectReason.NOT_YET_VALID})

type ChangeListener = Callable[[DemandResponseChange], None]


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
    # The grid's delegation, when the community signed it rather than the grid.
    delegation: Delegation | None = None

    def received(self) -> ReceivedEvent | None:
        """The event as the signals' evaluation takes it; None for a program."""
        if not isinstance(self.model, Event):
            return None
        return ReceivedEvent(event=self.model, received_at=self.received_at, issuer=self.claims.iss)


@dataclass(frozen=True, kw_only=True)
class SignalState:
    """What the entities show: verified programs and events evaluated now, and the link."""

    programs: Mapping[str, Program]
    events: Mapping[str, Event]
    outlook: Outlook
    prices: PriceSummary
    # Demand-response periods: past (kept for a while), current and upcoming, by start.
    calendar: tuple[DemandResponsePeriod, ...]
    rejected: int
    last_rejection: Rejection | None
    connected: bool
    last_contact: datetime | None


class _StoredObject(TypedDict):
    signed: dict[str, Any]
    received_at: str


class _StoredRejection(TypedDict):
    reason: str
    message: str
    object_ref: str | None
    at: str


class _StoredPeriod(TypedDict):
    event_id: str
    event_name: str | None
    program_id: str
    start: str
    end: str | None
    level: int | None


class StoredState(TypedDict):
    """What the coordinator keeps across restarts."""

    last_seq: int
    guard: list[list[Any]]
    objects: list[_StoredObject]
    rejected: int
    last_rejection: _StoredRejection | None
    last_contact: NotRequired[str | None]
    demand_response_history: NotRequired[list[_StoredPeriod]]


@dataclass(kw_only=True)
class SmartCommunityData:
    """Runtime data of a config entry."""

    coordinator: SmartCommunityCoordinator
    community_device_id: str
    reporter: UplinkReporter
    responder: LoadResponder
    # The options the home was set up with: a change reloads it.
    options: Mapping[str, Any]
    # The home's SunSpec inverters, by config subentry id.
    inverters: dict[str, InverterCoordinator] = field(default_factory=dict)


type SmartCommunityConfigEntry = ConfigEntry[SmartCommunityData]


def stored_state(hass: HomeAssistant, entry_id: str) -> Store[StoredState]:
    """Where a config entry keeps what survives a restart."""
    return Store(hass, STORAGE_VERSION, f"{DOMAIN}.{entry_id}")


# How the home comes back while its bridge gives no guidance of its own.
DEFAULT_RECONNECT: Final = Reconnect(
    initial=RECONNECT_MINIMUM.total_seconds(), maximum=RECONNECT_MAXIMUM.total_seconds()
)


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
        signed=verified.object,
        claims=verified.claims,
        received_at=received_at,
        model=model,
        delegation=verified.delegation,
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
        self._history: dict[tuple[str, datetime], DemandResponsePeriod] = {}
        self._changes: list[DemandResponseChange] = []
        self._change_listeners: list[ChangeListener] = []
        self._cheapest: PriceWindow | None = None
        self._last_contact: datetime | None = None
        self._offered_keys: list[PublicKey] | None = None
        self._clock_rejection: str | None = None
        self._dirty = False
        self._listening = False
        self._stopping = asyncio.Event()
        self._connected = False
        self._resync_on_connect = False
        self._replay_until = 0
        self._reconnect = DEFAULT_RECONNECT
        self._stream: PushStream | None = None
        self._unsub_timer: CALLBACK_TYPE | None = None
        self._unsub_unreachable: CALLBACK_TYPE | None = None
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

    @property
    def pinned_keys(self) -> tuple[PublicKey, ...]:
        """The grid keys the home trusts."""
        return tuple(self._keys)

    @property
    def offered_keys(self) -> tuple[PublicKey, ...] | None:
        """The grid keys the bridge offered when last asked."""
        return None if self._offered_keys is None else tuple(self._offered_keys)

    @property
    def last_seq(self) -> int:
        """The bridge's ledger sequence the home has applied up to."""
        return self._last_seq

    @property
    def applied(self) -> tuple[AppliedObject, ...]:
        """The verified objects the home holds."""
        return tuple(self._objects.values())

    @callback
    def async_add_change_listener(self, listener: ChangeListener) -> CALLBACK_TYPE:
        """Call ``listener`` for each demand-response event that is new, modified or cancelled."""
        self._change_listeners.append(listener)

        @callback
        def remove() -> None:
            self._change_listeners.remove(listener)

        return remove

    @override
    async def _async_setup(self) -> None:
        """Restore what the home had applied before it restarted."""
        if (stored := await self._store.async_load()) is not None:
            self._restore(stored)

    @override
    async def _async_update_data(self) -> SignalState:
        """Resynchronise over REST: every program and every active event; the grid keys."""
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
            self._async_update_issues(dt_util.utcnow())
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
        self._last_contact = received_at
        for signed in (*programs, *events):
            self._accept(signed, None, received_at, stale_expected=True)
        try:
            self._offered_keys = await self.client.get_keys()
        except BridgeError as err:
            # The signals are in; a key check that fails is tried again at the next resync.
            LOGGER.debug("Could not read the grid keys the bridge offers: %s", err)
        self._async_schedule_save()
        state = self._evaluate()
        self._async_emit_changes()
        return state

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
        self._async_schedule_wake(None)
        self._async_watch_unreachable(None)
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
            # Jitter spreads the homes that lost a restarting bridge at the same moment.
            await asyncio.sleep(self._reconnect.delay(failures, random.uniform))
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
        # The bridge knows how many homes it serves: its guidance paces their return.
        self._reconnect = welcome.reconnect or DEFAULT_RECONNECT
        self._connected = True
        self._last_contact = dt_util.utcnow()
        self._async_schedule_save()
        LOGGER.debug("Push channel up; the bridge replays from %s", self._last_seq)
        self._async_link_changed()
        self.async_update_listeners()
        if self._resync_on_connect:
            self._resync_on_connect = False
            await self.async_refresh()

    @callback
    def _async_disconnected(self, err: Exception) -> None:
        self._connected = False
        self._resync_on_connect = True
        self._async_link_changed()
        notified = self.last_update_success
        self.async_set_update_error(err)
        if not notified:  # the error was known already; the link state changed all the same
            self.async_update_listeners()

    @callback
    def _async_link_changed(self) -> None:
        """Show the link as it is now, without evaluating the signals again."""
        self.data = replace(self.data, connected=self._connected, last_contact=self._last_contact)
        self._async_update_issues(dt_util.utcnow())

    async def _async_handle(self, stream: PushStream, signal: Signal) -> None:
        received_at = dt_util.utcnow()
        self._last_contact = received_at
        if self._apply_signal(signal, received_at):
            self.async_set_updated_data(self._evaluate())
        else:
            # Heard from the bridge (the link is fresh), but nothing changed that the home shows.
            self._async_reevaluate()
        self._async_emit_changes()
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
        self._clock_rejection = None  # a fresh signature verified: the clocks agree again
        key = (verified.object_type, verified.object_id)
        previous = self._objects.get(key)
        if operation is Operation.DELETE:
            self._objects.pop(key, None)
            self._note_change(ChangeKind.CANCELLED, previous, None)
            return True
        try:
            applied = _understood(verified, received_at)
        except (ModelError, TimingError) as err:
            self._reject(RejectReason.MALFORMED, str(err), signed)
            return True
        if applied is None:
            return False
        self._objects[key] = applied
        kind = ChangeKind.NEW if previous is None else ChangeKind.MODIFIED
        self._note_change(kind, previous, applied)
        return True

    def _note_change(
        self, kind: ChangeKind, previous: AppliedObject | None, applied: AppliedObject | None
    ) -> None:
        """Announce a change to a demand-response event (as it was, and as it is now)."""
        before, after = _demand_response(previous), _demand_response(applied)
        if before is None and after is None:
            return
        if kind is ChangeKind.MODIFIED and after is None:
            kind = ChangeKind.CANCELLED  # a new version that asks for nothing any more
        elif kind is ChangeKind.MODIFIED and before is None:
            kind = ChangeKind.NEW  # an event that now asks for demand response
        shown = after or before
        assert shown is not None
        self._changes.append(DemandResponseChange(kind=kind, event=describe_event(shown)))

    @callback
    def _async_emit_changes(self) -> None:
        changes, self._changes = self._changes, []
        for change in changes:
            for listener in list(self._change_listeners):
                listener(change)

    def _reject(self, reason: RejectReason, message: str, obj: object) -> None:
        ref = _object_ref(obj)
        LOGGER.warning("Rejected %s from the bridge (%s): %s", ref or "a signal", reason, message)
        self._rejected += 1
        self._last_rejection = Rejection(
            reason=reason, message=message, object_ref=ref, at=dt_util.utcnow()
        )
        if reason in _FORGED:
            repairs.async_raise_invalid_signature(
                self.hass, self.config_entry, ref or "-", self._last_rejection.at
            )
        elif reason in _OVERSTEPPED:
            repairs.async_raise_community_overstepped(
                self.hass, self.config_entry, ref or "-", self._last_rejection.at, message
            )
        elif reason in _CLOCK:
            self._clock_rejection = ref or "-"
        elif reason is RejectReason.UNKNOWN_KEY and self._listening:
            # Perhaps the grid rotated its key: ask the bridge which keys it offers now.
            self.config_entry.async_create_background_task(
                self.hass, self.async_request_refresh(), f"{DOMAIN} key check"
            )

    def _evaluate(self) -> SignalState:
        """Drop what has lapsed, evaluate the rest now, and wake up at the next change."""
        now = dt_util.utcnow()
        today = dt_util.as_local(now).date()
        day_start = dt_util.start_of_local_day(today)
        day_end = dt_util.start_of_local_day(today + timedelta(days=1))
        for key, applied in list(self._objects.items()):
            # JWT semantics: a signature is no longer valid from its "exp" on. Events that
            # ended today stay for the day's price statistics.
            if applied.claims.exp <= now.timestamp() or _ended(applied, day_start):
                del self._objects[key]
                self._record_lapsed(applied, now)
        programs = {
            a.model.id: a.model for a in self._objects.values() if isinstance(a.model, Program)
        }
        events = [
            received for a in self._objects.values() if (received := a.received()) is not None
        ]
        result = outlook(events, programs, now, since=day_start)
        prices = summarise(
            result.price_forecast,
            now,
            day_start=day_start,
            day_end=day_end,
            window=self._window_length(),
            previous_window=self._cheapest,
        )
        self._cheapest = prices.cheapest_window
        calendar = self._update_history(events, now)
        expiries = [dt_util.utc_from_timestamp(a.claims.exp) for a in self._objects.values()]
        window_end = prices.cheapest_window.end if prices.cheapest_window else None
        wake = min(
            (
                moment
                for moment in (result.next_boundary, window_end, day_end, *expiries)
                if moment is not None and moment > now
            ),
            default=None,
        )
        self._async_schedule_wake(wake)
        self._async_update_issues(now)
        self._async_show_alerts((*result.alerts, *result.upcoming_alerts))
        return SignalState(
            programs=programs,
            events={event.event.id: event.event for event in events},
            outlook=result,
            prices=prices,
            calendar=calendar,
            rejected=self._rejected,
            last_rejection=self._last_rejection,
            connected=self._connected,
            last_contact=self._last_contact,
        )

    def _window_length(self) -> timedelta:
        """The length of the next cheapest window the options ask for."""
        value = self.config_entry.options.get(CONF_CHEAPEST_WINDOW, DEFAULT_CHEAPEST_WINDOW)
        try:
            length: timedelta = cv.positive_time_period_dict(value)
        except probatio.Invalid:
            length = cv.positive_time_period_dict(DEFAULT_CHEAPEST_WINDOW)
        return length

    def _record_lapsed(self, applied: AppliedObject, now: datetime) -> None:
        """Keep what a demand-response event the home lets go of asked for while it held."""
        if (received := _demand_response(applied)) is None:
            return
        until = min(now, dt_util.utc_from_timestamp(applied.claims.exp))
        for period in demand_response_periods([received], now - DEMAND_RESPONSE_HISTORY, until):
            end = until if period.end is None else min(period.end, until)
            self._history[(period.event_id, period.start)] = replace(period, end=end)
            self._async_schedule_save()

    def _update_history(
        self, events: Iterable[ReceivedEvent], now: datetime
    ) -> tuple[DemandResponsePeriod, ...]:
        """Record the demand-response periods that have begun; return past, current, upcoming."""
        periods = demand_response_periods(events, now - DEMAND_RESPONSE_HISTORY, now + HORIZON)
        present = {period.event_id for period in periods}
        before = dict(self._history)
        for key, period in list(self._history.items()):
            if period.end is not None and period.end <= now:
                continue  # over: kept as it happened
            if period.event_id in present or period.start >= now:
                del self._history[key]  # still announced: recorded afresh below
            else:
                # Cancelled or lapsed while under way: it lasted until now.
                self._history[key] = replace(period, end=now)
        for period in periods:
            if period.start <= now:
                self._history[(period.event_id, period.start)] = period
        horizon = now - DEMAND_RESPONSE_HISTORY
        kept = sorted(
            (p for p in self._history.values() if p.end is None or p.end >= horizon),
            key=lambda p: p.start,
        )[-DEMAND_RESPONSE_HISTORY_SIZE:]
        self._history = {(p.event_id, p.start): p for p in kept}
        if self._history != before:
            self._async_schedule_save()
        upcoming = [period for period in periods if period.start > now]
        return tuple(sorted((*kept, *upcoming), key=lambda p: (p.start, p.event_id)))

    @callback
    def _async_update_issues(self, now: datetime) -> None:
        """Raise the repair issues that hold now, and clear the ones that no longer do."""
        hass, entry = self.hass, self.config_entry
        cleared: set[repairs.Issue] = set()
        if self._connected or self._last_contact is None:
            cleared.add(repairs.Issue.BRIDGE_UNREACHABLE)
            self._async_watch_unreachable(None)
        elif now - self._last_contact >= BRIDGE_UNREACHABLE_AFTER:
            repairs.async_raise_bridge_unreachable(hass, entry, self._last_contact)
        elif self._listening:
            self._async_watch_unreachable(self._last_contact + BRIDGE_UNREACHABLE_AFTER)
        offset = self.client.clock_offset
        if offset is not None and abs(offset) > CLOCK_SKEW_LIMIT:
            repairs.async_raise_bridge_clock_skew(hass, entry, offset)
        elif self._clock_rejection is not None:
            repairs.async_raise_signal_clock_skew(hass, entry, self._clock_rejection)
        else:
            cleared.add(repairs.Issue.CLOCK_SKEW)
        pinned = {key.kid for key in self._keys}
        offered = None if self._offered_keys is None else {k.kid for k in self._offered_keys}
        if offered is not None and offered != pinned:
            repairs.async_raise_grid_key_changed(hass, entry, pinned, offered)
        else:
            cleared.add(repairs.Issue.GRID_KEY_CHANGED)
        repairs.async_clear(hass, entry.entry_id, cleared)

    @callback
    def _async_show_alerts(self, alerts: Iterable[Alert]) -> None:
        """A notice for each alert in force or announced, naming the community that signed it."""
        signed_by: dict[Alert, str | None] = {}
        for alert in alerts:
            applied = self._objects.get((ObjectType.EVENT, alert.event_id))
            delegation = applied.delegation if applied is not None else None
            signed_by[alert] = delegation.community if delegation is not None else None
        repairs.async_show_alerts(self.hass, self.config_entry, signed_by)

    @callback
    def _async_watch_unreachable(self, moment: datetime | None) -> None:
        if self._unsub_unreachable is not None:
            self._unsub_unreachable()
            self._unsub_unreachable = None
        if moment is not None:
            self._unsub_unreachable = async_track_point_in_utc_time(
                self.hass, self._async_unreachable_due, moment
            )

    @callback
    def _async_unreachable_due(self, now: datetime) -> None:
        self._unsub_unreachable = None
        self._async_update_issues(now)

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
        self._async_reevaluate()

    @callback
    def _async_reevaluate(self) -> None:
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
            "last_contact": None
            if self._last_contact is None
            else format_datetime(self._last_contact),
            "demand_response_history": [
                {
                    "event_id": period.event_id,
                    "event_name": period.event_name,
                    "program_id": period.program_id,
                    "start": format_datetime(period.start),
                    "end": None if period.end is None else format_datetime(period.end),
                    "level": period.level,
                }
                for period in self._history.values()
            ],
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
        if (last_contact := stored.get("last_contact")) is not None:
            self._last_contact = parse_datetime(last_contact)
        for row in stored.get("demand_response_history", []):
            period = DemandResponsePeriod(
                event_id=row["event_id"],
                event_name=row["event_name"],
                program_id=row["program_id"],
                start=parse_datetime(row["start"]),
                end=None if row["end"] is None else parse_datetime(row["end"]),
                level=row["level"],
            )
            self._history[(period.event_id, period.start)] = period
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


def _demand_response(applied: AppliedObject | None) -> ReceivedEvent | None:
    """The applied object as a demand-response event; None if it is none."""
    received = applied.received() if applied is not None else None
    if received is None or not is_demand_response(received.event, received_at=received.received_at):
        return None
    return received


def _ended(applied: AppliedObject, moment: datetime) -> bool:
    """Whether an event was over by ``moment``."""
    if not isinstance(applied.model, Event):
        return False
    window = event_window(applied.model, received_at=applied.received_at)
    return window is not None and window[1] is not None and window[1] <= moment
