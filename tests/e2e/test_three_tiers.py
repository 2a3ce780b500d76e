"""End to end: the real mock grid and the real bridge on 127.0.0.1, Home Assistant via the harness.

An event published at the grid (as the utility's back office would, through the BL API) turns
the Home Assistant binary sensor on at its interval start and off at its end. A forged or
replayed event injected at the bridge never reaches Home Assistant state.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
import json

from homeassistant.const import STATE_OFF, STATE_ON
from homeassistant.core import HomeAssistant

from smart_community_bridge.ledger import StoredSignal
from smart_community_bridge.relay import signal_frame
from smart_community_bridge.state import INTAKE, LEDGER, RELAY
from smart_community_protocol import format_datetime

from .stack import Stack, setup_home, state, wait_for


async def test_grid_event_turns_home_sensor_on_at_start_and_off_at_end(
    hass: HomeAssistant, stack: Stack
) -> None:
    dr_active, _ = await setup_home(hass, stack)
    assert state(hass, dr_active) == STATE_OFF

    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    await stack.publish(start, "PT3S")
    await wait_for(lambda: state(hass, dr_active) == STATE_ON, "DR active", seconds=10)
    assert datetime.now(UTC) >= start  # not before the interval start
    await wait_for(lambda: state(hass, dr_active) == STATE_OFF, "DR over", seconds=10)
    assert datetime.now(UTC) >= start + timedelta(seconds=3)


async def test_forged_or_replayed_event_at_the_bridge_never_reaches_home_state(
    hass: HomeAssistant, stack: Stack
) -> None:
    dr_active, rejected = await setup_home(hass, stack)
    later = datetime.now(UTC) + timedelta(hours=1)
    genuine = await stack.publish(later, "PT30M", value=1)
    await wait_for(lambda: stack.bridge[RELAY].relayed >= 1, "the genuine event relayed")
    rejected_before = int(state(hass, rejected))

    # A compromised bridge (or anyone on its path) pushes an altered copy, active right now...
    forged = json.loads(json.dumps(genuine))
    forged["intervalPeriod"] = {
        "start": format_datetime(datetime.now(UTC) - timedelta(minutes=1)),
        "duration": "PT1H",
    }
    # ...and an old, genuine version again.
    ledger = stack.bridge[LEDGER]
    last = await ledger.last_seq()
    for seq, obj in ((last + 1, forged), (last + 2, genuine)):
        frame = signal_frame(
            StoredSignal(
                seq, "EVENT", obj["id"], "UPDATE", ("community:c1",), 2**40, json.dumps(obj)
            )
        )
        assert await stack.bridge[RELAY].inject(frame, ["community:c1"]) == 1

    await wait_for(lambda: int(state(hass, rejected)) >= rejected_before + 1, "the forgery counted")
    await asyncio.sleep(0.5)
    assert state(hass, dr_active) == STATE_OFF
    assert int(state(hass, rejected)) == rejected_before + 1  # the replay is dropped quietly

    # At the bridge's own front door, the forged event is dropped before it is stored.
    assert await stack.bridge[INTAKE].accept(forged) is None
    assert await ledger.last_seq() == last
