"""What the home reports, pure: history, telemetry values, baseline, report bodies, schedules."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
import io
from typing import Any

import pytest

from custom_components.smart_community.audit import AuditEntry, AuditLog
from custom_components.smart_community.protocol import (
    Event,
    OperatingState,
    ReportRequest,
    format_datetime,
)
from custom_components.smart_community.protocol.validation import check_body
from custom_components.smart_community.uplink import (
    MAX_HOLD,
    BaselineMethod,
    History,
    Progress,
    Quantity,
    Reduction,
    Span,
    connection_of,
    connection_request,
    due_batches,
    event_reduction,
    fault_report,
    net_energy,
    net_power,
    payload_value,
    pending_connection,
    reduction_report,
    requested,
    requests_telemetry,
    response_report,
    telemetry_report,
)

T0 = datetime(2026, 6, 1, 18, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def history(samples: dict[Quantity, list[tuple[float, float]]]) -> History:
    """A history from (minute, value) samples per quantity."""
    found = History()
    moments = sorted({m for series in samples.values() for m, _ in series})
    for moment in moments:
        found.add(
            minutes(moment),
            {q: v for q, series in samples.items() for m, v in series if m == moment},
        )
    return found


def assert_report(body: dict[str, Any] | None) -> dict[str, Any]:
    """The body is a reportRequest the bridge accepts, as its own validation checks it."""
    assert body is not None
    check_body(ReportRequest, body)
    ReportRequest.parse(body)
    return body


def payloads(body: dict[str, Any], interval: int = 0) -> dict[str, list[Any]]:
    found = body["resources"][0]["intervals"][interval]["payloads"]
    return {p["type"]: p["values"] for p in found}


def test_mean_holds_each_reading_until_the_next_but_not_across_a_gap() -> None:
    """A reading holds until the next one, for at most MAX_HOLD; a gap is no data."""
    found = history({Quantity.GRID_IMPORT_POWER: [(0, 1.0), (1, 3.0), (30, 5.0)]})
    assert found.mean(Quantity.GRID_IMPORT_POWER, minutes(0), minutes(2)) == pytest.approx(2.0)
    # 1.0 for a minute, 3.0 for MAX_HOLD, then nothing until 30, then 5.0 to 31.
    held = MAX_HOLD.total_seconds() / 60
    expected = (1.0 + 3.0 * held + 5.0) / (2 + held)
    assert found.mean(Quantity.GRID_IMPORT_POWER, minutes(0), minutes(31)) == pytest.approx(
        expected
    )
    assert found.mean(Quantity.GRID_IMPORT_POWER, minutes(10), minutes(20)) is None
    assert found.mean(Quantity.PV_POWER, minutes(0), minutes(2)) is None
    assert found.at(Quantity.GRID_IMPORT_POWER, minutes(1.5)) == 3.0
    assert found.at(Quantity.GRID_IMPORT_POWER, minutes(20)) is None
    assert found.at(Quantity.GRID_IMPORT_POWER, minutes(-1)) is None


def test_history_forgets_old_readings_and_survives_storage() -> None:
    """Only the kept span stays (plus the reading that holds into it); storage round-trips."""
    found = History(keep=timedelta(minutes=10))
    for minute in range(30):
        found.add(minutes(minute), {Quantity.PV_POWER: float(minute)})
    found.add(minutes(29), {Quantity.PV_POWER: 100.0})  # the same moment read again
    stored = found.to_json()
    assert [v for _, v in stored[Quantity.PV_POWER]] == [*map(float, range(18, 29)), 100.0]
    again = History()
    again.load(stored)
    assert again.at(Quantity.PV_POWER, minutes(29)) == 100.0
    assert again.has(Quantity.PV_POWER)
    assert not again.has(Quantity.EV_POWER)


def test_net_power_and_energy() -> None:
    """Net import is import less export; energy comes from the meters where there are some."""
    power_only = history(
        {
            Quantity.GRID_IMPORT_POWER: [(0, 4.0), (1, 4.0)],
            Quantity.GRID_EXPORT_POWER: [(0, 1.0), (1, 1.0)],
        }
    )
    assert net_power(power_only, minutes(0), minutes(2)) == pytest.approx(3.0)
    assert net_energy(power_only, minutes(0), minutes(2)) == pytest.approx(0.1)
    assert net_power(History(), minutes(0), minutes(2)) is None
    assert net_energy(History(), minutes(0), minutes(2)) is None

    meters = history(
        {
            Quantity.GRID_IMPORT_POWER: [(0, 1.0)],
            Quantity.GRID_IMPORT_ENERGY: [(0, 100.0), (60, 102.5)],
            Quantity.GRID_EXPORT_ENERGY: [(0, 50.0), (60, 50.5)],
        }
    )
    assert net_energy(meters, minutes(0), minutes(60)) == pytest.approx(2.0)
    # An export meter without readings at both ends: fall back to power.
    partial = history(
        {
            Quantity.GRID_IMPORT_POWER: [(0, 6.0), (4, 6.0)],
            Quantity.GRID_IMPORT_ENERGY: [(0, 100.0), (5, 100.4)],
            Quantity.GRID_EXPORT_ENERGY: [(-10, 50.0)],
        }
    )
    assert net_energy(partial, minutes(0), minutes(5)) == pytest.approx(0.5)
    # A meter that went backwards (reset) is no reading.
    reset = history(
        {
            Quantity.GRID_IMPORT_POWER: [(0, 12.0), (4, 12.0)],
            Quantity.GRID_IMPORT_ENERGY: [(0, 100.0), (5, 1.0)],
        }
    )
    assert net_energy(reset, minutes(0), minutes(5)) == pytest.approx(1.0)


def test_payload_values() -> None:
    """Each report payload type from its quantity."""
    found = history(
        {
            Quantity.GRID_IMPORT_POWER: [(0, 2.0)],
            Quantity.GRID_IMPORT_ENERGY: [(0, 10.0), (5, 10.2)],
            Quantity.PV_POWER: [(0, 3.0)],
            Quantity.EV_POWER: [(0, 7.0)],
            Quantity.BATTERY_LEVEL: [(0, 80.0), (4, 81.0)],
        }
    )
    start, end = minutes(0), minutes(5)
    assert payload_value(found, "DEMAND", start, end) == pytest.approx(2.0)
    assert payload_value(found, "USAGE", start, end) == pytest.approx(0.2)
    assert payload_value(found, "READING", start, end) == 10.2
    assert payload_value(found, "STORAGE_CHARGE_LEVEL", start, end) == 81.0
    assert payload_value(found, "X_PV_POWER", start, end) == 3.0
    assert payload_value(found, "X_EV_POWER", start, end) == 7.0
    assert payload_value(found, "GHG", start, end) is None


def test_telemetry_report_carries_what_was_measured() -> None:
    """Intervals with data only; units as the descriptor asks; nothing without data."""
    found = history({Quantity.GRID_IMPORT_POWER: [(0, 2.0), (4, 2.0)], Quantity.PV_POWER: [(0, 1)]})
    body = assert_report(
        telemetry_report(
            home="h1",
            event_id="X_TELEMETRY",
            program_id=None,
            history=found,
            spans=[
                Span(start=minutes(0), end=minutes(5)),
                Span(start=minutes(30), end=minutes(35)),  # no readings: left out
                Span(start=minutes(5), end=None),  # not over: left out
            ],
            payload_types=["DEMAND", "X_PV_POWER", "STORAGE_CHARGE_LEVEL", "OPERATING_STATE"],
        )
    )
    assert body["eventID"] == "X_TELEMETRY"
    assert "programID" not in body
    assert body["resources"][0]["resourceName"] == "h1"
    [interval] = body["resources"][0]["intervals"]
    assert interval["intervalPeriod"] == {"start": format_datetime(T0), "duration": "PT5M"}
    assert payloads(body) == {"DEMAND": [2.0], "X_PV_POWER": [1.0]}
    units = {d["payloadType"]: d["units"] for d in body["payloadDescriptors"]}
    assert units == {"DEMAND": "KW", "X_PV_POWER": "KW", "STORAGE_CHARGE_LEVEL": "PERCENT"}
    assert (
        telemetry_report(
            home="h1",
            event_id="X_TELEMETRY",
            program_id=None,
            history=History(),
            spans=[Span(start=minutes(0), end=minutes(5))],
            payload_types=["DEMAND"],
        )
        is None
    )


def test_response_report() -> None:
    """Participation is an OPERATING_STATE over the home's part in the event."""
    body = assert_report(
        response_report(
            home="h1",
            event_id="peak",
            program_id="peak-saver",
            state=OperatingState.RUNNING_OPTED_OUT,
            span=Span(start=T0, end=None),
        )
    )
    assert body["programID"] == "peak-saver"
    assert payloads(body) == {"OPERATING_STATE": ["RUNNING_OPTED_OUT"]}
    assert body["resources"][0]["intervals"][0]["intervalPeriod"]["duration"] == "P9999Y"


