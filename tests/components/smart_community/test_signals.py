"""The pure domain logic: what verified events mean at a moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from custom_components.smart_community.protocol import Event, Program, format_datetime
from custom_components.smart_community.signals import (
    AlertKind,
    DemandResponse,
    DemandResponsePeriod,
    Outlook,
    Price,
    ReceivedEvent,
    alert_kind,
    demand_response_periods,
    describe_event,
    is_demand_response,
    is_price_event,
    outlook,
    price_unit,
)

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _event(
    event_id: str,
    payloads: list[list[tuple[str, list[Any]]]],
    *,
    start: datetime | None = NOW,
    duration: str = "PT1H",
    priority: int | None = None,
    modified: datetime = NOW,
    currency: str | None = None,
    name: str | None = None,
) -> ReceivedEvent:
    """An event of back-to-back intervals, each with the given payloads."""
    body: dict[str, Any] = {
        "id": event_id,
        "objectType": "EVENT",
        "createdDateTime": format_datetime(modified),
        "modificationDateTime": format_datetime(modified),
        "programID": "p1",
        "intervalPeriod": {"duration": duration},
        "intervals": [
            {
                "id": index,
                "payloads": [{"type": kind, "values": values} for kind, values in interval],
            }
            for index, interval in enumerate(payloads)
        ],
    }
    if start is not None:
        body["intervalPeriod"]["start"] = format_datetime(start)
    if priority is not None:
        body["priority"] = priority
    if name is not None:
        body["eventName"] = name
    if currency is not None:
        body["payloadDescriptors"] = [{"payloadType": "PRICE", "currency": currency}]
    return ReceivedEvent(event=Event.parse(body), received_at=NOW)


def _prices(event_id: str, *values: Any, **kwargs: Any) -> ReceivedEvent:
    return _event(event_id, [[("PRICE", [value])] for value in values], **kwargs)


def _simple(event_id: str, *levels: int, **kwargs: Any) -> ReceivedEvent:
    return _event(event_id, [[("SIMPLE", [level])] for level in levels], **kwargs)


def _price_now(*events: ReceivedEvent) -> float | None:
    price = outlook(events, {}, NOW).price
    return price.value if price else None


def test_classification() -> None:
    """Price and export-price events are prices; the rest may ask for demand response."""
    assert is_price_event(_prices("a", 0.5).event)
    assert is_price_event(_event("b", [[("EXPORT_PRICE", [0.1])]]).event)
    assert not is_price_event(_simple("c", 1).event)
    assert not is_price_event(_event("d", [[("IMPORT_CAPACITY_LIMIT", [3.5])]]).event)


@pytest.mark.parametrize(
    ("received", "expected"),
    [
        (_simple("peak", 0, 2), True),  # SIMPLE above 0 in some interval
        (_simple("normal", 0, 0), False),  # SIMPLE 0 is normal operation
        (_simple("standing", 1, duration="P9999Y"), True),  # a request, however long
        (_event("cap", [[("IMPORT_CAPACITY_LIMIT", [3.5])]]), True),  # a bounded limit
        (_event("cap", [[("EXPORT_CAPACITY_LIMIT", [0])]]), True),
        (_event("grant", [[("EXPORT_CAPACITY_LIMIT", [5])]], duration="P9999Y"), False),
        (_event("alert", [[("ALERT_GRID_EMERGENCY", ["Load shedding tonight"])]]), False),
        (_event("share", [[("X_EV_CHARGING_LIMIT", [7.4])]]), False),
        (_event("ghg", [[("GHG", [420])]]), False),
        (_prices("tou", 0.5), False),
        (_event("flag", [[("SIMPLE", [True])]]), False),  # no level, however truthy
    ],
)
def test_what_asks_for_demand_response(received: ReceivedEvent, expected: bool) -> None:
    """SIMPLE above 0, or a capacity limit of an event with an end; nothing else."""
    assert is_demand_response(received.event, received_at=NOW) is expected


def test_the_communitys_own_events_are_not_demand_response() -> None:
    """Whatever the community signs in its program, no request for demand response."""
    body = _event("ev-limit-h1", [[("SIMPLE", [2]), ("IMPORT_CAPACITY_LIMIT", [3])]])
    event = Event.parse({**body.event.to_json_dict(), "programID": "X_COMMUNITY"})
    received = ReceivedEvent(event=event, received_at=NOW)
    assert not is_demand_response(event, received_at=NOW)
    result = outlook([received], {}, NOW)
    assert result.demand_response is None
    assert result.import_limit == 3  # a limit, whoever sets it
    assert demand_response_periods([received], NOW - HOUR, NOW + HOUR) == []


def test_nothing_to_say() -> None:
    """Without events there is no price and no demand response."""
    assert outlook([], {}, NOW) == Outlook(at=NOW)


def test_price_now_and_next() -> None:
    """The current price, and the first later moment it differs, skipping equal neighbours."""
    result = outlook([_prices("tou", 0.5, 0.5, 0.9, currency="CNY")], {}, NOW)
    assert result.price == Price(value=0.5, currency="CNY", event_id="tou")
    assert result.next_price_change == NOW + 2 * HOUR
    assert result.next_price == Price(value=0.9, currency="CNY", event_id="tou")
    assert result.next_boundary == NOW + HOUR


def test_price_ends() -> None:
    """After the last interval there is no price: that is a change too."""
    result = outlook([_prices("tou", 0.5)], {}, NOW + HOUR / 2)
    assert result.price is not None
    assert result.next_price_change == NOW + HOUR
    assert result.next_price is None


def test_price_split_into_sub_intervals() -> None:
    """Several values in one interval split it evenly."""
    event = _event("rtp", [[("PRICE", [0.1, 0.2, 0.3, 0.4])]])
    result = outlook([event], {}, NOW + timedelta(minutes=20))
    assert result.price is not None
    assert result.price.value == 0.2
    assert result.next_price_change == NOW + timedelta(minutes=30)


def test_price_precedence() -> None:
    """A lower priority number wins; among equals, the later publication."""
    base = _prices("base", 0.5, priority=5)
    urgent = _prices("urgent", 0.9, priority=1)
    newer = _prices("newer", 0.7, priority=5, modified=NOW + timedelta(minutes=1))
    assert _price_now(base, urgent) == 0.9
    assert _price_now(base, newer) == 0.7
    assert _price_now(_prices("none", 0.3), base) == 0.5


def test_price_values_must_be_numbers() -> None:
    """A price that is not a number is no price."""
    assert outlook([_prices("odd", "cheap"), _prices("flag", True)], {}, NOW).price is None


def test_currency_from_program() -> None:
    """An event without a price descriptor takes its program's currency."""
    tariff = Program.parse(
        {
            "id": "p1",
            "objectType": "PROGRAM",
            "createdDateTime": format_datetime(NOW),
            "modificationDateTime": format_datetime(NOW),
            "programName": "Tariff",
            "payloadDescriptors": [
                {"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": "USAGE"},
                {"payloadType": "PRICE", "currency": "EUR"},
            ],
        }
    )
    result = outlook([_prices("tou", 0.5)], {"p1": tariff}, NOW)
    assert result.price == Price(value=0.5, currency="EUR", event_id="tou")
    assert outlook([_prices("tou", 0.5)], {}, NOW).price == Price(
        value=0.5, currency=None, event_id="tou"
    )


