"""A SunSpec inverter simulated by a real pymodbus Modbus TCP server on 127.0.0.1.

It serves a register map built the way SunSpec lays one out (the "SunS" marker, model 1,
an inverter model 101-103, optionally model 123, the end model) and records every write, so
tests check what the integration sent on the wire. Writes land in the map as a device would
store them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from tests.loopback import free_port

WRITE_FUNCTIONS = (6, 16)

# Offsets of the points the tests look at, after a model's id and length.
W, W_SF, WH, WH_SF, ST = 12, 13, 22, 24, 36
WMAXLIMPCT, WINTMS, RVRTTMS, RMPTMS, ENA, WMAXLIMPCT_SF = 3, 4, 5, 6, 7, 21


def _string(text: str, registers: int) -> list[int]:
    raw = text.encode("ascii").ljust(registers * 2, b"\0")
    return [int.from_bytes(raw[i : i + 2], "big") for i in range(0, registers * 2, 2)]


def _signed(value: int) -> int:
    return value & 0xFFFF


@dataclass(frozen=True)
class Write:
    """One write request as the inverter received it."""

    address: int
    values: tuple[int, ...]


class SunSpecInverter:
    """An inverter's Modbus map, served over TCP."""

    def __init__(
        self,
        *,
        unit_id: int = 1,
        base: int = 40000,
        inverter_model: int = 103,
        controls: bool = True,
        manufacturer: str = "Fronius",
        model: str = "Symo 8.2-3-M",
        version: str = "3.14.1-2",
        serial: str = "28176543",
    ) -> None:
        """Lay out the map; the inverter produces 4.2 kW and has made 12.345 MWh."""
        self.unit_id = unit_id
        self.base = base
        self.port = 0  # chosen when it first listens
        self.writes: list[Write] = []
        self.refuse_writes = False
        # Cleared: the inverter keeps its connections open but answers nothing.
        self.answering = asyncio.Event()
        self.answering.set()
        self._server: ModbusTcpServer | None = None
        common = (
            _string(manufacturer, 16)
            + _string(model, 16)
            + _string("", 8)
            + _string(version, 8)
            + _string(serial, 16)
            + [unit_id]
        )
        inverter = [0xFFFF] * 50
        inverter[W], inverter[W_SF] = 4200, 0
        inverter[14], inverter[15] = 5001, _signed(-2)  # 50.01 Hz
        inverter[WH : WH + 2] = [0, 12345]
        inverter[WH_SF] = 3  # kWh counters: 12,345 kWh
        inverter[29], inverter[30] = 4350, 0  # DC power
        inverter[31], inverter[35] = 412, _signed(-1)  # 41.2 °C
        inverter[ST] = 4  # MPPT
        self.registers = [0x5375, 0x6E53, 1, len(common), *common]
        self.inverter_at = len(self.registers) + 2
        self.registers += [inverter_model, len(inverter), *inverter]
        self.controls_at: int | None = None
        if controls:
            block = [0] * 24
            block[2] = 1  # connected
            block[WMAXLIMPCT] = 1000  # 100.0 %
            block[WINTMS], block[RVRTTMS], block[RMPTMS] = 0, 0, 10
            block[WMAXLIMPCT_SF] = _signed(-1)
            self.controls_at = len(self.registers) + 2
            self.registers += [123, len(block), *block]
        self.registers += [0xFFFF, 0]

    @property
    def host(self) -> str:
        """Where the inverter listens."""
        return "127.0.0.1"

    async def start(self) -> None:
        """Listen (again) on the inverter's port."""
        self.port = self.port or free_port()
        device = SimDevice(
            id=self.unit_id,
            simdata=[SimData(self.base, values=self.registers, datatype=DataType.UINT16)],
            action=self._action,
        )
        self._server = ModbusTcpServer(device, address=(self.host, self.port))
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        """Stop answering: close the listener and every connection."""
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    def inverter(self, offset: int) -> int:
        """A register of the inverter model."""
        return self.registers[self.inverter_at + offset]

    def set_inverter(self, offset: int, *values: int) -> None:
        """Change registers of the inverter model, as the device would while it runs."""
        start = self.inverter_at + offset
        self.registers[start : start + len(values)] = [_signed(v) for v in values]

    def control(self, offset: int) -> int:
        """A register of the immediate controls."""
        assert self.controls_at is not None
        return self.registers[self.controls_at + offset]

    def set_control(self, offset: int, value: int) -> None:
        """Change a control register, as the device would (e.g. its revert timer ran out)."""
        assert self.controls_at is not None
        self.registers[self.controls_at + offset] = value

    def control_writes(self) -> list[Write]:
        """The writes that went to the immediate controls, relative to the model's start."""
        assert self.controls_at is not None
        start = self.base + self.controls_at
        return [Write(w.address - start, w.values) for w in self.writes]

    async def _action(  # noqa: PLR0917 - the signature pymodbus calls
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        await self.answering.wait()
        if function_code in WRITE_FUNCTIONS and set_values is not None:
            if self.refuse_writes:
                return ExcCodes.DEVICE_FAILURE
            values = tuple(int(value) for value in set_values)
            self.writes.append(Write(address, values))
            offset = address - start_address
            self.registers[offset : offset + len(values)] = values
        current_registers[:] = self.registers
        return None
