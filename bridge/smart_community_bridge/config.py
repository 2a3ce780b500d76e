"""Bridge configuration: a YAML file, then environment variables, validated with voluptuous.

Environment variables override file values: ``SMART_COMMUNITY_BRIDGE_<KEY>`` for top-level keys
and ``SMART_COMMUNITY_BRIDGE_<SECTION>__<KEY>`` for nested ones, e.g.
``SMART_COMMUNITY_BRIDGE_GRID__CLIENT_SECRET``. Errors name the offending key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
import re
from typing import Any

import voluptuous as vol
import yaml

from smart_community_protocol.push import Reconnect

ENV_PREFIX = "SMART_COMMUNITY_BRIDGE_"
_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ConfigError(ValueError):
    """The configuration is unusable; the message names the key."""


def _identifier(value: Any) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise vol.Invalid("must be 1-64 letters, digits, '_' or '-'")
    return value


def _url(value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+", value):
        raise vol.Invalid("must be an http(s) URL")
    return value.rstrip("/")


def _ordered_backoff(value: dict[str, float]) -> dict[str, float]:
    if value["initial"] > value["maximum"]:
        raise vol.Invalid("must not exceed maximum", path=["initial"])
    return value


_GRID = vol.Schema(
    {
        vol.Required("url"): _url,
        vol.Required("client_id"): vol.All(str, vol.Length(min=1)),
        vol.Required("client_secret"): vol.All(str, vol.Length(min=1)),
        vol.Optional("key_fingerprints", default=[]): [str],
        vol.Optional("poll_interval", default=60.0): vol.All(vol.Coerce(float), vol.Range(min=1)),
        vol.Optional("request_timeout", default=10.0): vol.All(
            vol.Coerce(float), vol.Range(min=0.1)
        ),
    }
)

_FUSION = vol.Schema(
    {
        vol.Optional("bucket_seconds", default=300): vol.All(vol.Coerce(int), vol.Range(min=10)),
        vol.Optional("bucket_grace", default=120): vol.All(vol.Coerce(int), vol.Range(min=0)),
        vol.Optional("batch_seconds", default=0.2): vol.All(
            vol.Coerce(float), vol.Range(min=0.0, max=5.0)
        ),
        vol.Optional("raw_retention_hours", default=48): vol.All(
            vol.Coerce(float), vol.Range(min=1)
        ),
        vol.Optional("rollup_retention_days", default=90): vol.All(
            vol.Coerce(float), vol.Range(min=1)
        ),
        vol.Optional("report_upstream", default=True): vol.Boolean(),
        vol.Optional("report_interval", default=None): vol.Any(
            None, vol.All(vol.Coerce(float), vol.Range(min=1, max=60))
        ),
    }
)

_CHARGING = vol.Schema(
    {
        vol.Optional("transformer_kw", default=dict): {
            _identifier: vol.All(vol.Coerce(float), vol.Range(min=1))
        },
        vol.Optional("default_transformer_kw", default=None): vol.Any(
            None, vol.All(vol.Coerce(float), vol.Range(min=1))
        ),
        vol.Optional("margin", default=0.9): vol.All(vol.Coerce(float), vol.Range(min=0.1, max=1)),
        vol.Optional("min_kw", default=1.4): vol.All(vol.Coerce(float), vol.Range(min=0.5, max=50)),
        vol.Optional("interval", default=60.0): vol.All(vol.Coerce(float), vol.Range(min=5)),
    }
)

_RECONNECT = vol.All(
    vol.Schema(
        {
            vol.Optional("initial", default=1.0): vol.All(
                vol.Coerce(float), vol.Range(min=0.1, max=600)
            ),
            vol.Optional("maximum", default=300.0): vol.All(
                vol.Coerce(float), vol.Range(min=1, max=3600)
            ),
        }
    ),
    _ordered_backoff,
)

SCHEMA = vol.Schema(
    {
        vol.Required("community"): _identifier,
        vol.Optional("host", default="0.0.0.0"): str,  # noqa: S104 - a service in a container
        vol.Optional("port", default=8080): vol.All(vol.Coerce(int), vol.Range(min=0, max=65535)),
        vol.Optional("public_url"): _url,
        vol.Optional("database", default="bridge.sqlite3"): vol.All(str, vol.Length(min=1)),
        vol.Required("grid"): _GRID,
        vol.Optional("fusion", default=dict): _FUSION,
        vol.Optional("ev_charging", default=dict): _CHARGING,
        vol.Optional("heartbeat", default=30): vol.All(vol.Coerce(int), vol.Range(min=1)),
        vol.Optional("header_deadline", default=10.0): vol.All(
            vol.Coerce(float), vol.Range(min=0.5, max=120)
        ),
        vol.Optional("home_send_buffer_kb", default=256): vol.All(
            vol.Coerce(int), vol.Range(min=16, max=65536)
        ),
        vol.Optional("reconnect", default=dict): _RECONNECT,
        vol.Optional("log_level", default="INFO"): vol.In(["DEBUG", "INFO", "WARNING", "ERROR"]),
        vol.Optional("log_format", default="text"): vol.In(["text", "json"]),
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class GridConfig:
    """How the bridge reaches the grid as a VEN."""

    url: str
    client_id: str
    client_secret: str
    key_fingerprints: tuple[str, ...]
    poll_interval: float
    request_timeout: float


@dataclass(frozen=True, slots=True, kw_only=True)
class FusionConfig:
    """How home telemetry is batched, rolled up and kept."""

    bucket_seconds: int
    bucket_grace: int
    batch_seconds: float
    raw_retention_hours: float
    rollup_retention_days: float
    report_upstream: bool = True  # send the grid reports on what homes reported
    report_interval: float | None = None  # seconds between checks; None: bucket_seconds / 4

    @property
    def report_every(self) -> float:
        """Seconds between the upstream reporter's checks (at most a minute)."""
        return min(60.0, self.report_interval or self.bucket_seconds / 4)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargingConfig:
    """How the community shares its transformers' headroom among charging EVs."""

    transformer_kw: Mapping[str, float]  # rating of each transformer, by id
    default_transformer_kw: float | None  # for transformers not listed; None: not managed
    margin: float  # the share of a rating the community plans to load
    min_kw: float  # no charger is limited below this (IEC 61851: 6 A on one phase)
    interval: float  # seconds between allocations

    def rating(self, transformer: str) -> float | None:
        """A transformer's rating in kW, if the community manages its EV charging."""
        return self.transformer_kw.get(transformer, self.default_transformer_kw)


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeConfig:
    """Validated bridge settings."""

    community: str
    host: str
    port: int
    public_url: str
    database: Path
    grid: GridConfig
    fusion: FusionConfig
    ev_charging: ChargingConfig
    heartbeat: int
    header_deadline: float
    home_send_buffer: int  # bytes unsent to one home before it is dropped as not reading
    reconnect: Reconnect
    log_level: str
    log_format: str


