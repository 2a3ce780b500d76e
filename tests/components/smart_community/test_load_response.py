"""The load-response engine, pure: plans, priorities, caps, randomizeStart, restore, idempotency."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
import random
from typing import Any

import pytest

from custom_components.smart_community.load_response import (
    MAX_RESTORE_ATTEMPTS,
    MAX_SHEDS_PER_EVENT,
    Action,
    ActionKind,
    Inverter,
    Load,
    LoadKind,
    LoadResponse,
    Notice,
    NoticeKind,
    Observation,
    ResponseConfig,
    Session,
    Setting,
    charging_setting,
    default_offset,
    export_setting,
    kind_of,
    shed_power,
    shed_setting,
)
from custom_components.smart_community.protocol import Event, OperatingState, format_datetime

T0 = datetime(2026, 6, 1, 18, 0, tzinfo=UTC)
ON = Setting(on=True)
OFF = Setting(on=False)


def event(
    event_id: str = "peak",
    *,
    start: datetime = T0,
    duration: str = "PT1H",
    payloads: list[list[tuple[str, Any]]] | None = None,
    randomize: str | None = None,
    priority: int | None = None,
    units: dict[str, str] | None = None,
    modified: datetime = T0 - timedelta(hours=1),
    program_id: str = "peak-saver",
) -> Event:
    """A demand-response event: one interval per payload list, back to back."""
    period: dict[str, Any] = {"start": format_datetime(start), "duration": duration}
    if randomize:
        period["randomizeStart"] = randomize
    body: dict[str, Any] = {
        "id": event_id,
        "objectType": "EVENT",
        "createdDateTime": format_datetime(modified),
        "modificationDateTime": format_datetime(modified),
        "programID": program_id,
        "eventName": f"Event {event_id}",
        "intervalPeriod": period,
        "intervals": [
            {"id": index, "payloads": [{"type": t, "values": [v]} for t, v in interval]}
            for index, interval in enumerate(payloads or [[("SIMPLE", 2)]])
        ],
    }
    if priority is not None:
        body["priority"] = priority
    if units:
        body["payloadDescriptors"] = [
            {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": t, "units": u}
            for t, u in units.items()
        ]
    return Event.parse(body)


def switch(entity_id: str, power: float) -> Load:
    """An enrolled switch."""
    return Load(entity_id=entity_id, kind=LoadKind.SWITCH, nominal_power=power)


def config(
    *loads: Load, cap: float = 100.0, inverters: tuple[Inverter, ...] = ()
) -> ResponseConfig:
    """The resident's enrollment."""
    return ResponseConfig(loads=loads, inverters=inverters, max_shed_power=cap)


def running(*entity_ids: str) -> dict[str, Observation]:
    """Switches that are on."""
    return {entity_id: Observation(setting=ON) for entity_id in entity_ids}


class Home:
    """Devices that do what they are told, and the engine that tells them."""

    def __init__(
        self,
        response: ResponseConfig,
        observations: dict[str, Observation],
        *events: Event,
        seed: int = 1,
    ) -> None:
        self.engine = LoadResponse(response, rng=lambda: random.Random(seed))
        self.observations = observations
        self.events = {e.id: e for e in events}
        self.notices: list[Notice] = []
        self.writes: list[Action] = []

    def sync(self, now: datetime) -> list[Notice]:
        found = self.engine.sync(self.events, now)
        self.notices.extend(found)
        return found

    def step(
        self, now: datetime, *, grid_import: float | None = None, fresh: bool = True, fail=False
    ) -> Action | None:
        """One step: perform the write it asks for, if any."""
        self.sync(now)
        action, notices = self.engine.step(
            now, self.observations, grid_import=grid_import, fresh=fresh
        )
        self.notices.extend(notices)
        if action is not None:
            if not fail:
                self.observations[action.entity_id] = replace(
                    self.observations[action.entity_id], setting=action.after
                )
            self.writes.append(action)
            self.notices.extend(self.engine.done(action, succeeded=not fail, now=now))
        return action

    def settle(self, now: datetime, **kwargs: Any) -> list[Action]:
        """Every write due now, as the controller would do them (one after the other)."""
        done = []
        for _ in range(50):
            action = self.step(now, **kwargs)
            if action is None:
                return done
            done.append(action)
        raise AssertionError("the engine kept writing")

    def kinds(self, kind: NoticeKind) -> list[Notice]:
        return [n for n in self.notices if n.kind is kind]


def shed(actions: list[Action]) -> list[str]:
    return [a.entity_id for a in actions if a.kind is ActionKind.SHED]


@pytest.mark.parametrize(
    ("level", "expected"),
    [(1, ["switch.a"]), (2, ["switch.a", "switch.b"]), (3, ["switch.a", "switch.b", "switch.c"])],
)
def test_simple_level_sheds_in_priority_order_until_met(level: int, expected: list[str]) -> None:
    """Level n sheds n thirds of the running load, first devices first."""
    loads = (switch("switch.a", 2), switch("switch.b", 1), switch("switch.c", 1))
    home = Home(
        config(*loads),
        running("switch.a", "switch.b", "switch.c"),
        event(payloads=[[("SIMPLE", level)]]),
    )
    assert shed(home.settle(T0)) == expected
    assert home.engine.shed_power() == sum(
        d.nominal_power for d in loads if d.entity_id in expected
    )