def test_demand_response_window() -> None:
    """Active from the interval's start to its end; before it, announced as the next one."""
    event = _simple("peak", 2, start=NOW + HOUR, name="Evening peak")
    expected = DemandResponse(
        event_id="peak", event_name="Evening peak", start=NOW + HOUR, end=NOW + 2 * HOUR
    )
    before = outlook([event], {}, NOW)
    assert before.demand_response is None
    assert before.next_demand_response == expected
    assert before.next_boundary == NOW + HOUR
    during = outlook([event], {}, NOW + HOUR)
    assert during.demand_response == expected
    assert during.next_demand_response is None
    assert during.next_boundary == NOW + 2 * HOUR
    assert outlook([event], {}, NOW + 2 * HOUR).demand_response is None


def test_simple_level_zero_is_normal_operation() -> None:
    """SIMPLE 0 asks for nothing, so it ends a demand-response stretch."""
    result = outlook([_simple("peak", 2, 0, 3)], {}, NOW)
    assert result.demand_response is not None
    assert result.demand_response.end == NOW + HOUR
    assert result.next_demand_response is not None
    assert result.next_demand_response.start == NOW + 2 * HOUR


@pytest.mark.parametrize("gap", [timedelta(0), -HOUR / 2])
def test_demand_response_stretches_merge(gap: timedelta) -> None:
    """Back-to-back or overlapping events are one stretch; the leading event names it."""
    first = _simple("first", 1, name="First", priority=2)
    second = _simple("second", 3, 3, start=NOW + HOUR + gap, name="Second", priority=1)
    result = outlook([first, second], {}, NOW)
    assert result.demand_response == DemandResponse(
        event_id="first", event_name="First", start=NOW, end=NOW + 3 * HOUR + gap
    )
    later = outlook([first, second], {}, NOW + HOUR)
    assert later.demand_response is not None
    assert later.demand_response.event_id == "second"


