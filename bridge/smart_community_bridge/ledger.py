"""The bridge's durable ledger: SQLite on disk, one writer, versioned migrations.

Signals (signed grid objects, exactly as received) get a downstream sequence number when they
are committed; homes resume from the last sequence they acknowledged. The signal ledger commits
with ``synchronous=FULL`` so a signal acknowledged to the grid survives ``kill -9``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
import json
from pathlib import Path
import time
from typing import Any, Self

import aiosqlite

# Each entry migrates the schema from version N to N + 1; never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE signals (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        object_type TEXT NOT NULL,
        object_id TEXT NOT NULL,
        operation TEXT NOT NULL,
        issuer TEXT NOT NULL,
        version INTEGER NOT NULL,
        audience TEXT NOT NULL,
        expires INTEGER NOT NULL,
        body TEXT NOT NULL,
        received_at REAL NOT NULL,
        UNIQUE (issuer, object_type, object_id, version)
    );
    CREATE INDEX signals_by_object ON signals (object_type, object_id, seq);
    CREATE TABLE homes (
        home_id TEXT PRIMARY KEY,
        feeder TEXT NOT NULL,
        transformer TEXT NOT NULL,
        credential_hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE grid_keys (
        kid TEXT PRIMARY KEY,
        issuer TEXT NOT NULL,
        jwk TEXT NOT NULL,
        pinned_at REAL NOT NULL
    );
    """,
    """
    CREATE TABLE enrollment_codes (
        code_hash TEXT PRIMARY KEY,
        home_id TEXT NOT NULL,
        feeder TEXT NOT NULL,
        transformer TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        used_at REAL
    );
    CREATE TABLE operator_tokens (
        token_hash TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL
    );
    ALTER TABLE homes ADD COLUMN credential_changed_at REAL;
    """,
    """
    CREATE TABLE reports (
        id TEXT PRIMARY KEY,
        home_id TEXT NOT NULL,
        event_id TEXT NOT NULL,
        received_at REAL NOT NULL,
        body TEXT NOT NULL
    );
    CREATE INDEX reports_by_event ON reports (event_id, home_id);
    CREATE INDEX reports_by_time ON reports (received_at);
    CREATE TABLE readings (
        home_id TEXT NOT NULL,
        feeder TEXT NOT NULL,
        transformer TEXT NOT NULL,
        payload_type TEXT NOT NULL,
        start REAL NOT NULL,
        duration REAL NOT NULL,
        value REAL NOT NULL
    );
    CREATE INDEX readings_by_time ON readings (start);
    CREATE INDEX readings_by_home ON readings (home_id, start);
    CREATE TABLE rollups (
        level TEXT NOT NULL,
        place TEXT NOT NULL,
        payload_type TEXT NOT NULL,
        bucket REAL NOT NULL,
        total REAL NOT NULL,
        count INTEGER NOT NULL,
        homes INTEGER NOT NULL,
        minimum REAL NOT NULL,
        maximum REAL NOT NULL,
        PRIMARY KEY (level, place, payload_type, bucket)
    ) WITHOUT ROWID;
    """,
    """
    CREATE TABLE upstream_reports (
        event_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        reported_until REAL,
        summary TEXT,
        sent_at REAL,
        final INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL,
        PRIMARY KEY (event_id, topic)
    ) WITHOUT ROWID;
    """,
)


@dataclass(frozen=True, slots=True)
class StoredSignal:
    """A committed signal and its downstream sequence."""

    seq: int
    object_type: str
    object_id: str
    operation: str
    audience: tuple[str, ...]
    expires: int
    body: str