def test_level_zero_and_devices_off_shed_nothing() -> None:
    """SIMPLE 0 is normal operation; a device that is off has nothing to shed."""
    home = Home(
        config(switch("switch.a", 2), switch("switch.b", 1)),
        {"switch.a": Observation(setting=OFF), **running("switch.b")},
        event(payloads=[[("SIMPLE", 0)]], duration="PT30M"),
        event("later", start=T0 + timedelta(minutes=30), payloads=[[("SIMPLE", 3)]]),
    )
    assert home.settle(T0) == []
    assert shed(home.settle(T0 + timedelta(minutes=30))) == ["switch.b"]


def test_the_cap_is_never_exceeded() -> None:
    """A device that would take the event past the cap is skipped for a smaller one."""
    loads = (switch("switch.a", 2), switch("switch.b", 1), switch("switch.c", 0.5))
    home = Home(
        config(*loads, cap=2.5),
        running("switch.a", "switch.b", "switch.c"),
        event(payloads=[[("SIMPLE", 3)]]),
    )
    assert shed(home.settle(T0)) == ["switch.a", "switch.c"]
    assert home.engine.shed_power() == 2.5


def test_import_limit_sheds_down_to_the_limit_the_meter_measures() -> None:
    """With a grid meter, the import above the limit is what is shed."""
    loads = (switch("switch.a", 1.5), switch("switch.b", 1), switch("switch.c", 1))
    observations = running("switch.a", "switch.b", "switch.c")
    home = Home(config(*loads), observations, event(payloads=[[("IMPORT_CAPACITY_LIMIT", 5)]]))
    assert shed(home.settle(T0, grid_import=7.0)) == ["switch.a", "switch.b"]


def test_import_limit_without_a_meter_counts_the_enrolled_load() -> None:
    """Without a grid meter the enrolled running load stands for the import."""
    loads = (switch("switch.a", 1), switch("switch.b", 1), switch("switch.c", 1))
    home = Home(
        config(*loads),
        running("switch.a", "switch.b", "switch.c"),
        event(payloads=[[("IMPORT_CAPACITY_LIMIT", 2000)]], units={"IMPORT_CAPACITY_LIMIT": "W"}),
    )
    assert shed(home.settle(T0)) == ["switch.a"]


def test_import_limit_met_already_sheds_nothing() -> None:
    """A home below the limit is left as it is."""
    home = Home(
        config(switch("switch.a", 1)),
        running("switch.a"),
        event(payloads=[[("IMPORT_CAPACITY_LIMIT", 5)]]),
    )
    assert home.settle(T0, grid_import=3.0) == []


def test_sheds_at_the_start_restores_at_the_end() -> None:
    """Nothing before the start; shed at the start; prior settings back at the end."""
    home = Home(
        config(switch("switch.a", 1), switch("switch.b", 1)),
        running("switch.a", "switch.b"),
        event(payloads=[[("SIMPLE", 3)]]),
    )
    assert home.settle(T0 - timedelta(seconds=1)) == []
    assert [n.kind for n in home.notices] == [NoticeKind.STARTED]
    assert home.engine.next_change(T0 - timedelta(seconds=1)) == T0
    assert shed(home.settle(T0)) == ["switch.a", "switch.b"]
    assert home.engine.next_change(T0) == T0 + timedelta(hours=1)
    assert home.settle(T0 + timedelta(minutes=30)) == []

    restored = home.settle(T0 + timedelta(hours=1))
    assert [(a.kind, a.entity_id, a.after) for a in restored] == [
        (ActionKind.RESTORE, "switch.b", ON),
        (ActionKind.RESTORE, "switch.a", ON),
    ]
    assert home.kinds(NoticeKind.ENDED)
    assert home.engine.held == {}
    assert home.engine.sessions == {}
    assert home.engine.current(T0 + timedelta(hours=1)) is None


def test_one_write_per_step_and_idempotent() -> None:
    """Each step asks for one write; once done, asking again (or after a restart) does nothing."""
    home = Home(
        config(switch("switch.a", 1), switch("switch.b", 1)),
        running("switch.a", "switch.b"),
        event(payloads=[[("SIMPLE", 3)]]),
    )
    first = home.step(T0)
    assert first is not None
    assert first.entity_id == "switch.a"
    assert first.before == ON
    assert first.after == OFF
    second = home.step(T0 + timedelta(seconds=10))
    assert second is not None
    assert second.entity_id == "switch.b"
    assert home.step(T0 + timedelta(seconds=20)) is None
    assert home.sync(T0 + timedelta(seconds=30)) == []

    restarted = LoadResponse(home.engine.config)
    restarted.load(home.engine.to_json())
    assert restarted.sync(home.events, T0 + timedelta(minutes=1)) == []
    assert restarted.step(
        T0 + timedelta(minutes=1), home.observations, grid_import=None, fresh=True
    ) == (None, [])


