"""End to end: the homes' meters reach the grid as the community's aggregate.

The utility publishes an event whose report descriptor asks for the community's demand, one
report per interval. Two homes in one Home Assistant, each enrolled through the config flow and
given its grid import power sensor through the options flow, answer it from their own sensors
as each interval ends; the bridge files their readings into its time buckets and, once a bucket
has closed, sends the grid one aggregated report of it: the sum of the homes' demand.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
import math
from typing import Any

from homeassistant.config_entries import ConfigEntry
from homeassistant.const import ATTR_DEVICE_CLASS, ATTR_UNIT_OF_MEASUREMENT, UnitOfPower
from homeassistant.core import HomeAssistant
import pytest

from smart_community_bridge import homes
from smart_community_bridge.state import LEDGER
from smart_community_protocol import Placement, format_datetime

from .stack import Stack, add_home, configure

BUCKET = 10  # seconds: the bridge's buckets and the event's intervals
H2 = Placement(community="c1", feeder="f1", transformer="t1", home="h2")
METERS = {
    "sensor.h1_grid_import": ("2.0", UnitOfPower.KILO_WATT),
    "sensor.h2_grid_import": ("3500", UnitOfPower.WATT),
}


@pytest.fixture
def bridge_settings() -> dict[str, Any]:
    """Buckets of the event's interval length, open to a home's answer for a few seconds
    after they end (homes answer an interval once it is over), checked every second."""
    return {
        "fusion": {
            "bucket_seconds": BUCKET,
            "bucket_grace": 2,
            "batch_seconds": 0.05,
            "report_interval": 1,
        }
    }


@pytest.fixture(autouse=True)
def short_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """The home samples its sensors every minute and the bridge leaves 5 s for a batch in
    flight before it reports a bucket; on loopback, a second and half a second will do."""
    monkeypatch.setattr(
        "custom_components.smart_community.reporter.SAMPLE_INTERVAL", timedelta(seconds=1)
    )
    monkeypatch.setattr("smart_community_bridge.reporting.CLOSE_MARGIN", 0.5)


async def enrol(hass: HomeAssistant, stack: Stack, meter: str) -> ConfigEntry:
    """A home through the config flow, its grid import power sensor through the options."""
    entry = await add_home(hass, stack)
    await configure(
        hass,
        entry,
        "reporting",
        {"grid_import_power": meter, "telemetry_interval": {"minutes": 5}},
    )
    return entry


async def publish(stack: Stack, start: datetime) -> str:
    """Two intervals of SIMPLE 1; the community's demand asked for, aggregated, per interval."""
    event = await stack.publish(
        start,
        f"PT{BUCKET}S",
        eventName="demand wanted",
        intervals=[{"id": i, "payloads": [{"type": "SIMPLE", "values": [1]}]} for i in (0, 1)],
        reportDescriptors=[
            {
                "payloadType": "DEMAND",
                "aggregate": True,
                "units": "KW",
                "frequency": 1,
                "repeat": -1,
            }
        ],
    )
    return str(event["id"])


async def test_the_homes_demand_reaches_the_grid_summed_per_interval(
    hass: HomeAssistant, stack: Stack
) -> None:
    for meter, (value, unit) in METERS.items():
        hass.states.async_set(
            meter, value, {ATTR_DEVICE_CLASS: "power", ATTR_UNIT_OF_MEASUREMENT: unit}
        )
    first = await enrol(hass, stack, "sensor.h1_grid_import")
    stack.enrollment_code, _ = await homes.issue_code(stack.bridge[LEDGER], H2)
    second = await enrol(hass, stack, "sensor.h2_grid_import")
    assert (first.unique_id, second.unique_id) == ("c1/h1", "c1/h2")

    # The event starts at a bucket boundary at least 3 s ahead, so both homes hold it by then.
    start = datetime.fromtimestamp(
        math.ceil((datetime.now(UTC).timestamp() + 3) / BUCKET) * BUCKET, UTC
    )
    event_id = await publish(stack, start)
    starts = [format_datetime(start + timedelta(seconds=BUCKET * i)) for i in (0, 1)]

    demand: list[dict[str, Any]] = []

    async def arrived(count: int) -> None:
        async with asyncio.timeout(4 * BUCKET + 20):
            while len(demand) < count:
                await asyncio.sleep(0.5)
                demand[:] = [
                    r for r in await stack.grid_reports(event_id) if "DEMAND" in r["reportName"]
                ]

    await arrived(1)
    # Not before the interval was over: the homes answer ended intervals only.
    assert datetime.now(UTC) >= start + timedelta(seconds=BUCKET)
    await arrived(2)

    for report, interval_start in zip(demand, starts, strict=True):
        assert report["clientName"] == "bridge-c1"
        (resource,) = report["resources"]
        assert resource["resourceName"] == "AGGREGATED_REPORT"
        (interval,) = resource["intervals"]
        assert interval["intervalPeriod"] == {"start": interval_start, "duration": f"PT{BUCKET}S"}
        (payload,) = interval["payloads"]
        assert payload["type"] == "DEMAND"
        # 2 kW and 3,500 W: each home's mean over the interval, summed for the community.
        assert payload["values"] == [pytest.approx(5.5)]
    assert report["payloadDescriptors"][0]["units"] == "KW"