def test_prior_hour_baseline() -> None:
    """The hour before the event, scaled to the event, against what the event used."""
    found = history(
        {
            Quantity.GRID_IMPORT_POWER: [(m, 3.0) for m in range(-60, 0)]
            + [(m, 1.0) for m in range(30)]
        }
    )
    reduction = event_reduction(
        found, event_id="peak", program_id="peak-saver", start=T0, end=minutes(30)
    )
    assert reduction.method is BaselineMethod.PRIOR_HOUR
    assert reduction.baseline == pytest.approx(1.5)
    assert reduction.measured == pytest.approx(0.5)
    assert reduction.reduction == pytest.approx(1.0)
    assert reduction.delta_usage == pytest.approx(-1.0)
    assert Reduction.from_json(reduction.to_json()) == reduction

    body = assert_report(reduction_report(home="h1", reduction=reduction))
    assert payloads(body) == {"BASELINE": [1.5], "DELTA_USAGE": [-1.0]}
    period = body["resources"][0]["intervals"][0]["intervalPeriod"]
    assert period == {"start": format_datetime(T0), "duration": "PT30M"}


def test_device_estimate_without_grid_sensors() -> None:
    """Without a grid sensor, the reduction is the energy of the load held shed."""
    found = history({Quantity.SHED_POWER: [(m, 2.0) for m in range(30)] + [(30, 0.0)]})
    reduction = event_reduction(
        found, event_id="peak", program_id="peak-saver", start=T0, end=minutes(30)
    )
    assert reduction.method is BaselineMethod.DEVICE_ESTIMATE
    assert reduction.baseline is None
    assert reduction.reduction == pytest.approx(1.0)
    body = assert_report(reduction_report(home="h1", reduction=reduction))
    assert payloads(body) == {"DELTA_USAGE": [-1.0]}
    nothing = event_reduction(
        History(), event_id="peak", program_id="peak-saver", start=T0, end=minutes(30)
    )
    assert nothing.reduction == 0