def test_randomize_start_shifts_the_home_within_the_bound_and_keeps_its_shift() -> None:
    """Each home draws its shift once, within +/- randomizeStart, and keeps it across restarts."""
    starts = set()
    for seed in range(20):
        home = Home(
            config(switch("switch.a", 1)),
            running("switch.a"),
            event(randomize="PT10M"),
            seed=seed,
        )
        home.sync(T0 - timedelta(hours=1))
        session = home.engine.sessions["peak"]
        assert abs(session.start - T0) <= timedelta(minutes=10)
        assert session.end == session.start + timedelta(hours=1)
        starts.add(session.start)
        assert home.settle(session.start - timedelta(seconds=1)) == []
        assert shed(home.settle(session.start)) == ["switch.a"]

        restarted = LoadResponse(home.engine.config, rng=lambda: random.Random(99))
        restarted.load(home.engine.to_json())
        restarted.sync(home.events, session.start)
        assert restarted.sessions["peak"].start == session.start
    assert len(starts) > 10  # homes spread out


def test_override_is_left_alone_and_reported_as_opt_out() -> None:
    """A held device the resident changes is not restored, and the home opts out of the event."""
    home = Home(
        config(switch("switch.a", 1), switch("switch.b", 1)),
        running("switch.a", "switch.b"),
        event(payloads=[[("SIMPLE", 3)]]),
    )
    home.settle(T0)
    session = home.engine.sessions["peak"]
    assert session.state is OperatingState.RUNNING_CURTAILED

    home.observations["switch.a"] = Observation(setting=ON)
    notices = home.engine.observe("switch.a", home.observations["switch.a"])
    assert [n.kind for n in notices] == [NoticeKind.OVERRIDE, NoticeKind.STATE]
    assert notices[0].entity_id == "switch.a"
    assert notices[0].before == OFF
    assert notices[0].after == ON
    assert session.state is OperatingState.RUNNING_OPTED_OUT
    # A second change of the same device is no news.
    assert home.engine.observe("switch.a", Observation(setting=OFF)) == []

    assert home.settle(T0 + timedelta(minutes=5)) == []  # not shed again
    restored = home.settle(T0 + timedelta(hours=1))
    assert [a.entity_id for a in restored] == ["switch.b"]


def test_observing_what_was_set_or_an_unavailable_device_is_no_override() -> None:
    """The device reporting the setting, or going away, changes nothing."""
    home = Home(
        config(switch("switch.a", 1)), running("switch.a"), event(payloads=[[("SIMPLE", 3)]])
    )
    home.settle(T0)
    assert home.engine.observe("switch.a", Observation(setting=OFF)) == []
    assert home.engine.observe("switch.a", Observation(available=False)) == []
    assert home.engine.observe("switch.b", Observation(setting=ON)) == []
    assert "switch.a" in home.engine.held


def test_a_change_while_nobody_watched_counts_at_restore() -> None:
    """A device found changed at restore time is an override too: left as the resident set it."""
    home = Home(
        config(switch("switch.a", 1)),
        {"switch.a": Observation(setting=Setting(on=True))},
        event(payloads=[[("SIMPLE", 3)]]),
    )
    home.settle(T0)
    home.observations["switch.a"] = Observation(setting=Setting(value=3.0))
    assert home.settle(T0 + timedelta(hours=1)) == []
    assert [n.kind for n in home.kinds(NoticeKind.OVERRIDE)] == [NoticeKind.OVERRIDE]


def test_device_already_back_needs_no_restore() -> None:
    """A device found at its prior setting at the end is released without a write."""
    home = Home(
        config(switch("switch.a", 1)), running("switch.a"), event(payloads=[[("SIMPLE", 3)]])
    )
    home.settle(T0)
    home.observations["switch.a"] = Observation(setting=ON)
    assert home.settle(T0 + timedelta(hours=1)) == []
    assert home.engine.held == {}
    assert not home.kinds(NoticeKind.OVERRIDE)


def test_opt_out_restores_and_opt_in_sheds_again_within_the_budget() -> None:
    """Opting out gives everything back; opting in sheds again, a bounded number of times."""
    home = Home(
        config(switch("switch.a", 1)), running("switch.a"), event(payloads=[[("SIMPLE", 3)]])
    )
    home.settle(T0)
    for round_ in range(MAX_SHEDS_PER_EVENT + 1):
        now = T0 + timedelta(minutes=round_ + 1)
        out = home.engine.participate("peak", False)
        assert out is not None
        assert out.session.state is OperatingState.RUNNING_OPTED_OUT
        assert home.engine.participate("peak", False) is None  # already out
        restored = home.settle(now)
        if round_ < MAX_SHEDS_PER_EVENT:
            assert [a.kind for a in restored] == [ActionKind.RESTORE]
        back = home.engine.participate("peak", True)
        assert back is not None
        assert back.session.state is OperatingState.RUNNING_CURTAILED
        again = shed(home.settle(now + timedelta(seconds=30)))
        assert again == (["switch.a"] if round_ < MAX_SHEDS_PER_EVENT - 1 else [])
    assert home.engine.participate("unknown", False) is None


