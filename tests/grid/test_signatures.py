"""Every program and event the grid publishes is signed, with the claims docs/protocol.md sets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
import time

import pytest

from smart_community_grid.app import create_app
from smart_community_grid.app_keys import ISSUER
from smart_community_grid.scenario import parse_scenario
from smart_community_protocol import (
    Operation,
    RejectReason,
    SignalRejected,
    parse_duration,
)

from .conftest import Grid, dr_event, scenario_dict

DAY = 24 * 3600


async def test_key_set_names_the_grid(grid: Grid) -> None:
    (key,) = await grid.keys()
    assert key.issuer == "test-grid"
    assert key.kid == grid.app[ISSUER].signer.public_key.kid


async def test_published_tariff_verifies_with_claims(grid: Grid) -> None:
    verifier = await grid.verifier("c1")
    before = int(time.time())
    tariff_events = await grid.ok("GET", "/events", as_="ven1")
    assert len(tariff_events) == 2  # today and tomorrow
    for event in tariff_events:
        claims = verifier.verify(event).claims
        assert claims.iss == "test-grid"
        assert claims.op is Operation.CREATE
        assert set(claims.aud) == {"community:c1", "community:c2"}
        assert claims.nbf == claims.iat - 60
        assert before <= claims.iat <= time.time()
        last = event["intervals"][-1]["intervalPeriod"]
        end = datetime.fromisoformat(last["start"]) + parse_duration(last["duration"]).delta
        assert claims.exp == int((end + timedelta(hours=1)).timestamp())
    for program in await grid.ok("GET", "/programs", as_="ven1"):
        claims = verifier.verify(program).claims
        assert claims.exp == claims.iat + 30 * DAY


async def test_event_expiry_is_an_hour_after_its_lifespan(grid: Grid) -> None:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=10)
    body = dr_event(await grid.program_id("dr"), start=start, targets=["transformer:c1/t1"])
    event = await grid.ok("POST", "/events", json=body)
    claims = (await grid.verifier("c1")).verify(event).claims
    assert claims.aud == ("transformer:c1/t1",)
    assert claims.exp == int((start + timedelta(minutes=30, hours=1)).timestamp())
    assert claims.op is Operation.CREATE


async def test_open_ended_event_is_signed_for_thirty_days(grid: Grid) -> None:
    body = dr_event(await grid.program_id("dr"))
    body["intervalPeriod"]["duration"] = "P9999Y"
    event = await grid.ok("POST", "/events", json=body)
    claims = (await grid.verifier()).verify(event).claims
    assert claims.exp == claims.iat + 30 * DAY


async def test_update_and_delete_are_signed_as_such(grid: Grid) -> None:
    verifier = await grid.verifier("c1")
    program_id = await grid.program_id("dr")
    created = await grid.ok("POST", "/events", json=dr_event(program_id))
    first = verifier.verify(created).claims
    updated = await grid.ok(
        "PUT", f"/events/{created['id']}", json=dr_event(program_id, priority=1)
    )
    second = verifier.verify(updated).claims
    assert second.op is Operation.UPDATE
    assert second.seq > first.seq
    deleted = await grid.ok("DELETE", f"/events/{created['id']}")
    third = verifier.verify(deleted, operation=Operation.DELETE).claims
    assert third.op is Operation.DELETE
    assert third.seq > second.seq


async def test_late_update_of_an_ended_event_is_not_born_expired(grid: Grid) -> None:
    program_id = await grid.program_id("dr")
    ended = dr_event(program_id, start=datetime.now(UTC) - timedelta(days=1))
    created = await grid.ok("POST", "/events", json=ended)
    deleted = await grid.ok("DELETE", f"/events/{created['id']}")
    claims = (await grid.verifier()).verify(deleted, operation=Operation.DELETE).claims
    assert claims.exp >= claims.iat + 3600


async def test_tampered_object_fails_verification(grid: Grid) -> None:
    event = await grid.ok("POST", "/events", json=dr_event(await grid.program_id("dr")))
    event["intervals"][0]["payloads"][0]["values"] = [3]
    verifier = await grid.verifier()
    with pytest.raises(SignalRejected) as rejected:
        verifier.verify(event)
    assert rejected.value.reason is RejectReason.BAD_SIGNATURE


async def test_other_community_rejects_the_audience(grid: Grid) -> None:
    body = dr_event(await grid.program_id("dr"), targets=["community:c1"])
    event = await grid.ok("POST", "/events", json=body)
    verifier = await grid.verifier("c2")
    with pytest.raises(SignalRejected) as rejected:
        verifier.verify(event)
    assert rejected.value.reason is RejectReason.WRONG_AUDIENCE


def test_signing_key_is_created_private_and_reused(tmp_path: Path) -> None:
    scenario = parse_scenario(scenario_dict(signing_key="secret/grid.pem"), tmp_path)
    first = create_app(scenario)[ISSUER].signer.public_key.kid
    key_file = tmp_path / "secret" / "grid.pem"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert create_app(scenario)[ISSUER].signer.public_key.kid == first