def test_fault_report() -> None:
    """A fault is OPERATING_STATE ERROR with its code, and its description if any."""
    body = assert_report(fault_report(home="h1", code="LOSS_OF_SUPPLY", detail="dark", at=T0))
    assert body["eventID"] == "X_FAULT"
    assert payloads(body) == {
        "OPERATING_STATE": ["ERROR"],
        "X_FAULT_CODE": ["LOSS_OF_SUPPLY"],
        "X_FAULT_DETAIL": ["dark"],
    }
    short = assert_report(fault_report(home="h1", code="OTHER", detail=None, at=T0))
    assert "X_FAULT_DETAIL" not in payloads(short)


def report_event(descriptors: list[dict[str, Any]], *, intervals: int = 4) -> Event:
    """An event of 15-minute intervals from T0 with report descriptors."""
    return Event.parse(
        {
            "id": "peak",
            "objectType": "EVENT",
            "createdDateTime": format_datetime(T0),
            "modificationDateTime": format_datetime(T0),
            "programID": "peak-saver",
            "intervalPeriod": {"start": format_datetime(T0), "duration": "PT15M"},
            "intervals": [
                {"id": i, "payloads": [{"type": "SIMPLE", "values": [1]}]} for i in range(intervals)
            ],
            "reportDescriptors": descriptors,
        }
    )


def run_batches(event: Event, moments: list[float]) -> list[list[tuple[float, float]]]:
    """The batches reported at each moment (minutes), as (start, end) minutes."""
    (descriptor,) = requested(event)
    progress = Progress()
    sent = []
    for moment in moments:
        batches, progress = due_batches(
            event, descriptor, received_at=T0, progress=progress, now=minutes(moment)
        )
        sent.extend(
            [((s.start - T0) / MINUTE, ((s.end or T0) - T0) / MINUTE) for s in batch]
            for batch in batches
        )
    return sent


def test_a_descriptor_with_a_frequency_is_answered_interval_by_interval() -> None:
    """frequency 1 and no cap: a report after each interval ends."""
    event = report_event([{"payloadType": "USAGE", "frequency": 1, "repeat": -1}])
    assert run_batches(event, [10, 15, 20, 31, 61]) == [
        [(0, 15)],
        [(15, 30)],
        [(30, 45)],
        [(45, 60)],
    ]


def test_a_default_descriptor_is_answered_once_at_the_end() -> None:
    """Neither frequency nor numIntervals: one report of all intervals at the end."""
    event = report_event([{"payloadType": "DEMAND"}])
    assert run_batches(event, [30, 59, 60, 90]) == [[(0, 15), (15, 30), (30, 45), (45, 60)]]