def test_opting_out_before_the_start_sheds_nothing() -> None:
    """A resident can opt out of an upcoming event."""
    home = Home(
        config(switch("switch.a", 1)), running("switch.a"), event(payloads=[[("SIMPLE", 3)]])
    )
    home.sync(T0 - timedelta(hours=1))
    assert home.engine.current(T0 - timedelta(hours=1)) is home.engine.sessions["peak"]
    assert home.engine.participate("peak", False) is not None
    assert home.settle(T0) == []


def test_stale_signal_reverts_and_fresh_again_resumes() -> None:
    """A stale signal reverts every device; when signals flow again the event is answered anew."""
    home = Home(
        config(switch("switch.a", 1)), running("switch.a"), event(payloads=[[("SIMPLE", 3)]])
    )
    home.settle(T0)
    reverted = home.settle(T0 + timedelta(minutes=20), fresh=False)
    assert [(a.kind, a.after) for a in reverted] == [(ActionKind.REVERT, ON)]
    assert home.settle(T0 + timedelta(minutes=21), fresh=False) == []
    assert shed(home.settle(T0 + timedelta(minutes=30))) == ["switch.a"]


def test_cancelled_event_restores_at_once() -> None:
    """An event that disappears before its end (deleted, or its signature expired) ends now."""
    home = Home(
        config(switch("switch.a", 1)), running("switch.a"), event(payloads=[[("SIMPLE", 3)]])
    )
    home.settle(T0)
    home.events.clear()
    restored = home.settle(T0 + timedelta(minutes=10))
    assert [a.kind for a in restored] == [ActionKind.RESTORE]
    ended = home.kinds(NoticeKind.ENDED)
    assert ended
    assert ended[0].session.cancelled
    assert ended[0].session.end == T0 + timedelta(minutes=10)


def test_cancelled_before_it_began() -> None:
    """An upcoming event that is cancelled ends without acting."""
    home = Home(
        config(switch("switch.a", 1)), running("switch.a"), event(payloads=[[("SIMPLE", 3)]])
    )
    home.sync(T0 - timedelta(minutes=30))
    home.events.clear()
    assert home.settle(T0 - timedelta(minutes=20)) == []
    assert home.kinds(NoticeKind.ENDED)
    assert home.settle(T0) == []


def test_shifted_home_holds_its_last_interval_after_the_event_is_dropped() -> None:
    """With a later start the home's part outlasts the event's own end, which is no cancel."""
    home = Home(
        config(switch("switch.a", 1)),
        running("switch.a"),
        event(randomize="PT10M", payloads=[[("SIMPLE", 3)]]),
        seed=0,  # draws a later start (+413 s)
    )
    home.sync(T0 - timedelta(hours=1))
    session = home.engine.sessions["peak"]
    assert session.offset > timedelta(0)
    home.settle(session.start)
    home.events.clear()  # the coordinator drops the event at its own end
    assert home.settle(T0 + timedelta(hours=1)) == []
    assert not session.cancelled
    assert [a.kind for a in home.settle(session.end or T0)] == [ActionKind.RESTORE]


def test_a_failed_write_is_not_retried_within_the_plan() -> None:
    """A shed that fails is recorded and left; the next interval may try again."""
    home = Home(
        config(switch("switch.a", 1)),
        running("switch.a"),
        event(duration="PT30M", payloads=[[("SIMPLE", 3)], [("SIMPLE", 3)]]),
    )
    assert home.step(T0, fail=True) is not None
    assert home.settle(T0 + timedelta(minutes=5)) == []
    assert shed(home.settle(T0 + timedelta(minutes=30))) == ["switch.a"]


def test_a_failing_restore_gives_up() -> None:
    """A restore that keeps failing is given up after a few attempts, and said so."""
    home = Home(
        config(switch("switch.a", 1)), running("switch.a"), event(payloads=[[("SIMPLE", 3)]])
    )
    home.settle(T0)
    for attempt in range(MAX_RESTORE_ATTEMPTS):
        assert home.step(T0 + timedelta(hours=1, seconds=attempt), fail=True) is not None
    assert home.step(T0 + timedelta(hours=1, minutes=1)) is None
    failed = home.kinds(NoticeKind.RESTORE_FAILED)
    assert [(n.entity_id, n.after) for n in failed] == [("switch.a", ON)]


def test_restore_waits_for_an_unavailable_device() -> None:
    """A device that is away at the end is restored once it is back."""
    home = Home(
        config(switch("switch.a", 1)), running("switch.a"), event(payloads=[[("SIMPLE", 3)]])
    )
    home.settle(T0)
    home.observations["switch.a"] = Observation(available=False)
    assert home.settle(T0 + timedelta(hours=1)) == []
    assert "switch.a" in home.engine.held
    home.observations["switch.a"] = Observation(setting=OFF)
    assert [a.kind for a in home.settle(T0 + timedelta(hours=2))] == [ActionKind.RESTORE]


