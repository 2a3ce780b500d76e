"""The scenario file: validation that names the bad key, and the tariff it describes."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from smart_community_grid.scenario import (
    InterconnectionPolicy,
    ScenarioError,
    load_scenario,
    parse_scenario,
)
from smart_community_grid.tariff import format_duration, tariff_day_event
from smart_community_protocol import Event, Grant, parse_datetime, parse_duration

from .conftest import scenario_dict

REPO = Path(__file__).resolve().parents[2]


def test_demo_scenario_is_valid() -> None:
    scenario = load_scenario(REPO / "scenarios" / "demo.yaml")
    assert scenario.grid == "demo-grid"
    assert scenario.communities == ("demo",)
    assert {c.client_id: c.role for c in scenario.clients} == {
        "bl-demo": "BL",
        "bridge-demo": "VEN",
    }
    assert scenario.tariff is not None
    assert scenario.tariff.currency == "CNY"
    assert 3 <= len(scenario.tariff.periods) <= 4
    assert scenario.tariff.export_periods
    (event,) = scenario.events
    assert (event.payload_type, event.value, event.duration) == ("SIMPLE", 2, "PT30M")
    assert event.publish_after < event.start_after
    assert event.targets == ("community:demo",)
    assert scenario.webhooks.allow_http_loopback
    delegation = scenario.delegations["bridge-demo"]
    assert delegation.lifetime == 86400
    assert {grant.payload_type: grant for grant in delegation.grants} == {
        "EXPORT_CAPACITY_LIMIT": Grant("EXPORT_CAPACITY_LIMIT", 0, 10),
        "IMPORT_CAPACITY_LIMIT": Grant("IMPORT_CAPACITY_LIMIT", 1.4, 22),
        "X_EV_CHARGING_LIMIT": Grant("X_EV_CHARGING_LIMIT", 1.4, 22),
        "ALERT_OTHER": Grant("ALERT_OTHER", text=True),
    }
    assert delegation.hosting_kw == {"transformer-1": 60}
    assert scenario.interconnection == InterconnectionPolicy(
        program="demo-interconnection", approve_up_to_kw=10, decide_after=30
    )
    assert scenario.program_names[-1] == "demo-interconnection"


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ScenarioError) as raised:
        parse_scenario(data, Path())
    return str(raised.value)


def _event(**fields: Any) -> dict[str, Any]:
    event = {
        "name": "peak",
        "program": "dr",
        "publish_after": 1,
        "start_after": 2,
        "duration": "PT30M",
        "type": "SIMPLE",
        "value": 2,
    }
    event.update(fields)
    return event


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"grid": None}, "scenario: grid: expected a non-empty string"),
        ({"surprise": 1}, "scenario: surprise: "),
        ({"token_lifetime": "1h"}, "scenario: token_lifetime: expected an integer"),
        ({"communities": ["ok", "not ok"]}, "scenario: communities[1]: community id 'not ok'"),
        ({"communities": ["a", "a"]}, "scenario: communities[1]: 'a' appears twice"),
        (
            {"events": [_event(), _event(duration="PT30")]},
            "scenario: events[1].duration: 'PT30' is not an ISO 8601 duration",
        ),
        (
            {"events": [_event(program="nope")]},
            "scenario: events[0].program: 'nope' is not a program",
        ),
        (
            {"events": [_event(targets=["community:zz"])]},
            "scenario: events[0].targets[0]: 'community:zz'",
        ),
        ({"events": [_event(publish_after=-1)]}, "scenario: events[0].publish_after:"),
        ({"events": [_event(value=[1])]}, "scenario: events[0].value: expected a number"),
        (
            {"events": [_event(report_descriptors=[{"units": "KWH"}])]},
            "scenario: events[0].report_descriptors[0]: payloadType: required",
        ),
        (
            {"clients": [{"client_id": "v", "secret": "s", "role": "VEN"}]},
            "scenario: clients[0].community: a VEN client must name the community",
        ),
        (
            {"clients": [{"client_id": "v", "secret": "s", "role": "VTN"}]},
            "scenario: clients[0].role: expected BL or VEN",
        ),
        (
            {"clients": [{"client_id": "v", "secret": "s", "role": "VEN", "community": "c9"}]},
            "scenario: clients[0].community: 'c9' is not listed in communities",
        ),
        ({"webhooks": {"attempts": 0}}, "scenario: webhooks.attempts:"),
    ],
)
def test_errors_name_the_key(change: dict[str, Any], message: str) -> None:
    data = scenario_dict(**change)
    if change.get("grid", "") is None:
        del data["grid"]
        message = "scenario: grid: required key not provided"
    assert _error(data).startswith(message)


@pytest.mark.parametrize(
    ("periods", "message"),
    [
        (
            [{"start": "01:00", "price": 1}],
            'tariff.periods[0].start: the first period must start at "00:00"',
        ),
        (
            [
                {"start": "00:00", "price": 1},
                {"start": "09:00", "price": 2},
                {"start": "08:00", "price": 3},
            ],
            "tariff.periods[2].start: periods must be in time order",
        ),
        ([{"start": "00:00", "price": "cheap"}], "tariff.periods[0].price: expected a number"),
        (
            [{"start": "25:00", "price": 1}],
            'tariff.periods[0].start: expected a time of day "HH:MM"',
        ),
    ],
)
def test_tariff_errors_name_the_period(periods: list[dict[str, Any]], message: str) -> None:
    data = scenario_dict()
    data["tariff"]["periods"] = periods
    assert _error(data) == f"scenario: {message}"


def _delegating(**delegation: Any) -> dict[str, Any]:
    clients = scenario_dict()["clients"]
    clients[1]["delegation"] = {"grants": {"EXPORT_CAPACITY_LIMIT": {"min": 0, "max": 10}}}
    clients[1]["delegation"].update(delegation)
    return scenario_dict(clients=clients)


def test_delegation_defaults() -> None:
    scenario = parse_scenario(_delegating(), Path())
    assert list(scenario.delegations) == ["ven1"]
    plan = scenario.delegations["ven1"]
    assert (plan.lifetime, plan.grants, plan.hosting_kw) == (
        86400,
        (Grant("EXPORT_CAPACITY_LIMIT", 0, 10),),
        {},
    )
    assert scenario.interconnection is None


D = "scenario: clients[1].delegation"


@pytest.mark.parametrize(
    ("delegation", "message"),
    [
        ({"lifetime": 10}, f"{D}.lifetime: value must be at least 60"),
        ({"lifetime": "1d"}, f"{D}.lifetime: expected an integer"),
        ({"grants": {}}, f"{D}.grants: needs at least one payload type"),
        ({"grants": {"X": {}}}, f"{D}.grants.X: grants nothing: give min and max, or text: true"),
        (
            {"grants": {"X": {"min": 1}}},
            f"{D}.grants.X: give both min and max (numbers), or neither",
        ),
        ({"grants": {"X": {"min": 5, "max": 1}}}, f"{D}.grants.X.min: 5 is above max 1"),
        ({"grants": {"X": {"max": "ten", "min": 0}}}, f"{D}.grants.X.max: expected a number"),
        ({"grants": {"X": {"text": "yes"}}}, f"{D}.grants.X.text: expected bool"),
        ({"grants": {"X": {"step": 1}}}, f"{D}.grants.X.step: not a valid option"),
        (
            {"hosting_kw": {"t 1": 5}},
            f"{D}.hosting_kw.t 1: expected a transformer id of 1-64 letters, digits, '_' or '-'",
        ),
        ({"hosting_kw": {"t1": -5}}, f"{D}.hosting_kw.t1: value must be at least 0"),
        ({"hosting": {}}, f"{D}.hosting: not a valid option, did you mean 'hosting_kw'?"),
    ],
)
def test_delegation_errors_name_the_key(delegation: dict[str, Any], message: str) -> None:
    assert _error(_delegating(**delegation)) == message


def test_only_a_ven_client_holds_a_delegation() -> None:
    data = scenario_dict()
    data["clients"][0]["delegation"] = {"grants": {"X": {"text": True}}}
    assert _error(data) == (
        "scenario: clients[0].delegation: only a VEN client (a community's bridge) can hold"
        " a delegation"
    )


def test_interconnection_defaults() -> None:
    scenario = parse_scenario(scenario_dict(interconnection={"approve_up_to_kw": 7.5}), Path())
    assert scenario.interconnection == InterconnectionPolicy(
        program="interconnection", approve_up_to_kw=7.5, decide_after=0
    )
    assert scenario.program_names == ("tou", "dr", "interconnection")


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({}, "interconnection.approve_up_to_kw: required key not provided"),
        ({"approve_up_to_kw": -1}, "interconnection.approve_up_to_kw: value must be at least 0"),
        ({"approve_up_to_kw": 5, "decide_after": -1}, "interconnection.decide_after: value"),
        ({"approve_up_to_kw": 5, "program": ""}, "interconnection.program: expected a non-empty"),
        (
            {"approve_up_to_kw": 5, "program": "dr"},
            "interconnection.program: 'dr' is already the name of another program",
        ),
        ({"approve_up_to_kw": 5, "auto": True}, "interconnection.auto: not a valid option"),
    ],
)
def test_interconnection_errors_name_the_key(section: dict[str, Any], message: str) -> None:
    assert _error(scenario_dict(interconnection=section)).startswith(f"scenario: {message}")


def test_unquoted_time_gets_a_hint() -> None:
    data = scenario_dict()
    data["tariff"]["periods"][1]["start"] = 720  # how YAML 1.1 reads an unquoted 12:00
    message = 'scenario: tariff.periods[1].start: write the time in quotes, e.g. "12:00"'
    assert _error(data) == message


def test_unreadable_and_invalid_files(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("grid: [unclosed")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(broken)


def _tariff(zone: str, periods: list[tuple[str, float]], export: list[tuple[str, float]]) -> Any:
    data = scenario_dict()
    data["tariff"] = {
        "timezone": zone,
        "currency": "EUR",
        "periods": [{"start": s, "price": p} for s, p in periods],
        "export_periods": [{"start": s, "price": p} for s, p in export],
    }
    tariff = parse_scenario(data, Path()).tariff
    assert tariff is not None
    return tariff


def _spans(body: dict[str, Any]) -> list[tuple[str, timedelta, dict[str, Any]]]:
    return [
        (
            interval["intervalPeriod"]["start"],
            parse_duration(interval["intervalPeriod"]["duration"]).delta,
            {p["type"]: p["values"][0] for p in interval["payloads"]},
        )
        for interval in body["intervals"]
    ]


def test_tariff_day_merges_import_and_export_periods() -> None:
    tariff = _tariff(
        "Asia/Shanghai",
        [("00:00", 0.3), ("08:00", 0.6), ("18:00", 1.0)],
        [("00:00", 0.4), ("12:00", 0.2)],
    )
    body = tariff_day_event(tariff, "p1", date(2026, 6, 1))
    assert body["programID"] == "p1"
    assert [d["payloadType"] for d in body["payloadDescriptors"]] == ["PRICE", "EXPORT_PRICE"]
    assert all(d["currency"] == "EUR" and d["units"] == "KWH" for d in body["payloadDescriptors"])
    assert _spans(body) == [
        ("2026-05-31T16:00:00Z", timedelta(hours=8), {"PRICE": 0.3, "EXPORT_PRICE": 0.4}),
        ("2026-06-01T00:00:00Z", timedelta(hours=4), {"PRICE": 0.6, "EXPORT_PRICE": 0.4}),
        ("2026-06-01T04:00:00Z", timedelta(hours=6), {"PRICE": 0.6, "EXPORT_PRICE": 0.2}),
        ("2026-06-01T10:00:00Z", timedelta(hours=6), {"PRICE": 1.0, "EXPORT_PRICE": 0.2}),
    ]
    Event.parse(
        {
            **body,
            "id": "e",
            "objectType": "EVENT",
            "createdDateTime": "2026-01-01T00:00:00Z",
            "modificationDateTime": "2026-01-01T00:00:00Z",
        }
    )


def test_tariff_day_follows_daylight_saving_time() -> None:
    tariff = _tariff("Europe/Berlin", [("00:00", 0.2), ("12:00", 0.3)], [])
    body = tariff_day_event(tariff, "p1", date(2026, 3, 29))  # clocks go forward at 02:00
    spans = _spans(body)
    assert sum((duration for _, duration, _ in spans), timedelta()) == timedelta(hours=23)
    end = parse_datetime(spans[-1][0]) + spans[-1][1]
    assert end.astimezone(ZoneInfo("Europe/Berlin")).date() == date(2026, 3, 30)
    assert "EXPORT_PRICE" not in spans[0][2]


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "PT0S"), (3600, "PT1H"), (5400, "PT1H30M"), (61, "PT1M1S")]
)
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(timedelta(seconds=seconds)) == text
