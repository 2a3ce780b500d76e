"""The one Modbus TCP client of the integration: a SunSpec inverter's registers, typed.

Every read and write of an inverter goes through ``SunSpecClient``; pymodbus's errors come out
as this module's exceptions. The client connects when it is first used and again after a
failure, so a device that stopped answering is picked up again by the next call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from typing import Final

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.pdu import ModbusPDU

from .sunspec import (
    BASE_ADDRESSES,
    COMMON_LENGTH,
    COMMON_MODEL,
    CONTROLS_LENGTH,
    CONTROLS_MODEL,
    INVERTER_LENGTH,
    INVERTER_MODELS,
    MAX_MODELS,
    CommonModel,
    InverterReading,
    ModelLocation,
    PowerLimitState,
    RegisterWrite,
    SunSpecDecodeError,
    is_marker,
    next_model,
    parse_common,
    parse_controls,
    parse_inverter,
)

DEFAULT_PORT: Final = 502
DEFAULT_UNIT_ID: Final = 1
TIMEOUT: Final = 5.0
# Modbus TCP carries at most 125 registers in one read.
_MAX_READ: Final = 125

type _Send = Callable[[], Awaitable[ModbusPDU]]


class SunSpecError(Exception):
    """A SunSpec device could not be used."""


class SunSpecConnectionError(SunSpecError):
    """The device cannot be reached, or stopped answering."""


class SunSpecResponseError(SunSpecError):
    """The device answered with a Modbus exception or with registers that make no sense."""


class SunSpecNotFoundError(SunSpecError):
    """The device answers Modbus but holds no SunSpec map, or no model this client reads."""


@dataclass(frozen=True, kw_only=True, slots=True)
class SunSpecMap:
    """Where a device keeps the models this client reads."""

    base: int
    common: ModelLocation
    inverter: ModelLocation
    controls: ModelLocation | None


class SunSpecClient:
    """Reads and writes one SunSpec inverter over Modbus TCP."""

    def __init__(self, host: str, port: int = DEFAULT_PORT, unit_id: int = DEFAULT_UNIT_ID) -> None:
        """Address a device; nothing connects before the first call."""
        self.host = host
        self.port = port
        self.unit_id = unit_id
        # pymodbus's own reconnect loop is off: the caller's next poll reconnects.
        self._client = AsyncModbusTcpClient(
            host, port=port, timeout=TIMEOUT, retries=1, reconnect_delay=0
        )
        self._map: SunSpecMap | None = None
        self._lock = asyncio.Lock()

    @property
    def sunspec_map(self) -> SunSpecMap | None:
        """The map found by the last discovery."""
        return self._map

    async def close(self) -> None:
        """Close the connection."""
        self._client.close()

    async def discover(self) -> SunSpecMap:
        """Find the "SunS" marker and walk the model chain."""
        for base in BASE_ADDRESSES:
            try:
                marker = await self._read(base, 2)
            except SunSpecResponseError:
                continue  # an illegal address: the marker is elsewhere
            if is_marker(marker):
                break
        else:
            raise SunSpecNotFoundError("no SunS marker at 40000, 0 or 50000")
        models: dict[int, ModelLocation] = {}
        address = base + 2
        for _ in range(MAX_MODELS):
            location = _decoded(partial(next_model, address), await self._read(address, 2))
            if location is None:
                break
            models.setdefault(location.model_id, location)
            address = location.address + location.length
        else:
            raise SunSpecResponseError(f"the model chain does not end within {MAX_MODELS} models")
        self._map = _sunspec_map(base, models)
        return self._map

    async def read_common(self) -> CommonModel:
        """Model 1: manufacturer, model, version, serial number."""
        location = (await self._known_map()).common
        return _decoded(parse_common, await self._read(location.address, COMMON_LENGTH))

    async def read_inverter(self) -> InverterReading:
        """Model 101, 102 or 103, scaled."""
        location = (await self._known_map()).inverter
        return _decoded(parse_inverter, await self._read(location.address, INVERTER_LENGTH))

    async def read_power_limit(self) -> PowerLimitState | None:
        """The active power limit of model 123; None for an inverter without it."""
        if (location := (await self._known_map()).controls) is None:
            return None
        return _decoded(parse_controls, await self._read(location.address, CONTROLS_LENGTH))

    async def write(self, write: RegisterWrite) -> None:
        """Write consecutive holding registers in one request."""
        await self._request(
            partial(
                self._client.write_registers,
                write.address,
                list(write.values),
                device_id=self.unit_id,
            )
        )

    async def _known_map(self) -> SunSpecMap:
        return self._map if self._map is not None else await self.discover()

    async def _read(self, address: int, count: int) -> list[int]:
        registers: list[int] = []
        for start in range(address, address + count, _MAX_READ):
            size = min(_MAX_READ, address + count - start)
            response = await self._request(
                partial(
                    self._client.read_holding_registers,
                    start,
                    count=size,
                    device_id=self.unit_id,
                )
            )
            registers.extend(response.registers)
        return registers

    async def _request(self, send: _Send) -> ModbusPDU:
        # pymodbus bounds the connect and each answer by TIMEOUT, with one retry.
        async with self._lock:
            try:
                # The transaction layer's connect: the client's own adds a fixed sleep.
                if not self._client.connected and not await self._client.ctx.connect():
                    raise SunSpecConnectionError(f"cannot connect to {self.host}:{self.port}")
                response = await send()
            except ModbusException as err:
                # pymodbus raises for a lost or refused connection and for a missing answer.
                self._client.close()
                raise SunSpecConnectionError(f"{self.host}:{self.port}: {err}") from err
        if response.isError():
            raise SunSpecResponseError(
                f"unit {self.unit_id} refused function {response.function_code & 0x7F}"
                f" (exception code {response.exception_code})"
            )
        return response


def _sunspec_map(base: int, models: dict[int, ModelLocation]) -> SunSpecMap:
    if (common := models.get(COMMON_MODEL)) is None or common.length < COMMON_LENGTH:
        raise SunSpecNotFoundError("no common model (1)")
    inverter = next((models[m] for m in INVERTER_MODELS if m in models), None)
    if inverter is None or inverter.length < INVERTER_LENGTH:
        raise SunSpecNotFoundError(
            f"no integer inverter model (101, 102 or 103) among {sorted(models)}"
        )
    controls = models.get(CONTROLS_MODEL)
    if controls is not None and controls.length < CONTROLS_LENGTH:
        controls = None
    return SunSpecMap(base=base, common=common, inverter=inverter, controls=controls)


def _decoded[T](parse: Callable[[list[int]], T], registers: list[int]) -> T:
    try:
        return parse(registers)
    except SunSpecDecodeError as err:
        raise SunSpecResponseError(str(err)) from err