def test_a_new_interval_replans() -> None:
    """A lower level in the next interval gives devices back; a higher one sheds more."""
    loads = (switch("switch.a", 1), switch("switch.b", 1), switch("switch.c", 1))
    home = Home(
        config(*loads),
        running("switch.a", "switch.b", "switch.c"),
        event(duration="PT20M", payloads=[[("SIMPLE", 3)], [("SIMPLE", 1)], [("SIMPLE", 2)]]),
    )
    assert shed(home.settle(T0)) == ["switch.a", "switch.b", "switch.c"]
    assert home.engine.next_change(T0) == T0 + timedelta(minutes=20)
    second = home.settle(T0 + timedelta(minutes=20))
    assert [(a.kind, a.entity_id) for a in second] == [
        (ActionKind.RESTORE, "switch.c"),
        (ActionKind.RESTORE, "switch.b"),
    ]
    assert shed(home.settle(T0 + timedelta(minutes=40))) == ["switch.b"]


def test_the_higher_priority_event_governs() -> None:
    """Of two events at once, the lower priority number decides."""
    loads = (switch("switch.a", 1), switch("switch.b", 1), switch("switch.c", 1))
    home = Home(
        config(*loads),
        running("switch.a", "switch.b", "switch.c"),
        event("mild", payloads=[[("SIMPLE", 1)]], priority=5),
        event("severe", payloads=[[("SIMPLE", 3)]], priority=1),
    )
    actions = home.settle(T0)
    assert shed(actions) == ["switch.a", "switch.b", "switch.c"]
    assert {a.event_id for a in actions} == {"severe"}


def test_price_events_and_unserved_channels_are_ignored() -> None:
    """Prices ask for no action; an export limit means nothing to a home without inverters."""
    home = Home(
        config(switch("switch.a", 1)),
        running("switch.a"),
        event("tariff", payloads=[[("PRICE", 0.5)]]),
        event("grant", payloads=[[("EXPORT_CAPACITY_LIMIT", 3)]]),
    )
    assert home.settle(T0) == []
    assert home.engine.sessions == {}


def test_an_event_already_over_opens_no_session() -> None:
    """An event seen only after its end is history."""
    home = Home(config(switch("switch.a", 1)), running("switch.a"), event())
    assert home.sync(T0 + timedelta(hours=2)) == []


def test_export_limit_is_shared_by_rating_and_given_back() -> None:
    """An export limit for the home is split among its inverters and restored at the end."""
    inverters = (
        Inverter(entity_id="number.roof", rated_power=4),
        Inverter(entity_id="number.garage", rated_power=2),
    )
    home = Home(
        config(inverters=inverters),
        {
            "number.roof": Observation(setting=Setting(value=100.0), unit="%", maximum=100),
            "number.garage": Observation(setting=Setting(value=5000.0), unit="W"),
        },
        event(
            "grant",
            duration="PT1H",
            payloads=[[("EXPORT_CAPACITY_LIMIT", 3)], [("EXPORT_CAPACITY_LIMIT", 1.5)]],
        ),
    )
    actions = home.settle(T0)
    assert [(a.kind, a.entity_id, a.after.value) for a in actions] == [
        (ActionKind.LIMIT, "number.roof", 50.0),
        (ActionKind.LIMIT, "number.garage", 1000.0),
    ]
    assert home.engine.shed_power() == 0  # a limit sheds no load
    changed = home.settle(T0 + timedelta(hours=1))
    assert [(a.entity_id, a.after.value) for a in changed] == [
        ("number.roof", 25.0),
        ("number.garage", 500.0),
    ]
    restored = home.settle(T0 + timedelta(hours=2))
    assert [(a.kind, a.entity_id, a.after.value) for a in restored] == [
        (ActionKind.RESTORE, "number.garage", 5000.0),
        (ActionKind.RESTORE, "number.roof", 100.0),
    ]


def test_export_limit_in_an_unknown_unit_is_not_written() -> None:
    """An inverter whose unit says nothing usable is left alone."""
    inverter = Inverter(entity_id="number.roof", rated_power=0)
    assert export_setting(inverter, Observation(setting=Setting(value=1), unit="A"), 3) is None
    assert export_setting(inverter, Observation(setting=Setting(value=1), unit="%"), 3) is None
    assert export_setting(inverter, Observation(setting=Setting(value=1)), 3) == Setting(value=3)