def test_num_intervals_repeat_and_start_interval() -> None:
    """Batches of numIntervals, capped by repeat, from startInterval on."""
    event = report_event(
        [{"payloadType": "DEMAND", "numIntervals": 2, "repeat": 1, "startInterval": 1}]
    )
    assert run_batches(event, [45, 60, 75]) == [[(15, 30), (30, 45)]]


def test_an_endless_event_is_answered_interval_by_interval() -> None:
    """An event without end is reported as its intervals end."""
    event = Event.parse(
        {
            **report_event([{"payloadType": "DEMAND", "repeat": -1}], intervals=1).to_json_dict(),
            "duration": "P9999Y",
        }
    )
    assert run_batches(event, [15, 30]) == [[(0, 15)], [(15, 30)]]


def test_what_an_event_asks_for() -> None:
    """Forecasts and payloads the home cannot measure are not answered; duplicates once."""
    event = report_event(
        [
            {"payloadType": "DEMAND"},
            {"payloadType": "DEMAND", "frequency": 1},
            {"payloadType": "USAGE", "historical": False},
            {"payloadType": "SETPOINT"},
        ]
    )
    assert [d.payload_type for d in requested(event)] == ["DEMAND"]
    assert requests_telemetry(event, received_at=T0, start=minutes(10), end=minutes(15))
    assert requests_telemetry(event, received_at=T0, start=minutes(-5), end=minutes(1))
    assert not requests_telemetry(event, received_at=T0, start=minutes(60), end=minutes(65))
    assert not requests_telemetry(event, received_at=T0, start=minutes(-5), end=minutes(0))
    assert not requests_telemetry(
        report_event([]), received_at=T0, start=minutes(10), end=minutes(15)
    )


def test_grid_connection_request_and_answers() -> None:
    """The resource a PV request posts, and the bridge's answers read back."""
    body = connection_request(
        home="h1", name="Roof", capacity=6.0, make="Acme", model="S6", serial="SN1"
    )
    assert body == {
        "objectType": "VEN_RESOURCE_REQUEST",
        "venID": "h1",
        "resourceName": "Roof",
        "attributes": [
            {"type": "MAX_POWER_EXPORT", "values": [6.0]},
            {"type": "X_INVERTER", "values": ["Acme", "S6", "SN1"]},
        ],
    }
    stored = {"id": "r1", "venID": "h1", **body, "X_CONNECTION_STATUS": "REQUESTED"}
    connection = connection_of(stored)
    assert connection is not None
    assert (connection.resource_id, connection.status, connection.capacity, connection.serial) == (
        "r1",
        "REQUESTED",
        6.0,
        "SN1",
    )
    as_attribute = {
        "id": "r2",
        "resourceName": "Roof",
        "attributes": [*body["attributes"], {"type": "X_CONNECTION_STATUS", "values": ["GRANTED"]}],
    }
    granted = connection_of(as_attribute)
    assert granted is not None
    assert granted.status == "GRANTED"
    assert connection_of({"id": "r3", "resourceName": "meter", "attributes": []}) is None
    assert connection_of({"resourceName": "no id"}) is None

    refused = {**stored, "id": "r0", "X_CONNECTION_STATUS": "REFUSED"}
    assert pending_connection([refused], "SN1") is None
    pending = pending_connection([refused, stored], "SN1")
    assert pending is not None
    assert pending.resource_id == "r1"
    assert pending_connection([stored], "SN2") is None


def test_audit_log_is_bounded_and_exports_csv() -> None:
    """The oldest entries go first; the CSV has a header and defuses formula cells."""
    log = AuditLog(limit=3)
    for index in range(5):
        log.append(
            AuditEntry(
                time=minutes(index),
                event="peak",
                entity=f"switch.{index}",
                action="shed",
                before="on",
                after="off",
                outcome="=HYPERLINK()" if index == 4 else "done",
            )
        )
    assert len(log) == 3
    assert [e.entity for e in log] == ["switch.2", "switch.3", "switch.4"]
    rows = list(csv.reader(io.StringIO(log.to_csv())))
    assert rows[0] == ["time", "event", "entity", "action", "before", "after", "outcome"]
    assert rows[1] == [format_datetime(minutes(2)), "peak", "switch.2", "shed", "on", "off", "done"]
    assert rows[3][-1] == "'=HYPERLINK()"
    again = AuditLog(AuditEntry.from_json(e) for e in log.to_json())
    assert list(again) == list(log)
