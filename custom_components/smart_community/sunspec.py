"""SunSpec over Modbus: where an inverter keeps its models, and what their registers mean.

Pure codecs with no Home Assistant import and no I/O. A SunSpec device starts its map with the
"SunS" marker at one of a few well-known addresses, followed by a chain of models, each a model
id, a length and that many holding registers, ended by model 0xFFFF. This module knows the
common model (1), the integer inverter models (101, 102, 103) and the immediate controls (123).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
import math
from typing import Final

# "SunS" in two registers, big-endian.
SUNS_MARKER: Final = (0x5375, 0x6E53)
# Where devices put the marker, in the order SunSpec asks clients to try them.
BASE_ADDRESSES: Final = (40000, 0, 50000)
END_MODEL: Final = 0xFFFF
# A chain longer than this is a device answering garbage, not a SunSpec map.
MAX_MODELS: Final = 64

COMMON_MODEL: Final = 1
INVERTER_MODELS: Final = (101, 102, 103)  # single phase, split phase, three phase
CONTROLS_MODEL: Final = 123

COMMON_LENGTH: Final = 65
INVERTER_LENGTH: Final = 50
CONTROLS_LENGTH: Final = 24

# "Not implemented" markers of the SunSpec point types.
_UINT16_NA: Final = 0xFFFF
_INT16_NA: Final = 0x8000
_SUNSSF_NA: Final = 0x8000
_ACC32_NA: Final = 0

# Offsets within a model's registers (after its id and length).
_COMMON_MANUFACTURER: Final = slice(0, 16)
_COMMON_MODEL: Final = slice(16, 32)
_COMMON_VERSION: Final = slice(40, 48)
_COMMON_SERIAL: Final = slice(48, 64)

_INV_W: Final = 12
_INV_W_SF: Final = 13
_INV_HZ: Final = 14
_INV_HZ_SF: Final = 15
_INV_WH: Final = 22
_INV_WH_SF: Final = 24
_INV_DCW: Final = 29
_INV_DCW_SF: Final = 30
_INV_TMP_CAB: Final = 31
_INV_TMP_SF: Final = 35
_INV_ST: Final = 36

_CTL_WMAXLIMPCT: Final = 3
_CTL_WINTMS: Final = 4
_CTL_RVRTTMS: Final = 5
_CTL_RMPTMS: Final = 6
_CTL_ENA: Final = 7
_CTL_WMAXLIMPCT_SF: Final = 21


class SunSpecDecodeError(ValueError):
    """Registers that do not hold what the model says they hold."""


class InverterStatus(IntEnum):
    """Operating state of an inverter (St of models 101-103)."""

    OFF = 1
    SLEEPING = 2
    STARTING = 3
    MPPT = 4
    THROTTLED = 5
    SHUTTING_DOWN = 6
    FAULT = 7
    STANDBY = 8


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelLocation:
    """One model of the chain: its id, the address of its first data register, its length."""

    model_id: int
    address: int
    length: int


@dataclass(frozen=True, kw_only=True, slots=True)
class CommonModel:
    """Model 1: who made the device and which one it is."""

    manufacturer: str
    model: str
    version: str
    serial: str


@dataclass(frozen=True, kw_only=True, slots=True)
class InverterReading:
    """Models 101-103, scaled: what the inverter produces now and has produced."""

    ac_power: float | None  # W
    lifetime_energy: float | None  # Wh
    frequency: float | None  # Hz
    dc_power: float | None  # W
    cabinet_temperature: float | None  # °C
    status: InverterStatus | None


@dataclass(frozen=True, kw_only=True, slots=True)
class PowerLimitState:
    """Model 123's active power limit, as the inverter holds it."""

    percent: float | None  # of WMax; None when the inverter leaves it unimplemented
    enabled: bool
    revert_seconds: int | None
    window_seconds: int | None
    ramp_seconds: int | None
    scale_factor: int


def is_marker(registers: Sequence[int]) -> bool:
    """Whether two registers hold the "SunS" marker."""
    return tuple(registers[:2]) == SUNS_MARKER


def next_model(address: int, header: Sequence[int]) -> ModelLocation | None:
    """The model whose header (id, length) was read at ``address``; None at the chain's end."""
    _check_length(header, 2, "model header")
    model_id, length = header[0], header[1]
    if model_id == END_MODEL:
        return None
    return ModelLocation(model_id=model_id, address=address + 2, length=length)


def decode_string(registers: Sequence[int]) -> str:
    """A SunSpec string: two ASCII characters per register, padded with NULs."""
    raw = b"".join(register.to_bytes(2, "big") for register in registers)
    return raw.split(b"\0", 1)[0].decode("ascii", errors="replace").strip()


def _uint16(value: int) -> int | None:
    return None if value == _UINT16_NA else value


def _int16(value: int) -> int | None:
    if value == _INT16_NA:
        return None
    return value - 0x10000 if value & 0x8000 else value