def test_demand_response_until_further_notice() -> None:
    """A request lasting "forever" has no end, and swallows what follows."""
    forever = _simple("alert", 1, duration="P9999Y")
    later = _simple("later", 1, start=NOW + HOUR)
    result = outlook([forever, later], {}, NOW + HOUR * 2)
    assert result.demand_response == DemandResponse(
        event_id="alert", event_name=None, start=NOW, end=None
    )
    assert result.next_boundary is None


def test_standing_limits_are_limits_not_demand_response() -> None:
    """A limit until further notice (a grid connection's grant) sets the limit sensors only."""
    grant = _event("grant", [[("EXPORT_CAPACITY_LIMIT", [5])]], duration="P9999Y")
    later = _simple("later", 1, start=NOW + HOUR)
    result = outlook([grant, later], {}, NOW)
    assert result.export_limit == 5
    assert result.demand_response is None
    assert result.next_demand_response is not None
    assert result.next_demand_response.event_id == "later"
    assert demand_response_periods([grant], NOW - HOUR, NOW + 24 * HOUR) == []


def test_next_demand_response_opened_by_highest_precedence() -> None:
    """Two events starting together: the next stretch is named after the one that wins."""
    low = _simple("low", 1, start=NOW + HOUR, priority=9)
    high = _simple("high", 2, start=NOW + HOUR, priority=1)
    result = outlook([low, high], {}, NOW)
    assert result.next_demand_response is not None
    assert result.next_demand_response.event_id == "high"


def test_event_starting_on_receipt() -> None:
    """An event without a start begins when it was received."""
    received = _simple("now", 1, start=None)
    result = outlook([received], {}, NOW + HOUR / 2)
    assert result.demand_response is not None
    assert result.demand_response.start == NOW


def test_forecast_follows_the_winning_event() -> None:
    """The forecast is the price that applies over time: an overriding event splits the base."""
    base = _prices("base", 0.5, 0.5, 0.5, priority=5, currency="CNY")
    spike = _prices("spike", 2.0, start=NOW + HOUR, priority=1, currency="CNY")
    forecast = outlook([base, spike], {}, NOW).price_forecast
    assert [(i.start, i.end, i.price.value, i.price.event_id) for i in forecast] == [
        (NOW, NOW + HOUR, 0.5, "base"),
        (NOW + HOUR, NOW + 2 * HOUR, 2.0, "spike"),
        (NOW + 2 * HOUR, NOW + 3 * HOUR, 0.5, "base"),
    ]


def test_forecast_from_since() -> None:
    """Intervals that ended before now still count from ``since`` on, not before it."""
    tariff = _prices("tou", 0.3, 0.6, 0.9, start=NOW - 2 * HOUR)
    result = outlook([tariff], {}, NOW + HOUR / 2, since=NOW - HOUR)
    assert [i.price.value for i in result.price_forecast] == [0.6, 0.9]
    assert result.price is not None
    assert result.price.value == 0.9
    assert [i.price.value for i in outlook([tariff], {}, NOW).price_forecast] == [0.9]


def test_open_ended_price() -> None:
    """A price "until further notice" is the last interval of the forecast, without an end."""
    flat = _event("flat", [[("PRICE", [0.4])]], duration="P9999Y")
    result = outlook([flat], {}, NOW)
    assert [(i.start, i.end) for i in result.price_forecast] == [(NOW, None)]
    assert result.next_price_change is None


def test_export_price() -> None:
    """An export price has its own forecast; its currency falls back on the import price's."""
    event = _event(
        "feed-in", [[("PRICE", [0.6]), ("EXPORT_PRICE", [0.4])], [("EXPORT_PRICE", [0.3])]]
    )
    tariff = Program.parse(
        {
            "id": "p1",
            "objectType": "PROGRAM",
            "createdDateTime": format_datetime(NOW),
            "modificationDateTime": format_datetime(NOW),
            "programName": "Tariff",
            "payloadDescriptors": [{"payloadType": "PRICE", "currency": "CNY"}],
        }
    )
    result = outlook([event], {"p1": tariff}, NOW)
    assert result.export_price == Price(value=0.4, currency="CNY", event_id="feed-in")
    assert [i.price.value for i in result.export_price_forecast] == [0.4, 0.3]
    assert [i.price.value for i in result.price_forecast] == [0.6]
    assert result.next_boundary == NOW + HOUR