# Values of some payload types in stored home reports (see ReportValue), which SQLite extracts
# from the JSON bodies: of some events by row id, or of one event in (event, home) index order.
_NEW_VALUES = (
    "SELECT r.event_id, r.rowid, r.home_id, res.value ->> '$.resourceName',"
    " coalesce(i.value ->> '$.intervalPeriod.start', res.value ->> '$.intervalPeriod.start',"
    " '#' || (i.value ->> '$.id')), p.value ->> '$.type', v.key, v.value"
    " FROM reports AS r NOT INDEXED,"
    " json_each(r.body, '$.resources') AS res, json_each(res.value, '$.intervals') AS i,"
    " json_each(i.value, '$.payloads') AS p, json_each(p.value, '$.values') AS v"
    " WHERE r.rowid > ? AND r.rowid <= ? AND r.event_id IN (SELECT value FROM json_each(?))"
    " AND p.value ->> '$.type' IN (SELECT value FROM json_each(?))"
    " ORDER BY r.rowid, res.key, i.key, p.key, v.key"
)
_EVENT_VALUES_PAGE = (
    "SELECT r.event_id, r.rowid, r.home_id, res.value ->> '$.resourceName',"
    " coalesce(i.value ->> '$.intervalPeriod.start', res.value ->> '$.intervalPeriod.start',"
    " '#' || (i.value ->> '$.id')), p.value ->> '$.type', v.key, v.value"
    " FROM reports AS r INDEXED BY reports_by_event,"
    " json_each(r.body, '$.resources') AS res, json_each(res.value, '$.intervals') AS i,"
    " json_each(i.value, '$.payloads') AS p, json_each(p.value, '$.values') AS v"
    " WHERE r.event_id = ? AND (r.home_id, r.rowid) > (?, ?) AND r.rowid <= ?"
    " AND p.value ->> '$.type' IN (SELECT value FROM json_each(?))"
    " AND (r.home_id, r.rowid) <= (?, ?)"
    " ORDER BY r.home_id, r.rowid, res.key, i.key, p.key, v.key"
)
_EVENT_VALUES_REST = (
    "SELECT r.event_id, r.rowid, r.home_id, res.value ->> '$.resourceName',"
    " coalesce(i.value ->> '$.intervalPeriod.start', res.value ->> '$.intervalPeriod.start',"
    " '#' || (i.value ->> '$.id')), p.value ->> '$.type', v.key, v.value"
    " FROM reports AS r INDEXED BY reports_by_event,"
    " json_each(r.body, '$.resources') AS res, json_each(res.value, '$.intervals') AS i,"
    " json_each(i.value, '$.payloads') AS p, json_each(p.value, '$.values') AS v"
    " WHERE r.event_id = ? AND (r.home_id, r.rowid) > (?, ?) AND r.rowid <= ?"
    " AND p.value ->> '$.type' IN (SELECT value FROM json_each(?))"
    " ORDER BY r.home_id, r.rowid, res.key, i.key, p.key, v.key"
)


@dataclass(frozen=True, slots=True)
class ReportValue:
    """One value of one payload in a stored home report."""

    event_id: str
    row: int  # the report's row id: later reports have higher ones
    home: str
    resource: str | None
    interval: str  # the interval's start (its own or its resource's), else "#<interval id>"
    payload_type: str
    index: int  # position in the payload's values
    value: Any


@dataclass(frozen=True, slots=True)
class UpstreamMark:
    """What the bridge has reported to the grid on one topic of one event.

    A telemetry topic (one report descriptor) reported every bucket before ``reported_until``;
    the responses topic last sent ``summary`` (JSON) at ``sent_at``, ``final`` once the event
    had ended.
    """

    event_id: str
    topic: str
    reported_until: float | None = None
    summary: str | None = None
    sent_at: float | None = None
    final: bool = False


@dataclass(frozen=True, slots=True)
class HomeRecord:
    """A home the bridge serves."""

    home_id: str
    feeder: str
    transformer: str
    revoked: bool


