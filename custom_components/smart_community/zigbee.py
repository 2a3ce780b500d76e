"""ZigBee loads: what a zigpy device says about being switched off for demand response.

Pure domain logic on zigpy's own objects, with no Home Assistant import. A ZigBee load is a
device with an On/Off server cluster; what it draws now comes from the attribute reports
zigpy has cached for its Electrical Measurement (0x0B04) or Metering (0x0702) cluster, scaled
by the multiplier and divisor the device reports beside them. A load is fit to be driven only
while it is reachable and mains powered: a sleepy battery device takes a command late or never.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Final

from zigpy.device import Device
from zigpy.zcl import Cluster
from zigpy.zcl.clusters.general import OnOff
from zigpy.zcl.clusters.homeautomation import ElectricalMeasurement
from zigpy.zcl.clusters.smartenergy import Metering

# Metering's unit_of_measure 0: kW (and kWh), in binary; 0x80 and up are BCD forms.
_METERING_KILOWATT: Final = 0x00


class DriveRefusal(StrEnum):
    """Why a ZigBee load must not be driven now."""

    UNAVAILABLE = "unavailable"  # ZHA has not heard from it: a command would be lost
    NOT_MAINS_POWERED = "not_mains_powered"  # a sleepy end device takes commands late or never
    NO_ON_OFF = "no_on_off"  # nothing to switch


def _server_clusters(device: Device, cluster_id: int) -> Iterator[Cluster]:
    for endpoint_id, endpoint in device.endpoints.items():
        if endpoint_id == 0:  # the ZDO endpoint
            continue
        if (cluster := endpoint.in_clusters.get(cluster_id)) is not None:
            yield cluster


def has_on_off(device: Device) -> bool:
    """Whether the device has something to switch (an On/Off server cluster)."""
    return next(_server_clusters(device, OnOff.cluster_id), None) is not None


def _scaled(value: object, multiplier: object, divisor: object) -> float | None:
    if not isinstance(value, int):
        return None
    # A device that reports no multiplier or divisor means 1; a zero divisor is a broken one.
    multiplier = multiplier if isinstance(multiplier, int) else 1
    divisor = divisor if isinstance(divisor, int) else 1
    if divisor == 0:
        return None
    return value * multiplier / divisor


def measured_power(device: Device) -> float | None:
    """What the load draws now, in W, from the last reports zigpy cached; None if unknown."""
    for cluster in _server_clusters(device, ElectricalMeasurement.cluster_id):
        power = _scaled(
            cluster.get(ElectricalMeasurement.AttributeDefs.active_power.id),
            cluster.get(ElectricalMeasurement.AttributeDefs.ac_power_multiplier.id),
            cluster.get(ElectricalMeasurement.AttributeDefs.ac_power_divisor.id),
        )
        if power is not None:
            return power
    for cluster in _server_clusters(device, Metering.cluster_id):
        if cluster.get(Metering.AttributeDefs.unit_of_measure.id) != _METERING_KILOWATT:
            continue
        kilowatts = _scaled(
            cluster.get(Metering.AttributeDefs.instantaneous_demand.id),
            cluster.get(Metering.AttributeDefs.multiplier.id),
            cluster.get(Metering.AttributeDefs.divisor.id),
        )
        if kilowatts is not None:
            return kilowatts * 1000
    return None


def drive_refusal(device: Device, *, available: bool) -> DriveRefusal | None:
    """Why the load must not be driven now; None when it may be."""
    if not has_on_off(device):
        return DriveRefusal.NO_ON_OFF
    if not available:
        return DriveRefusal.UNAVAILABLE
    if device.node_desc is None or not device.node_desc.is_mains_powered:
        return DriveRefusal.NOT_MAINS_POWERED
    return None