@pytest.mark.parametrize(
    ("load", "observation", "expected"),
    [
        (
            Load(entity_id="climate.ac", kind=LoadKind.CLIMATE, nominal_power=1.5),
            Observation(setting=Setting(value=24), mode="cool", maximum=25),
            Setting(value=25),
        ),
        (
            Load(entity_id="climate.hp", kind=LoadKind.CLIMATE, nominal_power=2),
            Observation(setting=Setting(value=21), mode="heat"),
            Setting(value=19),
        ),
        (
            Load(entity_id="climate.hp", kind=LoadKind.CLIMATE, nominal_power=2),
            Observation(setting=Setting(low=20, high=24), mode="heat_cool", minimum=19),
            Setting(low=19, high=26),
        ),
        (
            Load(entity_id="climate.ac", kind=LoadKind.CLIMATE, nominal_power=1.5),
            Observation(setting=Setting(value=24), mode="off"),
            None,
        ),
        (
            Load(entity_id="climate.ac", kind=LoadKind.CLIMATE, nominal_power=1.5),
            Observation(setting=Setting(value=30), mode="cool", maximum=30),
            None,
        ),
        (
            Load(
                entity_id="water_heater.tank",
                kind=LoadKind.WATER_HEATER,
                nominal_power=3,
                temperature_offset=10,
            ),
            Observation(setting=Setting(value=60), mode="eco", minimum=55),
            Setting(value=55),
        ),
        (
            Load(entity_id="water_heater.tank", kind=LoadKind.WATER_HEATER, nominal_power=3),
            Observation(setting=Setting(value=60), mode="off"),
            None,
        ),
        (
            Load(entity_id="number.ev", kind=LoadKind.LEVEL, nominal_power=7, minimum_value=6),
            Observation(setting=Setting(value=16), minimum=8),
            Setting(value=8),
        ),
        (
            Load(entity_id="number.ev", kind=LoadKind.LEVEL, nominal_power=7, minimum_value=6),
            Observation(setting=Setting(value=6)),
            None,
        ),
    ],
)
def test_comfort_bounds(load: Load, observation: Observation, expected: Setting | None) -> None:
    """Thermostats move by their offset within their range; chargers go down to their floor."""
    assert shed_setting(load, observation) == expected


def test_a_charger_sheds_its_share_above_the_floor() -> None:
    """Lowering 16 A to 6 A removes 10/16 of what the charger draws."""
    charger = Load(entity_id="number.ev", kind=LoadKind.LEVEL, nominal_power=8, minimum_value=6)
    observed = Observation(setting=Setting(value=16), power=3.2)
    assert shed_power(charger, observed, Setting(value=6)) == pytest.approx(2.0)
    assert shed_power(charger, replace(observed, power=None), Setting(value=6)) == 5.0


def test_climate_shed_through_the_engine_restores_the_setpoint() -> None:
    """A thermostat goes back to the setpoint it had."""
    load = Load(entity_id="climate.ac", kind=LoadKind.CLIMATE, nominal_power=1.5)
    home = Home(
        config(load),
        {"climate.ac": Observation(setting=Setting(value=24), mode="cool")},
        event(payloads=[[("SIMPLE", 3)]]),
    )
    assert [a.after for a in home.settle(T0)] == [Setting(value=26)]
    assert [a.after for a in home.settle(T0 + timedelta(hours=1))] == [Setting(value=24)]


def test_settings_match_up_to_rounding_and_describe_themselves() -> None:
    """A device that rounds what it is given still matches; the audit log reads them."""
    assert Setting(value=26.0).matches(Setting(value=26.02))
    assert not Setting(value=26.0).matches(Setting(value=26.5))
    assert not Setting(value=26.0).matches(Setting())
    assert [s.describe() for s in (ON, OFF, Setting(value=6), Setting(low=19, high=26))] == [
        "on",
        "off",
        "6",
        "19-26",
    ]
    assert Setting.from_json(Setting(low=1.5, high=2).to_json()) == Setting(low=1.5, high=2)


def test_kinds_by_domain() -> None:
    """The domain says how a device sheds."""
    assert kind_of("input_boolean.pump") is LoadKind.SWITCH
    assert kind_of("number.ev_current") is LoadKind.LEVEL
    assert kind_of("light.kitchen") is None


def test_current_is_the_running_event_else_the_next() -> None:
    """The participation switch is about the running event, else the next one."""
    home = Home(
        config(switch("switch.a", 1)),
        running("switch.a"),
        event("first"),
        event("second", start=T0 + timedelta(hours=3)),
    )
    home.sync(T0 - timedelta(hours=1))
    assert home.engine.current(T0 - timedelta(hours=1)).event_id == "first"  # type: ignore[union-attr]
    assert home.engine.current(T0 + timedelta(minutes=1)).event_id == "first"  # type: ignore[union-attr]
    home.sync(T0 + timedelta(hours=1))
    assert home.engine.current(T0 + timedelta(hours=1)).event_id == "second"  # type: ignore[union-attr]


def test_a_moved_event_moves_the_home_with_its_shift() -> None:
    """A new version of an event that starts later moves the home's part, offset kept."""
    home = Home(config(switch("switch.a", 1)), running("switch.a"), event(randomize="PT5M"))
    home.sync(T0 - timedelta(hours=2))
    offset = home.engine.sessions["peak"].offset
    home.events["peak"] = event(randomize="PT5M", start=T0 + timedelta(hours=1))
    home.sync(T0 - timedelta(hours=1))
    assert home.engine.sessions["peak"].start == T0 + timedelta(hours=1) + offset