class Ledger:
    """Async access to the bridge database (aiosqlite runs it on one dedicated thread)."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        """Use an open connection; prefer ``Ledger.open``."""
        self._db = connection
        # One connection serves every coroutine: a multi-statement transaction must not take in
        # another coroutine's statement, so writes queue behind this lock.
        self._writing = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Self:
        """Open (creating and migrating as needed) the database at path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, isolation_level=None)
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA synchronous=FULL")
        await connection.execute("PRAGMA foreign_keys=ON")
        ledger = cls(connection)
        await ledger.migrate()
        return ledger

    async def close(self) -> None:
        """Close the database."""
        await self._db.close()

    async def schema_version(self) -> int:
        """The schema version the database is at."""
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def migrate(self) -> int:
        """Apply pending migrations, each in its own transaction; returns the final version."""
        version = await self.schema_version()
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"database schema {version} is newer than this bridge knows ({len(MIGRATIONS)})"
            )
        for target, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await self._db.executescript(
                f"BEGIN IMMEDIATE;{script};PRAGMA user_version={target};COMMIT;"
            )
        return len(MIGRATIONS)

    # --- signals ---------------------------------------------------------------------------

    async def append_signal(
        self,
        *,
        object_type: str,
        object_id: str,
        operation: str,
        issuer: str,
        version: int,
        audience: Iterable[str],
        expires: int,
        body: str,
    ) -> StoredSignal | None:
        """Commit a verified signal; None when that exact version is already stored."""
        targets = tuple(audience)
        async with (
            self._writing,
            self._db.execute(
                "INSERT OR IGNORE INTO signals (object_type, object_id, operation, issuer, version,"
                " audience, expires, body, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING seq",
                (
                    object_type,
                    object_id,
                    operation,
                    issuer,
                    version,
                    json.dumps(targets),
                    expires,
                    body,
                    time.time(),
                ),
            ) as cursor,
        ):
            row = await cursor.fetchone()
        if row is None:
            return None
        return StoredSignal(row[0], object_type, object_id, operation, targets, expires, body)

    async def signals_since(self, seq: int, *, now: float) -> list[StoredSignal]:
        """Signals after seq whose signatures are still valid, in order."""
        async with self._db.execute(
            "SELECT seq, object_type, object_id, operation, audience, expires, body FROM signals"
            " WHERE seq > ? AND expires >= ? ORDER BY seq",
            (seq, int(now)),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_signal(row) for row in rows]

    async def current_objects(self, object_type: str, *, now: float) -> list[StoredSignal]:
        """The latest version of every object of a type that is not deleted nor expired."""
        async with self._db.execute(
            "SELECT seq, object_type, object_id, operation, audience, expires, body FROM signals s"
            " WHERE object_type = ? AND seq = (SELECT max(seq) FROM signals"
            "   WHERE object_type = s.object_type AND object_id = s.object_id)"
            " AND operation != 'DELETE' AND expires >= ? ORDER BY seq",
            (object_type, int(now)),
        ) as cursor:
            rows = await cursor.fetchall()
        return [_signal(row) for row in rows]

    async def latest_versions(self) -> list[tuple[str, str, str, int, int]]:
        """(issuer, objectType, id, version, expires) of the newest version of each object."""
        async with self._db.execute(
            "SELECT issuer, object_type, object_id, max(version), expires FROM signals"
            " GROUP BY issuer, object_type, object_id"
        ) as cursor:
            rows = await cursor.fetchall()
        return [(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4])) for r in rows]

    async def last_seq(self) -> int:
        """The highest downstream sequence committed so far."""
        async with self._db.execute("SELECT coalesce(max(seq), 0) FROM signals") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    # --- telemetry -------------------------------------------------------------------------

    async def append_telemetry(
        self,
        reports: Sequence[tuple[str, str, str, float, str]],
        readings: Sequence[tuple[str, str, str, str, float, float, float]],
        rollups: Sequence[tuple[str, str, str, float, float, int, int, float, float]],
    ) -> None:
        """Commit a batch of reports, their readings and the rollups they changed, at once."""
        async with self._writing:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                await self._db.executemany(
                    "INSERT INTO reports (id, home_id, event_id, received_at, body)"
                    " VALUES (?, ?, ?, ?, ?)",
                    reports,
                )
                await self._db.executemany(
                    "INSERT INTO readings (home_id, feeder, transformer, payload_type, start,"
                    " duration, value) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    readings,
                )
                await self._db.executemany(
                    "INSERT OR REPLACE INTO rollups (level, place, payload_type, bucket, total,"
                    " count, homes, minimum, maximum) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rollups,
                )
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise

    async def readings_since(
        self, start: float
    ) -> list[tuple[str, str, str, str, float, float, float]]:
        """Stored readings from start on (to rebuild open buckets after a restart)."""
        async with self._db.execute(
            "SELECT home_id, feeder, transformer, payload_type, start, duration, value"
            " FROM readings WHERE start >= ?",
            (start,),
        ) as cursor:
            rows = await cursor.fetchall()
        return [(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    async def rollups(
        self, level: str, place: str, start: float, end: float
    ) -> list[tuple[str, float, float, int, int, float, float]]:
        """(payload type, bucket, total, count, homes, minimum, maximum) of a place, in order."""
        async with self._db.execute(
            "SELECT payload_type, bucket, total, count, homes, minimum, maximum FROM rollups"
            " WHERE level = ? AND place = ? AND bucket >= ? AND bucket < ?"
            " ORDER BY bucket, payload_type",
            (level, place, start, end),
        ) as cursor:
            rows = await cursor.fetchall()
        return [(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    async def rollup_series(
        self, level: str, places: Sequence[str], payload_type: str, start: float, end: float
    ) -> list[tuple[str, float, float, int, int]]:
        """(place, bucket, total, count, homes) of one type at several places, by bucket."""
        async with self._db.execute(
            "SELECT place, bucket, total, count, homes FROM rollups WHERE level = ?"
            " AND place IN (SELECT value FROM json_each(?)) AND payload_type = ?"
            " AND bucket >= ? AND bucket < ? ORDER BY bucket, place",
            (level, json.dumps(list(places)), payload_type, start, end),
        ) as cursor:
            rows = await cursor.fetchall()
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def report_high_water(self) -> int:
        """The highest row id of committed home reports (0 when there are none).

        Taken between write transactions, so every report up to it is committed: rows are only
        ever appended with higher ids.
        """
        async with (
            self._writing,
            self._db.execute("SELECT coalesce(max(rowid), 0) FROM reports") as cursor,
        ):
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def report_values(
        self, event_ids: Sequence[str], after: int, until: int, payload_types: Sequence[str]
    ) -> list[ReportValue]:
        """Values of some payload types in home reports on some events, ``after < rowid <= until``.

        Walks the new rows by row id (their cost is that of the rows, however long the events'
        history). SQLite extracts the values from the stored JSON, so only they leave it.
        """
        async with self._db.execute(
            _NEW_VALUES,
            (after, until, json.dumps(list(event_ids)), json.dumps(list(payload_types))),
        ) as cursor:
            rows = await cursor.fetchall()
        return [ReportValue(*row) for row in rows]

    async def event_report_page(
        self, event_id: str, until: int, after: tuple[str, int], limit: int
    ) -> tuple[str, int] | None:
        """The (home, row id) that ends the next ``limit`` reports on an event, in index order.

        None when fewer are left: the page runs to the end.
        """
        async with self._db.execute(
            "SELECT home_id, rowid FROM reports INDEXED BY reports_by_event"
            " WHERE event_id = ? AND (home_id, rowid) > (?, ?) AND rowid <= ?"
            " ORDER BY home_id, rowid LIMIT 1 OFFSET ?",
            (event_id, *after, until, limit - 1),
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else (str(row[0]), int(row[1]))

    async def event_report_values(
        self,
        event_id: str,
        until: int,
        after: tuple[str, int],
        upto: tuple[str, int] | None,
        payload_types: Sequence[str],
    ) -> list[ReportValue]:
        """Values of some payload types in the reports on one event between two index positions.

        Uses the (event, home) index, so a page costs its own rows; rows come home by home.
        """
        types = json.dumps(list(payload_types))
        async with self._db.execute(
            _EVENT_VALUES_REST if upto is None else _EVENT_VALUES_PAGE,
            (event_id, *after, until, types, *(upto or ())),
        ) as cursor:
            rows = await cursor.fetchall()
        return [ReportValue(*row) for row in rows]

    async def upstream_marks(self) -> list[UpstreamMark]:
        """Everything recorded as reported upstream."""
        async with self._db.execute(
            "SELECT event_id, topic, reported_until, summary, sent_at, final FROM upstream_reports"
        ) as cursor:
            rows = await cursor.fetchall()
        return [UpstreamMark(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    async def mark_upstream(self, mark: UpstreamMark) -> None:
        """Record (replace) what has been reported on a topic of an event."""
        async with self._writing:
            await self._db.execute(
                "INSERT OR REPLACE INTO upstream_reports (event_id, topic, reported_until,"
                " summary, sent_at, final, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    mark.event_id,
                    mark.topic,
                    mark.reported_until,
                    mark.summary,
                    mark.sent_at,
                    int(mark.final),
                    time.time(),
                ),
            )

    async def prune_upstream_marks(self, before: float) -> None:
        """Forget reporting records not touched since ``before``."""
        async with self._writing:
            await self._db.execute("DELETE FROM upstream_reports WHERE updated_at < ?", (before,))

    async def prune_telemetry(self, raw_before: float, rollups_before: float) -> None:
        """Drop raw reports and readings, and rollups, older than their retention."""
        async with self._writing:
            await self._db.execute("DELETE FROM reports WHERE received_at < ?", (raw_before,))
            await self._db.execute("DELETE FROM readings WHERE start < ?", (raw_before,))
            await self._db.execute("DELETE FROM rollups WHERE bucket < ?", (rollups_before,))

    # --- homes ---------------------------------------------------------------------------

    async def add_home(
        self, home_id: str, feeder: str, transformer: str, credential_hash: str
    ) -> None:
        """Register a home, or re-register it (new place, new credential, no longer revoked)."""
        async with self._writing:
            await self._upsert_home(home_id, feeder, transformer, credential_hash)

    async def _upsert_home(
        self, home_id: str, feeder: str, transformer: str, credential_hash: str
    ) -> None:
        now = time.time()
        await self._db.execute(
            "INSERT INTO homes (home_id, feeder, transformer, credential_hash, created_at,"
            " credential_changed_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (home_id) DO UPDATE SET feeder = excluded.feeder,"
            " transformer = excluded.transformer, credential_hash = excluded.credential_hash,"
            " credential_changed_at = excluded.credential_changed_at, revoked_at = NULL",
            (home_id, feeder, transformer, credential_hash, now, now),
        )

    async def home_by_credential(self, credential_hash: str) -> HomeRecord | None:
        """The home a credential belongs to, if any."""
        async with self._db.execute(
            "SELECT home_id, feeder, transformer, revoked_at FROM homes WHERE credential_hash = ?",
            (credential_hash,),
        ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return None
        return HomeRecord(row[0], row[1], row[2], row[3] is not None)

    async def topology(self) -> list[tuple[str, str]]:
        """Every (feeder, transformer) pair that has homes."""
        async with self._db.execute(
            "SELECT DISTINCT feeder, transformer FROM homes ORDER BY feeder, transformer"
        ) as cursor:
            rows = await cursor.fetchall()
        return [(str(r[0]), str(r[1])) for r in rows]

    async def homes(self) -> list[HomeRecord]:
        """Every registered home."""
        async with self._db.execute(
            "SELECT home_id, feeder, transformer, revoked_at FROM homes ORDER BY home_id"
        ) as cursor:
            rows = await cursor.fetchall()
        return [HomeRecord(r[0], r[1], r[2], r[3] is not None) for r in rows]

    async def replace_credential(self, home_id: str, credential_hash: str) -> bool:
        """Give a home a new credential (the old one stops working); False if unknown/revoked."""
        async with (
            self._writing,
            self._db.execute(
                "UPDATE homes SET credential_hash = ?, credential_changed_at = ?"
                " WHERE home_id = ? AND revoked_at IS NULL",
                (credential_hash, time.time(), home_id),
            ) as cursor,
        ):
            return cursor.rowcount == 1

    async def revoke_home(self, home_id: str) -> bool:
        """Revoke a home's credential; False if the home is unknown."""
        async with (
            self._writing,
            self._db.execute(
                "UPDATE homes SET revoked_at = coalesce(revoked_at, ?) WHERE home_id = ?",
                (time.time(), home_id),
            ) as cursor,
        ):
            return cursor.rowcount == 1

    # --- enrollment ------------------------------------------------------------------------

    async def add_enrollment_code(
        self, code_hash: str, home_id: str, feeder: str, transformer: str, expires_at: float
    ) -> None:
        """Store an enrollment code (its hash) for a home."""
        async with self._writing:
            await self._db.execute(
                "INSERT INTO enrollment_codes (code_hash, home_id, feeder, transformer,"
                " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
                (code_hash, home_id, feeder, transformer, time.time(), expires_at),
            )

    async def redeem_enrollment_code(
        self, code_hash: str, credential_hash: str, now: float
    ) -> HomeRecord | None:
        """Use a valid code once: register its home with the credential; None if not valid."""
        async with self._writing:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                async with self._db.execute(
                    "UPDATE enrollment_codes SET used_at = ? WHERE code_hash = ?"
                    " AND used_at IS NULL AND expires_at > ?"
                    " RETURNING home_id, feeder, transformer",
                    (now, code_hash, now),
                ) as cursor:
                    row = await cursor.fetchone()
                if row is not None:
                    await self._upsert_home(row[0], row[1], row[2], credential_hash)
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise
        return None if row is None else HomeRecord(row[0], row[1], row[2], revoked=False)

    # --- operators -------------------------------------------------------------------------

    async def add_operator_token(self, name: str, token_hash: str) -> None:
        """Store an operator token (its hash) under a name."""
        async with self._writing:
            await self._db.execute(
                "INSERT INTO operator_tokens (token_hash, name, created_at) VALUES (?, ?, ?)",
                (token_hash, name, time.time()),
            )

    async def operator_by_token(self, token_hash: str) -> str | None:
        """The name of the operator holding this token, if any."""
        async with self._db.execute(
            "SELECT name FROM operator_tokens WHERE token_hash = ?", (token_hash,)
        ) as cursor:
            row = await cursor.fetchone()
        return None if row is None else str(row[0])

    # --- grid keys -------------------------------------------------------------------------

    async def pinned_grid_keys(self) -> list[dict[str, Any]]:
        """Grid JWKs pinned so far."""
        async with self._db.execute("SELECT jwk FROM grid_keys ORDER BY pinned_at") as cursor:
            rows = await cursor.fetchall()
        return [json.loads(row[0]) for row in rows]

    async def pin_grid_key(self, kid: str, issuer: str, jwk: dict[str, Any]) -> None:
        """Pin a grid key (kept for good; rotation adds keys)."""
        async with self._writing:
            await self._db.execute(
                "INSERT OR IGNORE INTO grid_keys (kid, issuer, jwk, pinned_at) VALUES (?, ?, ?, ?)",
                (kid, issuer, json.dumps(jwk), time.time()),
            )


def _signal(row: Any) -> StoredSignal:
    return StoredSignal(
        seq=int(row[0]),
        object_type=str(row[1]),
        object_id=str(row[2]),
        operation=str(row[3]),
        audience=tuple(json.loads(row[4])),
        expires=int(row[5]),
        body=str(row[6]),
    )
