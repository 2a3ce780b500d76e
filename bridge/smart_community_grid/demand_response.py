"""Demand-response event bodies, as the scenario runner and ``publish-event`` post them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from smart_community_protocol import format_datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DemandResponse:
    """One demand-response signal: a payload held for ``duration`` from ``start``."""

    program_id: str
    name: str
    payload_type: str
    value: float | int | str | bool
    start: datetime
    duration: str
    randomize_start: str | None = None
    units: str | None = None
    priority: int | None = None
    targets: Sequence[str] = ()
    report_descriptors: Sequence[dict[str, Any]] = field(default=())

    def event_body(self) -> dict[str, Any]:
        """The eventRequest body: one interval carrying the payload."""
        descriptor: dict[str, Any] = {
            "objectType": "EVENT_PAYLOAD_DESCRIPTOR",
            "payloadType": self.payload_type,
        }
        if self.units is not None:
            descriptor["units"] = self.units
        period = {"start": format_datetime(self.start), "duration": self.duration}
        if self.randomize_start is not None:
            period["randomizeStart"] = self.randomize_start
        body: dict[str, Any] = {
            "programID": self.program_id,
            "eventName": self.name,
            "payloadDescriptors": [descriptor],
            "intervalPeriod": period,
            "intervals": [
                {"id": 0, "payloads": [{"type": self.payload_type, "values": [self.value]}]}
            ],
        }
        if self.priority is not None:
            body["priority"] = self.priority
        if self.targets:
            body["targets"] = list(self.targets)
        if self.report_descriptors:
            body["reportDescriptors"] = [dict(item) for item in self.report_descriptors]
        return body
