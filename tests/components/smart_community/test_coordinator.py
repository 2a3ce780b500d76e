"""The coordinator: only verified signals become state; push survives disconnects and restarts."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
import logging
from typing import Any
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.config_entries import ConfigEntryState
from homeassistant.const import EVENT_HOMEASSISTANT_STOP, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.smart_community.const import DOMAIN
from custom_components.smart_community.protocol import (
    SIGNATURE_FIELD,
    Operation,
    format_datetime,
)

from .conftest import (
    DEMAND_RESPONSE,
    NOW,
    PRICE,
    REJECTED,
    async_failed_attempt,
    async_move_to,
    async_reconnect_attempt,
    async_setup_integration,
    async_spin_until,
    async_wait_connected,
    wait_for_state,
)
from .fake_bridge import FakeBridge, FakeGrid, dr_event, notification, price_event


async def _publish_price(bridge: FakeBridge, grid: FakeGrid, price: float) -> dict[str, Any]:
    signed = grid.sign(price_event("tou", start=NOW, prices=[price]))
    await bridge.wait_for_ack(await bridge.publish(signed))
    return signed


def _tampered(grid: FakeGrid) -> dict[str, Any]:
    signed = grid.sign(price_event("tou", start=NOW, prices=[0.9]))
    signed["intervals"][0]["payloads"][0]["values"] = [0.01]
    return notification(signed)


def _unsigned(grid: FakeGrid) -> dict[str, Any]:
    return notification(price_event("tou", start=NOW, prices=[0.01]))


def _other_home(grid: FakeGrid) -> dict[str, Any]:
    return notification(
        grid.sign(price_event("tou", start=NOW, prices=[0.01]), audience=["home:c1/h2"])
    )


def _expired(grid: FakeGrid) -> dict[str, Any]:
    signed = grid.sign(
        price_event("tou", start=NOW, prices=[0.01]),
        valid_for=-timedelta(minutes=5),
        not_before=NOW - timedelta(hours=1),
    )
    return notification(signed)


def _unpinned_key(grid: FakeGrid) -> dict[str, Any]:
    impostor = FakeGrid(grid.community, issuer=grid.signer.issuer)
    return notification(impostor.sign(price_event("tou", start=NOW, prices=[0.01])))


def _delete_signed_as_update(grid: FakeGrid) -> dict[str, Any]:
    return notification(grid.sign(price_event("tou", start=NOW, prices=[0.5])), Operation.DELETE)


def _not_a_notification(grid: FakeGrid) -> dict[str, Any]:
    return {"objectType": "EVENT", "object": {}}


def _not_an_event(grid: FakeGrid) -> dict[str, Any]:
    event = price_event("tou", start=NOW, prices=[0.01])
    del event["programID"]
    return notification(grid.sign(event))


def _untimed_event(grid: FakeGrid) -> dict[str, Any]:
    event = price_event("tou", start=NOW, prices=[0.01])
    del event["intervalPeriod"]["duration"]
    return notification(grid.sign(event))


@pytest.mark.usefixtures("init_integration")
@pytest.mark.parametrize(
    ("forge", "reason"),
    [
        (_tampered, "bad_signature"),
        (_unsigned, "unsigned"),
        (_other_home, "wrong_audience"),
        (_expired, "expired"),
        (_unpinned_key, "unknown_key"),
        (_delete_signed_as_update, "operation_mismatch"),
        (_not_a_notification, "malformed"),
        (_not_an_event, "malformed"),
        (_untimed_event, "malformed"),
    ],
)
async def test_rejected_signals_change_nothing(
    hass: HomeAssistant,
    bridge: FakeBridge,
    grid: FakeGrid,
    forge: Callable[[FakeGrid], dict[str, Any]],
    reason: str,
) -> None:
    """Whatever the bridge relays that does not verify is dropped, counted and explained."""
    await _publish_price(bridge, grid, 0.5)
    assert hass.states.get(PRICE).state == "0.5"

    seq = await bridge.push(forge(grid))
    await bridge.wait_for_ack(seq)

    assert hass.states.get(PRICE).state == "0.5"
    rejected = hass.states.get(REJECTED)
    assert rejected.state == "1"
    assert rejected.attributes["last_reason"] == reason
    assert rejected.attributes["last_message"]
    assert rejected.attributes["last_rejected_at"] == NOW


@pytest.mark.usefixtures("init_integration")
async def test_older_version_rejected(
    hass: HomeAssistant, bridge: FakeBridge, grid: FakeGrid
) -> None:
    """An old, validly signed version replayed after a newer one is rejected."""
    first = await _publish_price(bridge, grid, 0.5)
    await _publish_price(bridge, grid, 0.7)

    await bridge.wait_for_ack(await bridge.publish(first, serve=False))

    assert hass.states.get(PRICE).state == "0.7"
    rejected = hass.states.get(REJECTED)
    assert rejected.state == "1"
    assert rejected.attributes["last_reason"] == "older_version"
    assert rejected.attributes["last_object"] == "EVENT tou"


@pytest.mark.usefixtures("init_integration")
async def test_duplicates_dropped_quietly(
    hass: HomeAssistant, bridge: FakeBridge, grid: FakeGrid
) -> None:
    """The same version twice is a duplicate, not an attack: acknowledged, not counted."""
    signed = await _publish_price(bridge, grid, 0.5)
    seq = await bridge.publish(signed)
    await bridge.wait_for_ack(seq)
    assert hass.states.get(PRICE).state == "0.5"
    assert hass.states.get(REJECTED).state == "0"


@pytest.mark.usefixtures("init_integration")
async def test_other_messages_ignored(
    hass: HomeAssistant, bridge: FakeBridge, grid: FakeGrid
) -> None:
    """Object types the home does not keep and unknown message types pass by."""
    await bridge.send({"type": "notice", "text": "for newer homes"})
    report = {"id": "r1", "objectType": "REPORT"}
    await bridge.wait_for_ack(await bridge.push(notification(report)))
    # Signed and addressed to the home, but of a kind it does not keep.
    ven = grid.sign({"id": "v1", "objectType": "VEN"})
    await bridge.wait_for_ack(await bridge.push({**notification(ven), "objectType": "EVENT"}))
    await _publish_price(bridge, grid, 0.5)
    assert hass.states.get(PRICE).state == "0.5"
    assert hass.states.get(REJECTED).state == "0"


async def test_signature_expiry_drops_the_object(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
    frozen_now: FrozenDateTimeFactory,
) -> None:
    """A signal whose signature lapses stops applying then, even mid-interval."""
    signed = grid.sign(
        price_event("tou", start=NOW, prices=[0.5] * 3), valid_for=timedelta(hours=1)
    )
    await bridge.wait_for_ack(await bridge.publish(signed))
    assert hass.states.get(PRICE).state == "0.5"
    bridge.objects.clear()

    await async_move_to(hass, init_integration, frozen_now, NOW + timedelta(hours=1))
    assert hass.states.get(PRICE).state == STATE_UNKNOWN


async def test_unavailable_while_disconnected(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
) -> None:
    """Entities go unavailable with the push channel and recover with what was missed."""
    await _publish_price(bridge, grid, 0.5)
    last_seq = bridge.last_seq

    bridge.available = False
    await bridge.disconnect()
    await wait_for_state(hass, PRICE, lambda state: state.state == STATE_UNAVAILABLE)
    await async_failed_attempt(init_integration, bridge)

    # A periodic resync does not pretend the home is up to date without its push channel.
    await init_integration.runtime_data.coordinator.async_refresh()
    assert hass.states.get(PRICE).state == STATE_UNAVAILABLE

    # Signals relayed meanwhile are replayed on reconnect.
    replayed = await bridge.publish(grid.sign(price_event("tou", start=NOW, prices=[0.8])))
    bridge.available = True
    await async_reconnect_attempt(init_integration, bridge)
    await bridge.wait_for_ack(replayed)
    assert bridge.since[-1] == last_seq
    assert hass.states.get(PRICE).state == "0.8"
    assert hass.states.get(REJECTED).state == "0"


async def test_resume_after_restart(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
) -> None:
    """The applied sequence, the objects and the replay guard survive a restart."""
    first = await _publish_price(bridge, grid, 0.5)
    await _publish_price(bridge, grid, 0.7)
    last_seq = bridge.last_seq
    bridge.objects.clear()  # what the home shows after the restart comes from its own store

    await hass.config_entries.async_reload(init_integration.entry_id)
    await hass.async_block_till_done()
    await async_wait_connected(init_integration)

    assert bridge.since[-1] == last_seq
    assert hass.states.get(PRICE).state == "0.7"
    await bridge.wait_for_ack(await bridge.publish(first, serve=False))
    assert hass.states.get(PRICE).state == "0.7"
    assert hass.states.get(REJECTED).attributes["last_reason"] == "older_version"


async def test_ledger_restarted(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
) -> None:
    """A bridge whose ledger starts over is followed from its new beginning."""
    await _publish_price(bridge, grid, 0.5)
    bridge.ledger.clear()
    bridge.acks.clear()
    await bridge.disconnect()
    await wait_for_state(hass, PRICE, lambda state: state.state == STATE_UNAVAILABLE)
    await async_reconnect_attempt(init_integration, bridge)
    await async_wait_connected(init_integration)
    assert bridge.since[-1] == 1

    # Sequence 1 again: new to the home, not mistaken for the old one.
    await _publish_price(bridge, grid, 0.6)
    assert hass.states.get(PRICE).state == "0.6"


async def test_push_refused_credential(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
) -> None:
    """A credential the bridge no longer accepts keeps the home unavailable."""
    bridge.credential = "revoked"
    await bridge.disconnect()
    await wait_for_state(hass, PRICE, lambda state: state.state == STATE_UNAVAILABLE)
    await async_failed_attempt(init_integration, bridge)
    assert hass.states.get(PRICE).state == STATE_UNAVAILABLE
    assert init_integration.state is ConfigEntryState.LOADED


async def test_unexpected_error_reconnects(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
) -> None:
    """A bug while handling a signal makes the home unavailable, then it starts over."""
    with patch(
        "custom_components.smart_community.coordinator.outlook", side_effect=RuntimeError("bug")
    ):
        await bridge.publish(grid.sign(price_event("tou", start=NOW, prices=[0.5])))
        await wait_for_state(hass, PRICE, lambda state: state.state == STATE_UNAVAILABLE)
    await async_reconnect_attempt(init_integration, bridge)
    await bridge.wait_for_ack(1)
    await wait_for_state(hass, PRICE, lambda state: state.state == "0.5")


@pytest.mark.usefixtures("init_integration")
async def test_stop_closes_push(hass: HomeAssistant, bridge: FakeBridge) -> None:
    """Home Assistant stopping closes the push channel, which stays closed."""
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STOP)
    await hass.async_block_till_done()
    await bridge.wait_for_disconnect()
    assert len(bridge.since) == 1


async def test_restore_from_storage(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    grid: FakeGrid,
) -> None:
    """What was stored is checked again before it counts; the rejection record comes back."""
    valid = grid.sign(price_event("tou", start=NOW, prices=[0.5]))
    tampered = grid.sign(dr_event("peak", start=NOW))
    tampered["eventName"] = "Forged"
    key = f"{DOMAIN}.{mock_config_entry.entry_id}"
    hass_storage[key] = {
        "version": 1,
        "minor_version": 1,
        "key": key,
        "data": {
            "last_seq": 7,
            "guard": [],
            "objects": [
                {"signed": valid, "received_at": format_datetime(NOW)},
                {"signed": tampered, "received_at": format_datetime(NOW)},
            ],
            "rejected": 2,
            "last_rejection": {
                "reason": "bad_signature",
                "message": "signature does not match the content",
                "object_ref": "EVENT peak",
                "at": format_datetime(NOW - timedelta(days=1)),
            },
        },
    }
    await async_setup_integration(hass, mock_config_entry)

    assert bridge.since == [7]
    assert hass.states.get(PRICE).state == "0.5"
    assert hass.states.get(DEMAND_RESPONSE).state == "off"
    rejected = hass.states.get(REJECTED)
    assert rejected.state == "2"
    assert rejected.attributes["last_object"] == "EVENT peak"
    assert rejected.attributes["last_rejected_at"] == NOW - timedelta(days=1)


@pytest.mark.parametrize(
    ("guidance", "ceilings"),
    [
        # No guidance in the welcome: the home's own pace, from 1 s doubling up to 5 minutes.
        (None, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]),
        # The bridge's guidance: from 3 s doubling up to 10 s.
        ({"initial": 3, "max": 10}, [3, 6, 10, 10]),
    ],
)
async def test_reconnect_paced_by_the_welcome(
    hass: HomeAssistant,
    mock_config_entry: MockConfigEntry,
    bridge: FakeBridge,
    guidance: dict[str, float] | None,
    ceilings: list[float],
) -> None:
    """Each retry waits a random time in the upper half of a doubling ceiling; a welcome resets it.

    The ceilings are the bridge's when its welcome carries reconnect guidance, the home's own
    otherwise. The random source is made to pick the longest wait, so the home must retry
    exactly when that ceiling has passed.
    """
    bridge.reconnect = guidance
    drawn: list[tuple[float, float]] = []

    def longest(low: float, high: float) -> float:
        drawn.append((low, high))
        return high

    async def retry_after(seconds: float) -> None:
        attempts = bridge.requests.count("/ws")
        async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=seconds))
        await async_spin_until(lambda: bridge.requests.count("/ws") > attempts)

    await async_setup_integration(hass, mock_config_entry)
    with patch("custom_components.smart_community.coordinator.random.uniform", side_effect=longest):
        bridge.available = False
        await bridge.disconnect()
        for failures, ceiling in enumerate(ceilings):
            await async_spin_until(lambda: len(drawn) > failures)  # noqa: B023 - awaited at once
            await retry_after(ceiling)
        assert drawn[: len(ceilings)] == [(ceiling / 2, ceiling) for ceiling in ceilings]

        # Back: the welcome resets the count, so the next loss starts from the first ceiling.
        bridge.available = True
        await async_spin_until(lambda: len(drawn) > len(ceilings))
        await retry_after(ceilings[-1])
        await async_wait_connected(mock_config_entry)
        await bridge.disconnect()
        await async_spin_until(lambda: len(drawn) > len(ceilings) + 1)
        assert drawn[-1] == (ceilings[0] / 2, ceilings[0])


@pytest.mark.usefixtures("init_integration")
async def test_dr_event_pushed_to_the_right_home_only(
    hass: HomeAssistant, bridge: FakeBridge, grid: FakeGrid, caplog: pytest.LogCaptureFixture
) -> None:
    """The rejection is logged with the object it concerns."""
    caplog.set_level(logging.WARNING)
    event = grid.sign(dr_event("peak", start=NOW), audience=["transformer:c1/t9"])
    await bridge.wait_for_ack(await bridge.publish(event))
    assert "Rejected EVENT peak from the bridge (wrong_audience)" in caplog.text
    assert SIGNATURE_FIELD in event