def test_price_unit() -> None:
    """The grid's currency per kWh, else the default one."""
    assert price_unit(
        outlook([_prices("a", 0.5, currency="CNY")], {}, NOW).price_forecast, "EUR"
    ) == ("CNY/kWh")
    assert price_unit((), "EUR") == "EUR/kWh"


@pytest.mark.parametrize(
    ("units", "expected"), [(None, 3.5), ("KW", 3.5), ("kw", 3.5), ("W", 0.0035), ("MW", 3500.0)]
)
def test_capacity_limits_in_kilowatts(units: str | None, expected: float) -> None:
    """Import and export limits are given in kW whatever unit the event names."""
    body_units = {} if units is None else {"units": units}
    event = _event("limit", [[("IMPORT_CAPACITY_LIMIT", [3.5]), ("EXPORT_CAPACITY_LIMIT", [3.5])]])
    described = Event.parse(
        {
            **event.event.to_json_dict(),
            "payloadDescriptors": [
                {"payloadType": "IMPORT_CAPACITY_LIMIT", **body_units},
                {"payloadType": "EXPORT_CAPACITY_LIMIT", **body_units},
            ],
        }
    )
    result = outlook([ReceivedEvent(event=described, received_at=NOW)], {}, NOW)
    assert result.import_limit == pytest.approx(expected)
    assert result.export_limit == pytest.approx(expected)
    assert result.demand_response is not None


def test_capacity_limit_precedence_and_end() -> None:
    """The winning event sets the limit; none applies outside the events."""
    low = _event("low", [[("IMPORT_CAPACITY_LIMIT", [2])]], priority=1)
    high = _event("high", [[("IMPORT_CAPACITY_LIMIT", [5])]], priority=2, duration="PT2H")
    assert outlook([low, high], {}, NOW).import_limit == 2
    assert outlook([low, high], {}, NOW + HOUR).import_limit == 5
    assert outlook([low, high], {}, NOW + 2 * HOUR).import_limit is None
    assert outlook([low, high], {}, NOW).export_limit is None


def test_demand_response_periods_per_event() -> None:
    """Each event's own stretches that ask for action, with the highest level in each."""
    peak = _simple("peak", 1, 3, 0, 2, name="Peak")
    limit = _event("limit", [[("IMPORT_CAPACITY_LIMIT", [3.5])]], start=NOW + HOUR)
    tariff = _prices("tou", 0.5, 0.9)
    periods = demand_response_periods([peak, limit, tariff], NOW - HOUR, NOW + 24 * HOUR)
    assert periods == [
        DemandResponsePeriod(
            event_id="peak",
            event_name="Peak",
            program_id="p1",
            start=NOW,
            end=NOW + 2 * HOUR,
            level=3,
        ),
        DemandResponsePeriod(
            event_id="limit",
            event_name=None,
            program_id="p1",
            start=NOW + HOUR,
            end=NOW + 2 * HOUR,
            level=None,
        ),
        DemandResponsePeriod(
            event_id="peak",
            event_name="Peak",
            program_id="p1",
            start=NOW + 3 * HOUR,
            end=NOW + 4 * HOUR,
            level=2,
        ),
    ]
    # Only what falls in the window counts.
    assert [p.start for p in demand_response_periods([peak], NOW + 2 * HOUR, NOW + 24 * HOUR)] == [
        NOW + 3 * HOUR
    ]


def test_describe_event() -> None:
    """An event as a whole: its lifespan and the highest level it asks for."""
    peak = _simple("peak", 1, 3, 0, start=NOW + HOUR, name="Peak")
    assert describe_event(peak) == DemandResponsePeriod(
        event_id="peak",
        event_name="Peak",
        program_id="p1",
        start=NOW + HOUR,
        end=NOW + 4 * HOUR,
        level=3,
    )
    limit = _event("limit", [[("IMPORT_CAPACITY_LIMIT", [3.5])]], duration="P9999Y")
    described = describe_event(limit)
    assert (described.start, described.end, described.level) == (NOW, None, None)


def test_next_change_at_a_gap() -> None:
    """Where no price is known the price changes to none, and back at the next interval."""
    morning = _prices("morning", 0.5)
    evening = _prices("evening", 0.5, start=NOW + 2 * HOUR)
    before = outlook([morning, evening], {}, NOW)
    assert (before.next_price_change, before.next_price) == (NOW + HOUR, None)
    during = outlook([morning, evening], {}, NOW + HOUR)
    assert during.price is None
    assert during.next_price_change == NOW + 2 * HOUR
    assert during.next_price == Price(value=0.5, currency=None, event_id="evening")