def _scale_factor(value: int) -> int | None:
    if value == _SUNSSF_NA:
        return None
    factor = value - 0x10000 if value & 0x8000 else value
    # SunSpec bounds scale factors to -10..10; anything else is a misread map.
    if not -10 <= factor <= 10:
        raise SunSpecDecodeError(f"scale factor {factor} out of range")
    return factor


def _scaled(value: int | None, factor: int | None) -> float | None:
    if value is None or factor is None:
        return None
    return value * 10.0**factor


def _acc32(high: int, low: int) -> int | None:
    value = high << 16 | low
    return None if value == _ACC32_NA else value


def _check_length(registers: Sequence[int], length: int, name: str) -> None:
    if len(registers) < length:
        raise SunSpecDecodeError(f"{name}: {len(registers)} registers, {length} expected")


def parse_common(registers: Sequence[int]) -> CommonModel:
    """Decode model 1."""
    _check_length(registers, COMMON_LENGTH, "common model")
    return CommonModel(
        manufacturer=decode_string(registers[_COMMON_MANUFACTURER]),
        model=decode_string(registers[_COMMON_MODEL]),
        version=decode_string(registers[_COMMON_VERSION]),
        serial=decode_string(registers[_COMMON_SERIAL]),
    )


def parse_inverter(registers: Sequence[int]) -> InverterReading:
    """Decode model 101, 102 or 103 and apply its scale factors."""
    _check_length(registers, INVERTER_LENGTH, "inverter model")
    try:
        status: InverterStatus | None = InverterStatus(registers[_INV_ST])
    except ValueError:  # unimplemented (0xFFFF) or a state SunSpec does not define
        status = None
    return InverterReading(
        ac_power=_scaled(_int16(registers[_INV_W]), _scale_factor(registers[_INV_W_SF])),
        lifetime_energy=_scaled(
            _acc32(registers[_INV_WH], registers[_INV_WH + 1]),
            _scale_factor(registers[_INV_WH_SF]),
        ),
        frequency=_scaled(_uint16(registers[_INV_HZ]), _scale_factor(registers[_INV_HZ_SF])),
        dc_power=_scaled(_int16(registers[_INV_DCW]), _scale_factor(registers[_INV_DCW_SF])),
        cabinet_temperature=_scaled(
            _int16(registers[_INV_TMP_CAB]), _scale_factor(registers[_INV_TMP_SF])
        ),
        status=status,
    )


def parse_controls(registers: Sequence[int]) -> PowerLimitState:
    """Decode the active power limit of model 123."""
    _check_length(registers, CONTROLS_LENGTH, "immediate controls model")
    factor = _scale_factor(registers[_CTL_WMAXLIMPCT_SF])
    if factor is None:
        raise SunSpecDecodeError("immediate controls: WMaxLimPct_SF is mandatory")
    return PowerLimitState(
        percent=_scaled(_uint16(registers[_CTL_WMAXLIMPCT]), factor),
        enabled=registers[_CTL_ENA] == 1,
        revert_seconds=_uint16(registers[_CTL_RVRTTMS]),
        window_seconds=_uint16(registers[_CTL_WINTMS]),
        ramp_seconds=_uint16(registers[_CTL_RMPTMS]),
        scale_factor=factor,
    )


def encode_percent(percent: float, scale_factor: int) -> int:
    """WMaxLimPct for a percentage, in the inverter's scale factor."""
    if not 0 <= percent <= 100:
        raise ValueError(f"power limit {percent} % out of 0-100")
    return min(math.floor(percent / 10.0**scale_factor + 0.5), _UINT16_NA - 1)


@dataclass(frozen=True, kw_only=True, slots=True)
class RegisterWrite:
    """Consecutive holding registers to write in one request (function 16)."""

    address: int
    values: tuple[int, ...]


def limit_write(
    controls: ModelLocation, state: PowerLimitState, percent: float, revert_seconds: int
) -> RegisterWrite:
    """Set and enable a limit with its revert timer, in one request.

    WMaxLimPct through WMaxLim_Ena are consecutive: one write sets the limit, the revert timer
    and the enable together, so the inverter never holds a limit without its timer. The time
    window and the ramp keep what the inverter has (0 where it leaves them unimplemented).
    """
    if not 0 < revert_seconds < _UINT16_NA:
        raise ValueError(f"revert timer {revert_seconds} s out of range")
    return RegisterWrite(
        address=controls.address + _CTL_WMAXLIMPCT,
        values=(
            encode_percent(percent, state.scale_factor),
            state.window_seconds or 0,
            revert_seconds,
            state.ramp_seconds or 0,
            1,
        ),
    )


def release_write(controls: ModelLocation) -> RegisterWrite:
    """Lift the limit: WMaxLim_Ena off."""
    return RegisterWrite(address=controls.address + _CTL_ENA, values=(0,))
