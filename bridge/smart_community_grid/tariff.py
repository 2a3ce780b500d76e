"""A time-of-use tariff as OpenADR objects: a PRICE program and one event per local day."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from smart_community_protocol import EventPayloadType, format_datetime

from .scenario import Tariff, TariffPeriod


def format_duration(delta: timedelta) -> str:
    """An ISO 8601 duration such as PT7H30M for a whole number of seconds."""
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [
        f"{hours}H" if hours else "",
        f"{minutes}M" if minutes else "",
        f"{seconds}S" if seconds else "",
    ]
    return "PT" + ("".join(parts) or "0S")


def _descriptors(tariff: Tariff) -> list[dict[str, Any]]:
    types = [EventPayloadType.PRICE] + (
        [EventPayloadType.EXPORT_PRICE] if tariff.export_periods else []
    )
    return [
        {
            "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
            "payloadType": str(payload_type),
            "units": tariff.units,
            "currency": tariff.currency,
        }
        for payload_type in types
    ]


def tariff_program(tariff: Tariff) -> dict[str, Any]:
    """The program request body that announces the tariff."""
    return {"programName": tariff.program, "payloadDescriptors": _descriptors(tariff)}


def _price_at(periods: tuple[TariffPeriod, ...], moment: time) -> float:
    return [period.price for period in periods if period.start <= moment][-1]


def tariff_day_event(tariff: Tariff, program_id: str, day: date) -> dict[str, Any]:
    """The event request body with the day's prices, one interval per tariff period.

    Interval boundaries are the local start times of the import and export periods, so a day
    with a daylight-saving change still covers exactly local midnight to local midnight.
    """
    zone = tariff.timezone
    starts = sorted({p.start for p in tariff.periods} | {p.start for p in tariff.export_periods})
    edges = [datetime.combine(day, start, zone).astimezone(UTC) for start in starts]
    edges.append(datetime.combine(day + timedelta(days=1), time(0), zone).astimezone(UTC))
    intervals = []
    for index, start in enumerate(starts):
        payloads = [{"type": "PRICE", "values": [_price_at(tariff.periods, start)]}]
        if tariff.export_periods:
            payloads.append(
                {"type": "EXPORT_PRICE", "values": [_price_at(tariff.export_periods, start)]}
            )
        intervals.append(
            {
                "id": index,
                "intervalPeriod": {
                    "start": format_datetime(edges[index]),
                    "duration": format_duration(edges[index + 1] - edges[index]),
                },
                "payloads": payloads,
            }
        )
    return {
        "programID": program_id,
        "eventName": f"{tariff.program} {day.isoformat()}",
        "payloadDescriptors": _descriptors(tariff),
        # The day as a whole; each interval has its own period. (The specification lets the
        # duration be left out, but OpenADR clients commonly require it.)
        "intervalPeriod": {
            "start": format_datetime(edges[0]),
            "duration": format_duration(edges[-1] - edges[0]),
        },
        "intervals": intervals,
    }