def test_a_week_of_quarter_hours() -> None:
    """A week of quarter-hour prices gives one forecast interval per quarter hour."""
    values = [round(0.1 + (i % 96) / 100, 2) for i in range(7 * 96)]
    week = _event("week", [[("PRICE", [value])] for value in values], duration="PT15M")
    forecast = outlook([week], {}, NOW).price_forecast
    assert len(forecast) == len(values)
    assert forecast[-1].end == NOW + timedelta(days=7)


def test_winning_price_across_losing_boundaries() -> None:
    """A winning interval stays one forecast interval where losing ones begin and end."""
    flat = _event("flat", [[("PRICE", [0.4])]], duration="P9999Y", priority=1)
    base = _prices("base", 0.5, 0.9, start=NOW + HOUR, priority=5)
    result = outlook([flat, base], {}, NOW)
    assert [(i.start, i.end, i.price.event_id) for i in result.price_forecast] == [
        (NOW, None, "flat")
    ]
    assert (result.next_price_change, result.next_price) == (None, None)


def test_alert_kinds() -> None:
    """The specification's alerts by name; any other ALERT_* is "other"; the rest no alert."""
    assert alert_kind("ALERT_FIRE") is AlertKind.FIRE
    assert alert_kind("ALERT_GRID_EMERGENCY") is AlertKind.GRID_EMERGENCY
    assert alert_kind("ALERT_SOLAR_STORM") is AlertKind.OTHER
    assert alert_kind("SIMPLE") is None


def test_alerts_in_force() -> None:
    """Alerts now, the most urgent first, then the latest; the text is the payload's."""
    works = _event(
        "works", [[("ALERT_OTHER", ["Works on the feeder"])]], start=NOW - HOUR, duration="PT3H"
    )
    wind = _event("wind", [[("ALERT_WIND", ["Gale tonight"])]], start=NOW, duration="PT2H")
    storm = _event(
        "storm", [[("ALERT_WIND", [" "])]], start=NOW - HOUR, duration="PT3H", name="Storm warning"
    )
    later = _event("fire", [[("ALERT_FIRE", ["Fire risk"])]], start=NOW + HOUR)
    result = outlook([works, wind, storm, later], {}, NOW)
    assert [(a.event_id, a.kind, a.message) for a in result.alerts] == [
        ("wind", AlertKind.WIND, "Gale tonight"),
        ("storm", AlertKind.WIND, "Storm warning"),  # no text: the event's name
        ("works", AlertKind.OTHER, "Works on the feeder"),
    ]
    assert result.alerts[0].start == NOW
    assert result.alerts[0].end == NOW + 2 * HOUR
    assert result.demand_response is None
    assert result.next_boundary == NOW + HOUR  # the fire alert begins
    # Announced for later: upcoming until it begins, then in force, then gone once it ends.
    assert [(a.event_id, a.start) for a in result.upcoming_alerts] == [("fire", NOW + HOUR)]
    begun = outlook([later], {}, NOW + HOUR)
    assert [a.kind for a in begun.alerts] == [AlertKind.FIRE]
    assert begun.upcoming_alerts == ()
    over = outlook([later], {}, NOW + 2 * HOUR)
    assert (over.alerts, over.upcoming_alerts) == ((), ())


def test_upcoming_alerts_soonest_first() -> None:
    """Several alerts announced: the soonest first, the most urgent among those at once."""
    wind = _event("wind", [[("ALERT_WIND", ["Gale"])]], start=NOW + 2 * HOUR)
    outage = _event("outage", [[("ALERT_POSSIBLE_OUTAGE", ["Works"])]], start=NOW + 3 * HOUR)
    fire = _event("fire", [[("ALERT_FIRE", ["Fire risk"])]], start=NOW + 2 * HOUR)
    result = outlook([wind, outage, fire], {}, NOW)
    assert [a.event_id for a in result.upcoming_alerts] == ["fire", "wind", "outage"]
    assert result.alerts == ()


def test_ev_charging_share() -> None:
    """The community's share for the home's EV charging, in kW, while its event holds."""
    share = _event("ev-limit-h1", [[("X_EV_CHARGING_LIMIT", [7400])]], duration="PT15M")
    described = Event.parse(
        {
            **share.event.to_json_dict(),
            "programID": "X_COMMUNITY",
            "payloadDescriptors": [{"payloadType": "X_EV_CHARGING_LIMIT", "units": "W"}],
        }
    )
    received = ReceivedEvent(event=described, received_at=NOW)
    assert outlook([received], {}, NOW).ev_charging_limit == pytest.approx(7.4)
    assert outlook([received], {}, NOW + timedelta(minutes=15)).ev_charging_limit is None
    assert outlook([received], {}, NOW).demand_response is None
