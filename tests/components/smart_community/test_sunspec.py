"""SunSpec register codecs, without I/O."""

from __future__ import annotations

import pytest

from custom_components.smart_community.sunspec import (
    ModelLocation,
    SunSpecDecodeError,
    decode_string,
    encode_percent,
    is_marker,
    limit_write,
    next_model,
    parse_common,
    parse_controls,
    parse_inverter,
    release_write,
)

from .sunspec_inverter import ENA, RVRTTMS, WMAXLIMPCT, WMAXLIMPCT_SF, SunSpecInverter


def _model(inverter: SunSpecInverter, at: int, length: int) -> list[int]:
    return inverter.registers[at : at + length]


def test_marker_and_chain() -> None:
    """The map starts with "SunS"; each header gives the next model's place; 0xFFFF ends it."""
    assert is_marker([0x5375, 0x6E53])
    assert not is_marker([0x5375, 0x6E54])
    assert next_model(40002, [1, 65]) == ModelLocation(model_id=1, address=40004, length=65)
    assert next_model(40200, [0xFFFF, 0]) is None
    with pytest.raises(SunSpecDecodeError, match="model header"):
        next_model(40200, [1])


def test_strings() -> None:
    """Two characters a register, NUL padded; trailing blanks dropped."""
    assert decode_string([0x4162, 0x6300, 0x0000]) == "Abc"
    assert decode_string([0x4142, 0x2020]) == "AB"
    assert decode_string([0x0000]) == ""


def test_common_model() -> None:
    """Manufacturer, model, version and serial number of model 1."""
    inverter = SunSpecInverter(manufacturer="SMA", model="SB5.0-1AV-41", serial="3001234567")
    common = parse_common(_model(inverter, 4, 65))
    assert (common.manufacturer, common.model, common.serial) == (
        "SMA",
        "SB5.0-1AV-41",
        "3001234567",
    )
    assert common.version == "3.14.1-2"
    with pytest.raises(SunSpecDecodeError):
        parse_common([0] * 10)


def test_inverter_model_scaled() -> None:
    """Values times ten to their scale factor; unimplemented points are None."""
    inverter = SunSpecInverter()
    inverter.set_inverter(12, 1234, -1)  # W = 123.4
    inverter.set_inverter(22, 0x0001, 0x0000, 2)  # WH = 65536 * 10^2
    reading = parse_inverter(_model(inverter, inverter.inverter_at, 50))
    assert reading.ac_power == pytest.approx(123.4)
    assert reading.lifetime_energy == pytest.approx(6553600)
    assert reading.frequency == pytest.approx(50.01)
    assert reading.cabinet_temperature == pytest.approx(41.2)
    assert reading.status is not None
    assert reading.status.name == "MPPT"

    inverter.set_inverter(12, 0x8000)  # int16 not implemented
    inverter.set_inverter(36, 0xFFFF)
    inverter.set_inverter(22, 0, 0)  # acc32 not implemented
    reading = parse_inverter(_model(inverter, inverter.inverter_at, 50))
    assert reading.ac_power is None
    assert reading.lifetime_energy is None
    assert reading.status is None

    inverter.set_inverter(13, 42)  # no scale factor is that large
    with pytest.raises(SunSpecDecodeError):
        parse_inverter(_model(inverter, inverter.inverter_at, 50))


def test_controls_and_their_writes() -> None:
    """Model 123's limit; a limit goes out with its timer and enable in one write."""
    inverter = SunSpecInverter()
    assert inverter.controls_at is not None
    registers = _model(inverter, inverter.controls_at, 24)
    state = parse_controls(registers)
    assert state.percent == pytest.approx(100.0)
    assert not state.enabled
    assert state.scale_factor == -1
    assert state.ramp_seconds == 10

    location = ModelLocation(model_id=123, address=40100, length=24)
    write = limit_write(location, state, 42.5, 600)
    assert write.address == 40100 + WMAXLIMPCT
    # 42.5 % in tenths, window 0, revert 600 s, ramp kept, enabled.
    assert write.values == (425, 0, 600, 10, 1)
    assert RVRTTMS - WMAXLIMPCT == 2
    assert len(write.values) - 1 == ENA - WMAXLIMPCT
    assert release_write(location).address == 40100 + ENA
    assert release_write(location).values == (0,)

    with pytest.raises(ValueError, match="revert timer"):
        limit_write(location, state, 50, 0)
    with pytest.raises(ValueError, match="out of 0-100"):
        encode_percent(101, -1)
    assert encode_percent(100, 0) == 100
    assert encode_percent(33.33, -2) == 3333

    registers[WMAXLIMPCT_SF] = 0x8000
    with pytest.raises(SunSpecDecodeError, match="mandatory"):
        parse_controls(registers)