def _overlay_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = name.removeprefix(ENV_PREFIX).lower().split("__")
        target = merged
        for section in path[:-1]:
            target = target.setdefault(section, {})
            if not isinstance(target, dict):
                raise ConfigError(f"environment {name}: '{section}' is not a section")
        target[path[-1]] = yaml.safe_load(value) if value else value
    return merged


def _where(error: vol.Invalid) -> str:
    return ".".join(str(p) for p in error.path) or "(top level)"


def parse_config(raw: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> BridgeConfig:
    """Validate a configuration mapping (after overlaying the environment)."""
    merged = _overlay_environment(dict(raw), environ or {})
    try:
        data = SCHEMA(merged)
    except vol.MultipleInvalid as err:
        problems = "; ".join(f"{_where(e)}: {e.msg}" for e in err.errors)
        raise ConfigError(f"invalid bridge configuration: {problems}") from err
    grid = data["grid"]
    public_url = data.get("public_url") or f"http://127.0.0.1:{data['port']}"
    return BridgeConfig(
        community=data["community"],
        host=data["host"],
        port=data["port"],
        public_url=public_url,
        database=Path(data["database"]),
        grid=GridConfig(
            url=grid["url"],
            client_id=grid["client_id"],
            client_secret=grid["client_secret"],
            key_fingerprints=tuple(grid["key_fingerprints"]),
            poll_interval=grid["poll_interval"],
            request_timeout=grid["request_timeout"],
        ),
        fusion=FusionConfig(**data["fusion"]),
        ev_charging=ChargingConfig(**data["ev_charging"]),
        heartbeat=data["heartbeat"],
        header_deadline=data["header_deadline"],
        home_send_buffer=data["home_send_buffer_kb"] * 1024,
        reconnect=Reconnect(
            initial=data["reconnect"]["initial"], maximum=data["reconnect"]["maximum"]
        ),
        log_level=data["log_level"],
        log_format=data["log_format"],
    )


def load_config(path: Path | None, environ: Mapping[str, str]) -> BridgeConfig:
    """Read the YAML file (if any) and the environment."""
    raw: Any = {}
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as err:
            raise ConfigError(f"cannot read {path}: {err.strerror}") from err
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {err}") from err
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return parse_config(raw, environ)
