"""The bridge's durable ledger: SQLite on disk, one writer, versioned migrations.

Signals (signed grid objects, exactly as received) get a downstream sequence number when they
are committed; homes resume from the last sequence they acknowledged. Every commit is made with
``synchronous=FULL``, so what the bridge acknowledged (a signal to the grid, a report to a home)
survives ``kill -9``; telemetry commits in batches, so that costs one sync per batch.

Two connections: one writes (behind a lock, so that a multi-statement transaction never takes
in another coroutine's statement), one reads. In WAL mode a reader sees the last committed
state and is never blocked by the writer, nor sees the writer's open transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
import json
from pathlib import Path
import time
from typing import Any, Self

import aiosqlite
import orjson

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
    # Telemetry as each home's time buckets instead of every raw report and reading: raw
    # reports are kept for those that answer events, raw readings for the ones too late for
    # their bucket.
    """
    CREATE TABLE home_buckets (
        bucket REAL NOT NULL,
        home_id TEXT NOT NULL,
        payload_type TEXT NOT NULL,
        total REAL NOT NULL,
        count INTEGER NOT NULL,
        minimum REAL NOT NULL,
        maximum REAL NOT NULL,
        PRIMARY KEY (bucket, home_id, payload_type)
    ) WITHOUT ROWID;
    """,
    # The community's own authority (its signing key, the grid's delegation to it) and the
    # resources homes register (a PV system's grid-connection request).
    """
    CREATE TABLE community_keys (
        kid TEXT PRIMARY KEY,
        issuer TEXT NOT NULL,
        private_pem BLOB NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE delegations (
        kid TEXT NOT NULL,
        token TEXT NOT NULL,
        expires INTEGER NOT NULL,
        received_at REAL NOT NULL
    );
    CREATE TABLE home_resources (
        id TEXT PRIMARY KEY,
        home_id TEXT NOT NULL,
        body TEXT NOT NULL,
        status TEXT NOT NULL,
        upstream_id TEXT,
        upstream_status TEXT,
        created_at REAL NOT NULL,
        modified_at REAL NOT NULL
    );
    CREATE INDEX home_resources_by_home ON home_resources (home_id);
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


_INSERT_REPORTS = (
    "INSERT OR IGNORE INTO reports (id, home_id, event_id, received_at, body)"
    " SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value -> 4 FROM json_each(?)"
)
_INSERT_READINGS = (
    "INSERT INTO readings (home_id, feeder, transformer, payload_type, start, duration, value)"
    " SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5,"
    " value ->> 6 FROM json_each(?)"
)
_UPSERT_HOME_BUCKETS = (
    "INSERT OR REPLACE INTO home_buckets (bucket, home_id, payload_type, total, count, minimum,"
    " maximum) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4,"
    " value ->> 5, value ->> 6 FROM json_each(?)"
)
_UPSERT_ROLLUPS = (
    "INSERT OR REPLACE INTO rollups (level, place, payload_type, bucket, total, count, homes,"
    " minimum, maximum) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4,"
    " value ->> 5, value ->> 6, value ->> 7, value ->> 8 FROM json_each(?)"
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


class TelemetryBatch:
    """The statements of one telemetry transaction (see ``Ledger.telemetry_batch``)."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        """Write through the ledger's writing connection, inside its open transaction."""
        self._db = connection

    async def store(
        self,
        *,
        reports: Sequence[tuple[str, str, str, float, bytes]],
        late: Sequence[tuple[str, str, str, str, float, float, float]],
        rollups: Sequence[tuple[str, str, str, float, float, int, int, float, float]],
        home_buckets: Sequence[tuple[float, str, str, float, int, float, float]],
    ) -> None:
        """Reports kept raw (their JSON), late readings, and the buckets the batch changed.

        Each table takes its rows in one statement, as one JSON array that SQLite unpacks: the
        insert runs without Python's lock, beside the event loop, instead of taking it back for
        every row.
        """
        if reports:
            rows = [(*report[:4], orjson.Fragment(report[4])) for report in reports]
            await self._db.execute(_INSERT_REPORTS, (orjson.dumps(rows),))
        if late:
            await self._db.execute(_INSERT_READINGS, (orjson.dumps(late),))
        if rollups:
            await self._db.execute(_UPSERT_ROLLUPS, (orjson.dumps(rollups),))
        if home_buckets:
            await self._db.execute(_UPSERT_HOME_BUCKETS, (orjson.dumps(home_buckets),))


class Ledger:
    """Async access to the bridge database (aiosqlite runs it on one dedicated thread)."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        """Use open connections to one database; prefer ``Ledger.open``."""
        self._db = writer
        self._read = reader
        self._writing = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Self:
        """Open (creating and migrating as needed) the database at path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        writer = await aiosqlite.connect(path, isolation_level=None)
        await writer.execute("PRAGMA journal_mode=WAL")
        await writer.execute("PRAGMA synchronous=FULL")
        await writer.execute("PRAGMA foreign_keys=ON")
        reader = await aiosqlite.connect(path, isolation_level=None)
        await reader.execute("PRAGMA query_only=ON")
        ledger = cls(writer, reader)
        await ledger.migrate()
        return ledger

    async def close(self) -> None:
        """Close the database."""
        await self._read.close()
        await self._db.close()

    async def _select(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """The rows of a query, read on the reading connection in one step.

        One step: the statement runs to its end before the reading thread takes the next one.
        A statement left open between steps would hold the connection's read transaction, and
        with it an old snapshot, for as long as queries of many coroutines overlap.
        """
        return list(await self._read.execute_fetchall(sql, parameters))

    async def _select_one(self, sql: str, parameters: Sequence[Any] = ()) -> Any | None:
        """The first row of a query (see ``_select``), or None."""
        rows = await self._select(sql, parameters)
        return rows[0] if rows else None

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
        rows = await self._select(
            "SELECT seq, object_type, object_id, operation, audience, expires, body FROM signals"
            " WHERE seq > ? AND expires >= ? ORDER BY seq",
            (seq, int(now)),
        )
        return [_signal(row) for row in rows]

    async def current_objects(self, object_type: str, *, now: float) -> list[StoredSignal]:
        """The latest version of every object of a type that is not deleted nor expired."""
        rows = await self._select(
            "SELECT seq, object_type, object_id, operation, audience, expires, body FROM signals s"
            " WHERE object_type = ? AND seq = (SELECT max(seq) FROM signals"
            "   WHERE object_type = s.object_type AND object_id = s.object_id)"
            " AND operation != 'DELETE' AND expires >= ? ORDER BY seq",
            (object_type, int(now)),
        )
        return [_signal(row) for row in rows]

    async def latest_versions(self) -> list[tuple[str, str, str, int, int]]:
        """(issuer, objectType, id, version, expires) of the newest version of each object."""
        rows = await self._select(
            "SELECT issuer, object_type, object_id, max(version), expires FROM signals"
            " GROUP BY issuer, object_type, object_id"
        )
        return [(str(r[0]), str(r[1]), str(r[2]), int(r[3]), int(r[4])) for r in rows]

    async def last_seq(self) -> int:
        """The highest downstream sequence committed so far."""
        row = await self._select_one("SELECT coalesce(max(seq), 0) FROM signals")
        return int(row[0]) if row else 0

    # --- telemetry -------------------------------------------------------------------------

    @asynccontextmanager
    async def telemetry_batch(self) -> AsyncIterator[TelemetryBatch]:
        """One transaction for a batch of home reports: committed whole, or not at all."""
        async with self._writing:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                yield TelemetryBatch(self._db)
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise

    async def late_readings_since(
        self, start: float
    ) -> list[tuple[str, str, str, str, float, float, float]]:
        """Readings from start on that came too late for their bucket, as they were stored."""
        rows = await self._select(
            "SELECT home_id, feeder, transformer, payload_type, start, duration, value"
            " FROM readings WHERE start >= ?",
            (start,),
        )
        return [(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    async def home_buckets_since(
        self, start: float
    ) -> list[tuple[float, str, str, float, int, float, float]]:
        """(bucket, home, payload type, total, count, minimum, maximum) from bucket start on."""
        rows = await self._select(
            "SELECT bucket, home_id, payload_type, total, count, minimum, maximum"
            " FROM home_buckets WHERE bucket >= ?",
            (start,),
        )
        return [(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    async def rollups(
        self, level: str, place: str, start: float, end: float
    ) -> list[tuple[str, float, float, int, int, float, float]]:
        """(payload type, bucket, total, count, homes, minimum, maximum) of a place, in order."""
        rows = await self._select(
            "SELECT payload_type, bucket, total, count, homes, minimum, maximum FROM rollups"
            " WHERE level = ? AND place = ? AND bucket >= ? AND bucket < ?"
            " ORDER BY bucket, payload_type",
            (level, place, start, end),
        )
        return [(r[0], r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    async def rollup_series(
        self, level: str, places: Sequence[str], payload_type: str, start: float, end: float
    ) -> list[tuple[str, float, float, int, int]]:
        """(place, bucket, total, count, homes) of one type at several places, by bucket."""
        rows = await self._select(
            "SELECT place, bucket, total, count, homes FROM rollups WHERE level = ?"
            " AND place IN (SELECT value FROM json_each(?)) AND payload_type = ?"
            " AND bucket >= ? AND bucket < ? ORDER BY bucket, place",
            (level, json.dumps(list(places)), payload_type, start, end),
        )
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    async def report_high_water(self) -> int:
        """The highest row id of committed home reports (0 when there are none).

        Read on the reading connection, so every report up to it is committed: rows are only
        ever appended with higher ids.
        """
        row = await self._select_one("SELECT coalesce(max(rowid), 0) FROM reports")
        return int(row[0]) if row else 0

    async def report_values(
        self, event_ids: Sequence[str], after: int, until: int, payload_types: Sequence[str]
    ) -> list[ReportValue]:
        """Values of some payload types in home reports on some events, ``after < rowid <= until``.

        Walks the new rows by row id (their cost is that of the rows, however long the events'
        history). SQLite extracts the values from the stored JSON, so only they leave it.
        """
        rows = await self._select(
            _NEW_VALUES,
            (after, until, json.dumps(list(event_ids)), json.dumps(list(payload_types))),
        )
        return [ReportValue(*row) for row in rows]

    async def event_report_page(
        self, event_id: str, until: int, after: tuple[str, int], limit: int
    ) -> tuple[str, int] | None:
        """The (home, row id) that ends the next ``limit`` reports on an event, in index order.

        None when fewer are left: the page runs to the end.
        """
        row = await self._select_one(
            "SELECT home_id, rowid FROM reports INDEXED BY reports_by_event"
            " WHERE event_id = ? AND (home_id, rowid) > (?, ?) AND rowid <= ?"
            " ORDER BY home_id, rowid LIMIT 1 OFFSET ?",
            (event_id, *after, until, limit - 1),
        )
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
        rows = await self._select(
            _EVENT_VALUES_REST if upto is None else _EVENT_VALUES_PAGE,
            (event_id, *after, until, types, *(upto or ())),
        )
        return [ReportValue(*row) for row in rows]

    async def upstream_marks(self) -> list[UpstreamMark]:
        """Everything recorded as reported upstream."""
        rows = await self._select(
            "SELECT event_id, topic, reported_until, summary, sent_at, final FROM upstream_reports"
        )
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
        """Drop raw reports, late readings and homes' buckets older than their retention
        (``raw_before``), and rollups of places older than theirs."""
        async with self._writing:
            await self._db.execute("DELETE FROM reports WHERE received_at < ?", (raw_before,))
            await self._db.execute("DELETE FROM readings WHERE start < ?", (raw_before,))
            await self._db.execute("DELETE FROM home_buckets WHERE bucket < ?", (raw_before,))
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
        row = await self._select_one(
            "SELECT home_id, feeder, transformer, revoked_at FROM homes WHERE credential_hash = ?",
            (credential_hash,),
        )
        if row is None:
            return None
        return HomeRecord(row[0], row[1], row[2], row[3] is not None)

    async def home_since(self, home_id: str) -> float | None:
        """When a home was registered (first enrolled), if it is."""
        row = await self._select_one("SELECT created_at FROM homes WHERE home_id = ?", (home_id,))
        return None if row is None else float(row[0])

    async def topology(self) -> list[tuple[str, str]]:
        """Every (feeder, transformer) pair that has homes."""
        rows = await self._select(
            "SELECT DISTINCT feeder, transformer FROM homes ORDER BY feeder, transformer"
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    async def homes(self) -> list[HomeRecord]:
        """Every registered home."""
        rows = await self._select(
            "SELECT home_id, feeder, transformer, revoked_at FROM homes ORDER BY home_id"
        )
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
        row = await self._select_one(
            "SELECT name FROM operator_tokens WHERE token_hash = ?", (token_hash,)
        )
        return None if row is None else str(row[0])

    # --- grid keys -------------------------------------------------------------------------

    async def pinned_grid_keys(self) -> list[dict[str, Any]]:
        """Grid JWKs pinned so far."""
        rows = await self._select("SELECT jwk FROM grid_keys ORDER BY pinned_at")
        return [json.loads(row[0]) for row in rows]

    # --- the community's authority -----------------------------------------------------------

    async def community_key(self) -> tuple[str, bytes] | None:
        """(issuer, private key PEM) of the community's signing key, if it has one."""
        row = await self._select_one(
            "SELECT issuer, private_pem FROM community_keys ORDER BY created_at DESC LIMIT 1"
        )
        return None if row is None else (str(row[0]), bytes(row[1]))

    async def add_community_key(self, kid: str, issuer: str, private_pem: bytes) -> None:
        """Keep the community's signing key (the only secret key the bridge holds)."""
        async with self._writing:
            await self._db.execute(
                "INSERT INTO community_keys (kid, issuer, private_pem, created_at)"
                " VALUES (?, ?, ?, ?)",
                (kid, issuer, private_pem, time.time()),
            )

    async def delegation(self, kid: str) -> str | None:
        """The latest delegation stored for a community key."""
        row = await self._select_one(
            "SELECT token FROM delegations WHERE kid = ? ORDER BY received_at DESC LIMIT 1", (kid,)
        )
        return None if row is None else str(row[0])

    async def store_delegation(self, kid: str, token: str, expires: int) -> None:
        """Keep a delegation the bridge verified (the older ones go)."""
        async with self._writing:
            await self._db.execute("BEGIN IMMEDIATE")
            try:
                await self._db.execute("DELETE FROM delegations WHERE kid = ?", (kid,))
                await self._db.execute(
                    "INSERT INTO delegations (kid, token, expires, received_at)"
                    " VALUES (?, ?, ?, ?)",
                    (kid, token, expires, time.time()),
                )
                await self._db.execute("COMMIT")
            except BaseException:
                await self._db.execute("ROLLBACK")
                raise

    # --- home resources ----------------------------------------------------------------------

    async def add_home_resource(self, resource: HomeResource) -> None:
        """Register a resource of a home."""
        now = time.time()
        async with self._writing:
            await self._db.execute(
                "INSERT INTO home_resources (id, home_id, body, status, upstream_id,"
                " upstream_status, created_at, modified_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    resource.id,
                    resource.home_id,
                    json.dumps(resource.body),
                    resource.status,
                    resource.upstream_id,
                    resource.upstream_status,
                    now,
                    now,
                ),
            )

    async def update_home_resource(self, resource: HomeResource) -> None:
        """Record a resource's new body, status or upstream copy."""
        async with self._writing:
            await self._db.execute(
                "UPDATE home_resources SET body = ?, status = ?, upstream_id = ?,"
                " upstream_status = ?, modified_at = ? WHERE id = ?",
                (
                    json.dumps(resource.body),
                    resource.status,
                    resource.upstream_id,
                    resource.upstream_status,
                    time.time(),
                    resource.id,
                ),
            )

    async def delete_home_resource(self, resource_id: str) -> None:
        """Forget a resource."""
        async with self._writing:
            await self._db.execute("DELETE FROM home_resources WHERE id = ?", (resource_id,))

    async def home_resources(self, home_id: str | None = None) -> list[HomeResource]:
        """The resources of one home, or of every home, oldest first."""
        query = "SELECT id, home_id, body, status, upstream_id, upstream_status FROM home_resources"
        rows = await (
            self._select(f"{query} ORDER BY created_at")
            if home_id is None
            else self._select(f"{query} WHERE home_id = ? ORDER BY created_at", (home_id,))
        )
        return [_resource(row) for row in rows]

    async def pin_grid_key(self, kid: str, issuer: str, jwk: dict[str, Any]) -> None:
        """Pin a grid key (kept for good; rotation adds keys)."""
        async with self._writing:
            await self._db.execute(
                "INSERT OR IGNORE INTO grid_keys (kid, issuer, jwk, pinned_at) VALUES (?, ?, ?, ?)",
                (kid, issuer, json.dumps(jwk), time.time()),
            )


@dataclass(frozen=True, slots=True)
class HomeResource:
    """A resource a home registered, as the bridge keeps it.

    ``body`` is the OpenADR resource as homes read it back; ``status`` what the home is told
    (its X_CONNECTION_STATUS for a grid-connection request); ``upstream_id`` the id of the
    bridge's copy at the grid, once posted there, and ``upstream_status`` what that copy says.
    """

    id: str
    home_id: str
    body: dict[str, Any]
    status: str
    upstream_id: str | None
    upstream_status: str | None


def _resource(row: Any) -> HomeResource:
    return HomeResource(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5])


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
