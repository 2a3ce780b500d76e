"""A third-party OpenADR 3.1 VEN client talks to the bridge as a home would, as to any VTN.

ElaadNL's openadr3-client (its OpenADR 3.1.0 VEN client and validated models), authenticated
with a home's credential as the specification's bearer token, reads the programs and events the
bridge relays (the grid's signature riding along), finds its VEN, reports telemetry and asks for
a PV grid connection as a resource.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp.test_utils import TestClient
from openadr3_client._models.common.interval import Interval
from openadr3_client._models.common.interval_period import IntervalPeriod
from openadr3_client.oadr310.models.report.report import NewReport, ReportPayload, ReportResource
from openadr3_client.ven.http_factory import VirtualEndNodeHttpClientFactory
from openadr3_client.version import OADRVersion

from smart_community_bridge.state import INTAKE, LEDGER
from smart_community_protocol import Signer, format_datetime

from .conftest import COMMUNITY, event, signed


def _program() -> dict[str, Any]:
    now = format_datetime(datetime.now(UTC))
    return {
        "id": "dr",
        "objectType": "PROGRAM",
        "createdDateTime": now,
        "modificationDateTime": now,
        "programName": "demand response",
        "targets": [f"community:{COMMUNITY}"],
    }


def home_client(base_url: str, credential: str) -> Any:
    """The third party's VEN client, sending the home's credential as its bearer token."""
    client = VirtualEndNodeHttpClientFactory.create_anonymous_http_ven_client(
        base_url, allow_insecure_http=True, version=OADRVersion.OADR_310
    )
    for part in (client.programs, client.events, client.reports, client.vens, client.resources):
        part.session.headers["Authorization"] = f"Bearer {credential}"
    return client


def as_a_home(base_url: str, credential: str) -> dict[str, Any]:
    """What the third-party client does, in its own blocking calls (run in a thread)."""
    client = home_client(base_url, credential)
    # The last minute: the bucket it starts in ended less than a minute ago, well inside the
    # bridge's grace (120 s), so the reading counts.
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    report = client.reports.create_report(
        new_report=NewReport(
            event_id="X_TELEMETRY",
            client_name="a",
            report_name="telemetry",
            resources=(
                ReportResource(
                    resource_name="a",
                    interval_period=IntervalPeriod(start=start, duration=timedelta(minutes=1)),
                    intervals=(
                        Interval(
                            id=0,
                            interval_period=None,
                            payloads=(ReportPayload(type="DEMAND", values=(1.5,)),),
                        ),
                    ),
                ),
            ),
        )
    )
    return {
        "programs": client.programs.get_programs(target=None, pagination=None),
        "events": client.events.get_events(target=None, pagination=None, program_id=None),
        "vens": client.vens.get_vens(target=None, pagination=None, ven_name=None),
        "report": report,
    }


async def test_a_third_party_ven_client_is_served_as_a_home(
    bridge: TestClient[Any, Any], credentials: dict[str, str], signer: Signer
) -> None:
    intake = bridge.app[INTAKE]
    assert await intake.accept(signed(signer, _program())) is not None
    assert await intake.accept(signed(signer, event("peak"))) is not None
    base_url = f"http://{bridge.host}:{bridge.port}"

    done = await asyncio.to_thread(as_a_home, base_url, credentials["a"])

    assert [p.program_name for p in done["programs"]] == ["demand response"]
    (seen,) = done["events"]
    assert (seen.id, seen.event_name, seen.program_id) == ("peak", "event peak", "dr")
    assert seen.intervals[0].payloads[0].values == (2,)
    assert [v.ven_name for v in done["vens"]] == ["a"]
    assert done["report"].id.startswith("report-")
    # The bridge stored the third party's telemetry as the home's reading.
    buckets = await bridge.app[LEDGER].home_buckets_since(0)
    assert [(home, kind, total) for _, home, kind, total, *_ in buckets] == [("a", "DEMAND", 1.5)]
