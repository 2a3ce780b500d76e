"""The audit log of grid-requested actions: what the home did to which device, and how it went.

Pure domain logic with no Home Assistant import. The log is bounded: the oldest entries go first.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
import csv
from dataclasses import asdict, dataclass
from datetime import datetime
import io
from typing import Any, Final

from .protocol import format_datetime, parse_datetime

MAX_ENTRIES: Final = 1000
COLUMNS: Final = ("time", "event", "entity", "action", "before", "after", "outcome")


@dataclass(frozen=True, kw_only=True, slots=True)
class AuditEntry:
    """One action on one device."""

    time: datetime
    event: str
    entity: str
    action: str
    before: str
    after: str
    outcome: str

    def to_json(self) -> dict[str, Any]:
        """The entry as stored."""
        return {**asdict(self), "time": format_datetime(self.time)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AuditEntry:
        """A stored entry."""
        return cls(**{**data, "time": parse_datetime(data["time"])})


class AuditLog:
    """The latest ``limit`` entries, oldest first."""

    def __init__(self, entries: Iterable[AuditEntry] = (), *, limit: int = MAX_ENTRIES) -> None:
        """Start from stored entries, keeping the latest ``limit``."""
        self._entries: deque[AuditEntry] = deque(entries, maxlen=limit)

    def __len__(self) -> int:
        """How many entries are kept."""
        return len(self._entries)

    def __iter__(self) -> Any:
        """The entries, oldest first."""
        return iter(self._entries)

    def append(self, entry: AuditEntry) -> None:
        """Record an entry; beyond the limit the oldest is dropped."""
        self._entries.append(entry)

    def to_json(self) -> list[dict[str, Any]]:
        """The entries as stored."""
        return [entry.to_json() for entry in self._entries]

    def to_csv(self) -> str:
        """The entries as CSV (RFC 4180), with a header row."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(COLUMNS)
        for entry in self._entries:
            row = entry.to_json()
            writer.writerow([_cell(row[column]) for column in COLUMNS])
        return buffer.getvalue()


def _cell(value: str) -> str:
    # A spreadsheet would run a cell that starts with these as a formula (CSV injection).
    return f"'{value}" if value[:1] in ("=", "+", "-", "@") else value