def test_devices_away_or_changed_since_the_plan_are_skipped() -> None:
    """An unavailable device is not planned; one switched off since the plan is not written."""
    loads = (switch("switch.a", 1), switch("switch.b", 1), switch("switch.c", 1))
    home = Home(
        config(*loads),
        {"switch.a": Observation(available=False), **running("switch.b", "switch.c")},
        event(payloads=[[("SIMPLE", 3)]]),
    )
    first = home.step(T0)
    assert first is not None
    assert first.entity_id == "switch.b"
    home.observations["switch.c"] = Observation(setting=OFF)
    assert home.settle(T0 + timedelta(seconds=10)) == []
    home.observations["switch.b"] = Observation(available=False)
    assert home.settle(T0 + timedelta(seconds=20)) == []


def test_an_override_holds_for_the_rest_of_the_event() -> None:
    """An overridden device is not shed again in a later interval of the same event."""
    home = Home(
        config(switch("switch.a", 1), switch("switch.b", 1)),
        running("switch.a", "switch.b"),
        event(duration="PT30M", payloads=[[("SIMPLE", 3)], [("SIMPLE", 3)]]),
    )
    home.settle(T0)
    home.observations["switch.a"] = Observation(setting=ON)
    home.engine.observe("switch.a", home.observations["switch.a"])
    assert home.settle(T0 + timedelta(minutes=30)) == []
    # Already counted as opted out: opting out too is no news for the grid.
    assert home.engine.participate("peak", False) is None


def test_the_same_limit_in_the_next_interval_writes_nothing() -> None:
    """An unchanged export limit is not written again; unavailable inverters get no share."""
    inverters = (
        Inverter(entity_id="number.roof", rated_power=0),
        Inverter(entity_id="number.garage", rated_power=0),
    )
    home = Home(
        config(inverters=inverters),
        {
            "number.roof": Observation(setting=Setting(value=10.0)),
            "number.garage": Observation(available=False),
        },
        event(
            "grant",
            duration="PT1H",
            payloads=[[("EXPORT_CAPACITY_LIMIT", 3)], [("EXPORT_CAPACITY_LIMIT", 3)]],
        ),
    )
    assert [(a.entity_id, a.after.value) for a in home.settle(T0)] == [("number.roof", 3.0)]
    assert home.settle(T0 + timedelta(hours=1)) == []
    home.observations["number.roof"] = Observation(available=False)
    assert home.settle(T0 + timedelta(hours=2)) == []


def test_default_comfort_bounds() -> None:
    """A water heater gives more than a room may."""
    assert default_offset(LoadKind.WATER_HEATER) > default_offset(LoadKind.CLIMATE)


def charger(entity_id: str = "number.ev", *, phases: int = 1, minimum: float = 6) -> Load:
    """An enrolled EV charger current, on 230 V."""
    return Load(
        entity_id=entity_id,
        kind=LoadKind.LEVEL,
        nominal_power=7.4,
        minimum_value=minimum,
        phases=phases,
    )


def amperes(value: float, **kwargs: Any) -> Observation:
    """A charger current number, 0-32 A in steps of 1 A."""
    defaults: dict[str, Any] = {"unit": "A", "minimum": 0, "maximum": 32, "step": 1}
    return Observation(setting=Setting(value=value), **(defaults | kwargs))


def share(
    kilowatts: float, *, start: datetime = T0, duration: str = "PT15M", modified: datetime = T0
) -> Event:
    """The community's EV charging share for the home."""
    return event(
        "ev-limit-h1",
        start=start,
        duration=duration,
        payloads=[[("X_EV_CHARGING_LIMIT", kilowatts)]],
        units={"X_EV_CHARGING_LIMIT": "KW"},
        modified=modified,
        program_id="X_COMMUNITY",
    )


@pytest.mark.parametrize(
    ("load", "observation", "kilowatts", "expected"),
    [
        (charger(), amperes(32), 4.6, 20),  # 4.6 kW / 230 V
        (charger(phases=3), amperes(32), 11, 15),  # 15.9 A, rounded down to the step
        (charger(phases=3), amperes(32, step=None), 11, pytest.approx(15.94, abs=0.01)),
        (charger(), amperes(32), 1, 6),  # never below the charger's minimum
        (charger(), amperes(32, minimum=8), 1, 8),  # nor the number's own
        (charger(), amperes(10), 4.6, 10),  # nor above what the resident set
        (charger(), amperes(32, maximum=16), 4.6, 16),
        (charger(), amperes(32, minimum=None, maximum=None), 9.2, 32),  # a number without bounds
        (charger(minimum=1), amperes(11, unit="kW", step=None, maximum=22), 3.7, 3.7),
        (charger(minimum=1000), amperes(11000, unit="W", step=None, maximum=22000), 3.7, 3700),
    ],
)
def test_charging_setting(
    load: Load, observation: Observation, kilowatts: float, expected: float
) -> None:
    """A share in kW as the charger's current (phases x voltage) or power, within its bounds."""
    found = charging_setting(load, observation, kilowatts, observation.setting)
    assert found is not None
    assert found.value == expected


def test_charging_setting_needs_a_current_or_a_power() -> None:
    """A number in another unit, or without a value, is not a charger the share can set."""
    assert charging_setting(charger(), amperes(50, unit="%"), 3, Setting(value=50)) is None
    assert charging_setting(charger(), amperes(32), 3, Setting()) is None


