"""The scenario file: who may use the grid, what it publishes, and when.

A YAML document validated with voluptuous; every error names the offending key, e.g.
``scenario: events[1].duration: 'PT30' is not an ISO 8601 duration such as PT1H``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from pathlib import Path
import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import voluptuous as vol
import yaml

from smart_community_protocol import (
    Grant,
    ModelError,
    ReportDescriptor,
    TargetError,
    TimingError,
    community_target,
    parse_duration,
)
from smart_community_protocol.validation import check_body

from .oauth import Client, Role
from .targeting import TARGET_FORMS, is_grid_target, is_place_id

DEFAULT_TOKEN_LIFETIME = 3600
DEFAULT_MAX_BODY_SIZE = 1024 * 1024
DEFAULT_DELEGATION_LIFETIME = 86400
DEFAULT_INTERCONNECTION_PROGRAM = "interconnection"
_CLOCK_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


class ScenarioError(ValueError):
    """The scenario is unusable; the message names the key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TariffPeriod:
    """From ``start`` (local time of day) until the next period, energy costs ``price``."""

    start: time
    price: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Tariff:
    """A time-of-use tariff, published as a PRICE program with one event per day."""

    program: str
    timezone: ZoneInfo
    currency: str
    units: str
    periods: tuple[TariffPeriod, ...]
    export_periods: tuple[TariffPeriod, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProgramPlan:
    """A program the grid creates at start (demand-response events belong to one)."""

    name: str
    targets: tuple[str, ...] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventPlan:
    """A demand-response event: published ``publish_after`` s, starting ``start_after`` s
    after the grid starts."""

    name: str
    program: str
    publish_after: float
    start_after: float
    duration: str
    payload_type: str
    value: float | int | str | bool
    units: str | None
    randomize_start: str | None
    priority: int | None
    targets: tuple[str, ...]
    report_descriptors: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookSettings:
    """How the grid calls subscribers back."""

    timeout: float
    attempts: int
    backoff: float
    allow_http_loopback: bool
    # Host names reached over plain HTTP inside a private network (a container network).
    allow_http_hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class DelegationPlan:
    """What the grid lets a VEN client's bridge sign itself, as a grid delegation says it."""

    lifetime: int  # seconds a delegation is valid; a read past half of it brings a new one
    grants: tuple[Grant, ...]
    hosting_kw: Mapping[str, float]  # transformer id -> export capacity the community grants


@dataclass(frozen=True, slots=True, kw_only=True)
class InterconnectionPolicy:
    """How the grid decides grid-connection requests, and where it publishes its grants."""

    program: str
    approve_up_to_kw: float
    decide_after: float  # seconds after the request; 0 decides within it


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """Everything the grid needs to run."""

    grid: str
    signing_key: Path
    token_lifetime: int
    max_body_size: int
    clients: tuple[Client, ...]
    communities: tuple[str, ...]
    tariff: Tariff | None
    programs: tuple[ProgramPlan, ...]
    events: tuple[EventPlan, ...]
    webhooks: WebhookSettings
    # client id -> what the grid delegates to that VEN client's bridge
    delegations: Mapping[str, DelegationPlan] = field(default_factory=dict)
    interconnection: InterconnectionPolicy | None = None

    @property
    def program_names(self) -> tuple[str, ...]:
        """Names of the programs the grid creates at start, the tariff's first."""
        tariff = (self.tariff.program,) if self.tariff else ()
        interconnection = (self.interconnection.program,) if self.interconnection else ()
        return tariff + tuple(program.name for program in self.programs) + interconnection


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise vol.Invalid("expected a number")
    return float(value)


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise vol.Invalid("expected an integer")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise vol.Invalid("expected a non-empty string")
    return value


def _community(value: Any) -> str:
    try:
        community_target(_text(value))
    except TargetError as err:
        raise vol.Invalid(str(err)) from err
    return str(value)


def _clock_time(value: Any) -> time:
    if isinstance(value, int):
        # YAML 1.1 reads an unquoted 12:00 as the sexagesimal number 720.
        raise vol.Invalid('write the time in quotes, e.g. "12:00"')
    match = _CLOCK_TIME.match(value) if isinstance(value, str) else None
    if match is None:
        raise vol.Invalid('expected a time of day "HH:MM"')
    return time(int(match[1]), int(match[2]))


def _duration(value: Any) -> str:
    try:
        parsed = parse_duration(_text(value))
    except TimingError as err:
        raise vol.Invalid(str(err)) from err
    if parsed.delta.total_seconds() <= 0:
        raise vol.Invalid("must be longer than zero")
    return str(value)


def _timezone(value: Any) -> ZoneInfo:
    try:
        return ZoneInfo(_text(value))
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise vol.Invalid(f"'{value}' is not an IANA time zone such as Asia/Shanghai") from err


def _payload_value(value: Any) -> float | int | str | bool:
    if not isinstance(value, int | float | str | bool):
        raise vol.Invalid("expected a number, string or boolean")
    return value


def _report_descriptor(value: Any) -> dict[str, Any]:
    try:
        check_body(ReportDescriptor, value)
        ReportDescriptor.parse(value)
    except ModelError as err:
        raise vol.Invalid(str(err)) from err
    return dict(value)


def _payload_type(value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 128:
        raise vol.Invalid("expected a payload type of 1-128 characters")
    return value


def _place_id(value: Any) -> str:
    if not isinstance(value, str) or not is_place_id(value):
        raise vol.Invalid("expected a transformer id of 1-64 letters, digits, '_' or '-'")
    return value


_PERIOD = vol.Schema({vol.Required("start"): _clock_time, vol.Required("price"): _number})
_TARIFF = vol.Schema(
    {
        vol.Optional("program", default="tou-tariff"): _text,
        vol.Required("timezone"): _timezone,
        vol.Required("currency"): vol.All(
            _text, vol.Match(r"^[A-Z]{3}$", msg="expected an ISO 4217 code such as CNY")
        ),
        vol.Optional("units", default="KWH"): _text,
        vol.Required("periods"): vol.All(
            [_PERIOD], vol.Length(min=1, msg="needs at least one period")
        ),
        vol.Optional("export_periods", default=list): [_PERIOD],
    }
)
_GRANT = vol.Schema(
    {
        vol.Optional("min"): _number,
        vol.Optional("max"): _number,
        vol.Optional("text", default=False): bool,
    }
)
_DELEGATION = vol.Schema(
    {
        vol.Optional("lifetime", default=DEFAULT_DELEGATION_LIFETIME): vol.All(
            _integer, vol.Range(min=60, max=31 * 86400)
        ),
        vol.Required("grants"): vol.All(
            {_payload_type: _GRANT}, vol.Length(min=1, msg="needs at least one payload type")
        ),
        vol.Optional("hosting_kw", default=dict): {_place_id: vol.All(_number, vol.Range(min=0))},
    }
)
_CLIENT = vol.Schema(
    {
        vol.Required("client_id"): _text,
        vol.Required("secret"): _text,
        vol.Required("role"): vol.In([str(role) for role in Role], msg="expected BL or VEN"),
        vol.Optional("community"): _community,
        vol.Optional("delegation"): _DELEGATION,
    }
)
_PROGRAM = vol.Schema({vol.Required("name"): _text, vol.Optional("targets"): [_text]})
_EVENT = vol.Schema(
    {
        vol.Required("name"): _text,
        vol.Required("program"): _text,
        vol.Required("publish_after"): vol.All(_number, vol.Range(min=0)),
        vol.Required("start_after"): vol.All(_number, vol.Range(min=0)),
        vol.Required("duration"): _duration,
        vol.Required("type"): _text,
        vol.Required("value"): _payload_value,
        vol.Optional("units"): _text,
        vol.Optional("randomize_start"): _duration,
        vol.Optional("priority"): vol.All(_integer, vol.Range(min=0)),
        vol.Optional("targets"): vol.All([_text], vol.Length(min=1)),
        vol.Optional("report_descriptors", default=list): [_report_descriptor],
    }
)
_WEBHOOKS = vol.Schema(
    {
        vol.Optional("timeout", default=10.0): vol.All(_number, vol.Range(min=0.1, max=30)),
        vol.Optional("attempts", default=3): vol.All(_integer, vol.Range(min=1, max=10)),
        vol.Optional("backoff", default=1.0): vol.All(_number, vol.Range(min=0, max=60)),
        vol.Optional("allow_http_loopback", default=False): bool,
        vol.Optional("allow_http_hosts", default=list): [_text],
    }
)
_INTERCONNECTION = vol.Schema(
    {
        vol.Optional("program", default=DEFAULT_INTERCONNECTION_PROGRAM): _text,
        vol.Required("approve_up_to_kw"): vol.All(_number, vol.Range(min=0)),
        vol.Optional("decide_after", default=0.0): vol.All(_number, vol.Range(min=0, max=86400)),
    }
)
_SCENARIO = vol.Schema(
    {
        vol.Required("grid"): _text,
        vol.Required("signing_key"): _text,
        vol.Optional("token_lifetime", default=DEFAULT_TOKEN_LIFETIME): vol.All(
            _integer, vol.Range(min=1, max=86400)
        ),
        vol.Optional("max_body_size", default=DEFAULT_MAX_BODY_SIZE): vol.All(
            _integer, vol.Range(min=1024)
        ),
        vol.Required("clients"): vol.All([_CLIENT], vol.Length(min=1)),
        vol.Required("communities"): vol.All([_community], vol.Length(min=1)),
        vol.Optional("tariff"): _TARIFF,
        vol.Optional("programs", default=list): [_PROGRAM],
        vol.Optional("events", default=list): [_EVENT],
        vol.Optional("webhooks", default=dict): _WEBHOOKS,
        vol.Optional("interconnection"): _INTERCONNECTION,
    }
)


def _key(path: list[Any]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}" if text else str(part)
    return text


def _fail(path: list[Any], message: str) -> ScenarioError:
    return ScenarioError(f"scenario: {_key(path)}: {message}")


def load_scenario(path: Path) -> Scenario:
    """Read and validate a scenario file; paths in it are relative to the file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ScenarioError(f"scenario: cannot read {path}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise ScenarioError(f"scenario: {path} is not valid YAML: {err}") from err
    return parse_scenario(data, path.parent)


def parse_scenario(data: object, base: Path) -> Scenario:
    """Validate decoded YAML; raise ScenarioError naming the first bad key."""
    if not isinstance(data, dict):
        raise ScenarioError("scenario: expected a mapping of keys such as grid, clients, events")
    try:
        valid = _SCENARIO(data)
    except vol.MultipleInvalid as err:
        first = err.errors[0]
        raise _fail(first.path, first.msg) from err
    communities = tuple(valid["communities"])
    _check_unique(communities, "communities", None)
    clients = tuple(
        _client(entry, index, communities) for index, entry in enumerate(valid["clients"])
    )
    _check_unique([client.client_id for client in clients], "clients", "client_id")
    delegations = {
        client.client_id: _delegation(entry["delegation"], index, client)
        for index, (entry, client) in enumerate(zip(valid["clients"], clients, strict=True))
        if "delegation" in entry
    }
    tariff = _tariff(valid["tariff"]) if "tariff" in valid else None
    interconnection = (
        InterconnectionPolicy(**valid["interconnection"]) if "interconnection" in valid else None
    )
    programs = tuple(
        ProgramPlan(
            name=entry["name"],
            targets=_targets(entry.get("targets"), communities, ["programs", index, "targets"]),
        )
        for index, entry in enumerate(valid["programs"])
    )
    names = ([tariff.program] if tariff else []) + [program.name for program in programs]
    if len(set(names)) != len(names):
        raise _fail(["programs"], "program names must be unique (the tariff's included)")
    if interconnection is not None and interconnection.program in names:
        raise _fail(
            ["interconnection", "program"],
            f"'{interconnection.program}' is already the name of another program",
        )
    events = tuple(
        _event(entry, index, communities, names) for index, entry in enumerate(valid["events"])
    )
    webhooks = valid["webhooks"]
    return Scenario(
        grid=valid["grid"],
        signing_key=(base / valid["signing_key"]).resolve(),
        token_lifetime=valid["token_lifetime"],
        max_body_size=valid["max_body_size"],
        clients=clients,
        communities=communities,
        tariff=tariff,
        programs=programs,
        events=events,
        webhooks=WebhookSettings(
            timeout=webhooks["timeout"],
            attempts=webhooks["attempts"],
            backoff=webhooks["backoff"],
            allow_http_loopback=webhooks["allow_http_loopback"],
            allow_http_hosts=tuple(webhooks["allow_http_hosts"]),
        ),
        delegations=delegations,
        interconnection=interconnection,
    )


def _check_unique(values: list[str] | tuple[str, ...], section: str, key: str | None) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise _fail([section, index, *([key] if key else [])], f"'{value}' appears twice")
        seen.add(value)


def _client(entry: dict[str, Any], index: int, communities: tuple[str, ...]) -> Client:
    role = Role(entry["role"])
    community = entry.get("community")
    if role is Role.VEN and community is None:
        raise _fail(
            ["clients", index, "community"], "a VEN client must name the community it serves"
        )
    if role is Role.BL and community is not None:
        raise _fail(
            ["clients", index, "community"], "a BL client serves the whole grid, not one community"
        )
    if community is not None and community not in communities:
        raise _fail(["clients", index, "community"], f"'{community}' is not listed in communities")
    return Client(
        client_id=entry["client_id"], secret=entry["secret"], role=role, community=community
    )


def _delegation(entry: dict[str, Any], index: int, client: Client) -> DelegationPlan:
    path: list[Any] = ["clients", index, "delegation"]
    if client.role is not Role.VEN:
        raise _fail(path, "only a VEN client (a community's bridge) can hold a delegation")
    grants = []
    for payload_type, bounds in entry["grants"].items():
        where = [*path, "grants", payload_type]
        if ("min" in bounds) != ("max" in bounds):
            raise _fail(where, "give both min and max (numbers), or neither")
        if "min" not in bounds and not bounds["text"]:
            raise _fail(where, "grants nothing: give min and max, or text: true")
        if "min" in bounds and bounds["min"] > bounds["max"]:
            raise _fail([*where, "min"], f"{bounds['min']:g} is above max {bounds['max']:g}")
        grants.append(
            Grant(payload_type, bounds["min"], bounds["max"], bounds["text"])
            if "min" in bounds
            else Grant(payload_type, text=True)
        )
    return DelegationPlan(
        lifetime=entry["lifetime"], grants=tuple(grants), hosting_kw=dict(entry["hosting_kw"])
    )


def _tariff(entry: dict[str, Any]) -> Tariff:
    periods = {}
    for key in ("periods", "export_periods"):
        listed = [TariffPeriod(start=item["start"], price=item["price"]) for item in entry[key]]
        for index, period in enumerate(listed):
            if index == 0 and period.start != time(0, 0):
                raise _fail(["tariff", key, 0, "start"], 'the first period must start at "00:00"')
            if index > 0 and period.start <= listed[index - 1].start:
                raise _fail(["tariff", key, index, "start"], "periods must be in time order")
        periods[key] = tuple(listed)
    return Tariff(
        program=entry["program"],
        timezone=entry["timezone"],
        currency=entry["currency"],
        units=entry["units"],
        periods=periods["periods"],
        export_periods=periods["export_periods"],
    )


def _targets(
    targets: list[str] | None, communities: tuple[str, ...], path: list[Any]
) -> tuple[str, ...] | None:
    if targets is None:
        return None
    for index, target in enumerate(targets):
        if not is_grid_target(target, communities):
            raise _fail(
                [*path, index], f"'{target}' is not a target of this grid; use {TARGET_FORMS}"
            )
    return tuple(targets)


def _event(
    entry: dict[str, Any], index: int, communities: tuple[str, ...], programs: list[str]
) -> EventPlan:
    if entry["program"] not in programs:
        known = ", ".join(programs) or "none"
        raise _fail(
            ["events", index, "program"],
            f"'{entry['program']}' is not a program of this scenario ({known})",
        )
    targets = _targets(entry.get("targets"), communities, ["events", index, "targets"])
    return EventPlan(
        name=entry["name"],
        program=entry["program"],
        publish_after=entry["publish_after"],
        start_after=entry["start_after"],
        duration=entry["duration"],
        payload_type=entry["type"],
        value=entry["value"],
        units=entry.get("units"),
        randomize_start=entry.get("randomize_start"),
        priority=entry.get("priority"),
        # Without targets an event is for every community of the grid.
        targets=targets or tuple(community_target(c) for c in communities),
        report_descriptors=tuple(entry["report_descriptors"]),
    )