def test_ev_charging_share_holds_the_charger_and_gives_it_back() -> None:
    """Limited at once, followed as the community renews it, restored when it lapses."""
    home = Home(config(charger()), {"number.ev": amperes(32)}, share(4.6))
    assert [(a.kind, a.after.value) for a in home.settle(T0)] == [(ActionKind.LIMIT, 20)]
    assert [n.session.event_id for n in home.kinds(NoticeKind.STARTED)] == ["ev-limit-h1"]
    session = home.engine.sessions["ev-limit-h1"]
    assert not session.demand_response
    assert home.engine.current(T0) is None  # no demand response to opt out of
    assert home.engine.shed_power() == 0

    renewed = T0 + timedelta(minutes=7)
    home.events = {"ev-limit-h1": share(2.3, start=renewed, modified=renewed)}
    assert [(a.kind, a.after.value) for a in home.settle(renewed)] == [(ActionKind.LIMIT, 10)]
    again = renewed + timedelta(minutes=7)
    home.events = {"ev-limit-h1": share(2.3, start=again, modified=again)}
    assert home.settle(again) == []  # the same share: nothing to write

    lapsed = again + timedelta(minutes=15)
    assert [(a.kind, a.after.value) for a in home.settle(lapsed)] == [(ActionKind.RESTORE, 32)]
    assert [n.session.event_id for n in home.kinds(NoticeKind.ENDED)] == ["ev-limit-h1"]


def test_a_withdrawn_share_restores_at_once_and_chargers_split_it() -> None:
    """Two chargers split the home's share evenly; withdrawn, they get their current back."""
    home = Home(
        config(charger("number.ev_1"), charger("number.ev_2")),
        {"number.ev_1": amperes(32), "number.ev_2": amperes(16)},
        share(9.2),
    )
    # 4.6 kW each is 20 A: above what ev_2 is set to, so only ev_1 is written.
    assert [(a.entity_id, a.after.value) for a in home.settle(T0)] == [("number.ev_1", 20)]
    home.events = {}
    withdrawn = T0 + timedelta(minutes=5)
    assert [(a.kind, a.entity_id, a.after.value) for a in home.settle(withdrawn)] == [
        (ActionKind.RESTORE, "number.ev_1", 32)
    ]
    assert [n.session.cancelled for n in home.kinds(NoticeKind.ENDED)] == [True]


def test_demand_response_sheds_a_charger_held_to_its_share() -> None:
    """Shedding is the stricter: down to the minimum, then back to the share, then free."""
    peak_start = T0 + timedelta(minutes=30)
    peak = event("peak", start=peak_start, duration="PT30M")
    home = Home(config(charger()), {"number.ev": amperes(32)}, share(4.6, duration="PT2H"), peak)

    def writes(now: datetime) -> list[tuple[ActionKind, float | None, float | None]]:
        return [(a.kind, a.before.value, a.after.value) for a in home.settle(now)]

    assert writes(T0) == [(ActionKind.LIMIT, 32, 20)]
    assert writes(peak_start) == [(ActionKind.SHED, 20, 6)]
    assert home.engine.shed_power() == pytest.approx(7.4 * 14 / 20)
    assert home.engine.current(peak_start) is not None
    assert writes(T0 + timedelta(hours=1)) == [(ActionKind.LIMIT, 6, 20)]
    assert home.engine.shed_power() == 0
    assert writes(T0 + timedelta(hours=2)) == [(ActionKind.RESTORE, 20, 32)]


def test_a_share_for_a_home_without_chargers_is_not_its_business() -> None:
    """Only a home with enrolled chargers takes part in the community's EV charging."""
    home = Home(config(switch("switch.a", 1)), running("switch.a"), share(4.6))
    assert home.settle(T0) == []
    assert home.engine.sessions == {}


def test_sessions_stored_before_the_distinction_are_demand_response() -> None:
    """What a home stored before it told limits from requests reads back as requests."""
    home = Home(config(charger()), {"number.ev": amperes(32)}, share(4.6))
    home.settle(T0)
    stored = home.engine.sessions["ev-limit-h1"].to_json()
    assert Session.from_json(stored).demand_response is False
    assert Session.from_json(
        {k: v for k, v in stored.items() if k != "demand_response"}
    ).demand_response


def test_a_resident_who_changes_a_held_charger_overrides_the_share() -> None:
    """The charger is left as the resident set it for the rest of the share, and reported."""
    home = Home(config(charger()), {"number.ev": amperes(32)}, share(4.6))
    home.settle(T0)
    changed = amperes(25)
    home.observations["number.ev"] = changed
    notices = home.engine.observe("number.ev", changed)
    assert [n.kind for n in notices] == [NoticeKind.OVERRIDE, NoticeKind.STATE]
    assert notices[1].session.state is OperatingState.RUNNING_OPTED_OUT
    renewed = T0 + timedelta(minutes=7)
    home.events = {"ev-limit-h1": share(2.3, start=renewed, modified=renewed)}
    assert home.settle(renewed) == []
    assert home.settle(renewed + timedelta(minutes=15)) == []  # not restored either
