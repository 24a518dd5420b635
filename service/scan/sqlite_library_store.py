"""SqliteLibraryStore: the video library and scan errors in SQLite (same database file as the jobs, its own
connections).

Tables:
- videos: one row per file path ever scanned. `status` is 'ok' (metadata columns filled) or 'failed' (the last
  probe failed: `error` and `error_kind` say why, `probe_time` when it was tried; kept so an unchanged failed
  file is not probed again, and listed as a broken file). `missing` flags files the latest scan of their
  directory did not find; rows are never deleted.
- videos_fts: an FTS5 index of file names (external content, kept in step by triggers) for ListVideos' query.
- scan_errors: per-file failures of each scan job.

The schema is versioned (component "library" in schema_versions, beside the job store's "jobs"): an older
database is migrated when the store opens, in one transaction; a newer one is refused.

Writes come in batches, one transaction each (executemany), through one writer connection guarded by a lock, since
several scans may run at once and a transaction must not interleave with another's statements. Reads use a second
connection, so listing never waits behind a scan's write (WAL readers do not block the writer).

Implements the LibraryStore protocol (library_store.py); paths are in library_model.library_path's form.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

import aiosqlite

from reelscan.service import db
from reelscan.service.config import ConfigError
from reelscan.service.errors import InvalidArgument, NotFound
from reelscan.service.jobs import page_token
from reelscan.service.jobs.handler import Claim, JobLost
from reelscan.service.jobs.sqlite_store import FENCE_CHECK
from reelscan.service.scan.library_model import (
    KnownFile,
    ProbedFile,
    ScanErrorRecord,
    Video,
    VideoFilter,
    details_json,
    effective_page_size,
    entry_condition,
    library_path,
    subtree_bounds,
    value_conditions,
    with_details,
)
from reelscan.service.scan.media_info import PROBE_VERSION, ProbeErrorKind, VideoInfo, audio_from_json, audio_to_json

SCHEMA_COMPONENT = "library"
SCHEMA_VERSION = 3

# Version 1, as every database from before versions were recorded has it: all IF NOT EXISTS, so a database that has
# it without a version row is taken for version 1. One statement per item (the triggers hold ";").
_SCHEMA_V1: list[str] = [
    """CREATE TABLE IF NOT EXISTS schema_versions (
        component TEXT PRIMARY KEY,
        version INTEGER NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS videos (
        id               INTEGER PRIMARY KEY,
        path             TEXT NOT NULL UNIQUE,
        dir              TEXT NOT NULL,
        file_name        TEXT NOT NULL,
        size             INTEGER NOT NULL,
        mtime_ns         INTEGER NOT NULL,
        status           TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
        error            TEXT,
        container_format TEXT,
        duration_us      INTEGER,
        bit_rate         INTEGER,
        video_codec      TEXT,
        video_profile    TEXT,
        width            INTEGER,
        height           INTEGER,
        frame_rate       REAL,
        pixel_format     TEXT,
        bit_depth        INTEGER,
        rotation         INTEGER,
        color_transfer   TEXT,
        color_primaries  TEXT,
        hdr              INTEGER,
        audio_json       TEXT NOT NULL DEFAULT '[]',
        subtitle_count   INTEGER NOT NULL DEFAULT 0,
        subtitle_languages_json TEXT NOT NULL DEFAULT '[]',
        creation_time_us INTEGER,
        missing          INTEGER NOT NULL DEFAULT 0,
        probe_time       REAL NOT NULL,
        create_time      REAL NOT NULL,
        update_time      REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS videos_dir ON videos (dir)",
    # Covers load_known's range query, so a rescan reads this index alone rather than one table row per file
    # (version 2 adds status to it).
    "CREATE INDEX IF NOT EXISTS videos_known ON videos (path, size, mtime_ns, missing)",
    "CREATE INDEX IF NOT EXISTS videos_codec ON videos (video_codec, path)",
    """CREATE VIRTUAL TABLE IF NOT EXISTS videos_fts USING fts5 (
        file_name, content='videos', content_rowid='id', tokenize='unicode61 remove_diacritics 2'
    )""",
    """CREATE TRIGGER IF NOT EXISTS videos_fts_insert AFTER INSERT ON videos BEGIN
        INSERT INTO videos_fts (rowid, file_name) VALUES (new.id, new.file_name);
    END""",
    """CREATE TRIGGER IF NOT EXISTS videos_fts_delete AFTER DELETE ON videos BEGIN
        INSERT INTO videos_fts (videos_fts, rowid, file_name) VALUES ('delete', old.id, old.file_name);
    END""",
    """CREATE TRIGGER IF NOT EXISTS videos_fts_update AFTER UPDATE OF file_name ON videos BEGIN
        INSERT INTO videos_fts (videos_fts, rowid, file_name) VALUES ('delete', old.id, old.file_name);
        INSERT INTO videos_fts (rowid, file_name) VALUES (new.id, new.file_name);
    END""",
    """CREATE TABLE IF NOT EXISTS scan_errors (
        id          INTEGER PRIMARY KEY,
        job_id      TEXT NOT NULL,
        path        TEXT NOT NULL,
        kind        INTEGER NOT NULL,
        reason      TEXT NOT NULL,
        create_time REAL NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS scan_errors_job ON scan_errors (job_id, id)",
    # One error per file per job: a job re-run after a crash records the same walk errors again without duplicates.
    "CREATE UNIQUE INDEX IF NOT EXISTS scan_errors_job_path ON scan_errors (job_id, path)",
]

# Schema changes by the version they lead to; each list runs in the opening transaction.
_MIGRATIONS: dict[int, list[str]] = {
    2: [
        # Broken files are part of the library: the kind of their failure (ProbeErrorKind) beside its reason,
        # taken for rows already failed from their latest probe error still on record (else NULL: unknown).
        "ALTER TABLE videos ADD COLUMN error_kind INTEGER",
        """UPDATE videos SET error_kind = latest.kind
        FROM (SELECT path, kind, MAX(id) FROM scan_errors WHERE kind IN (1, 2, 3) GROUP BY path) AS latest
        WHERE videos.path = latest.path AND videos.status = 'failed'""",
        # load_known reports whether the last probe failed (a rescan counts the broken files it skips), still
        # from this index alone.
        "DROP INDEX IF EXISTS videos_known",
        "CREATE INDEX videos_known ON videos (path, size, mtime_ns, missing, status)",
        # Listing the broken files reads only theirs.
        "CREATE INDEX videos_failed ON videos (path) WHERE status = 'failed'",
    ],
    3: [
        # The fields of media_info.PROBE_VERSION 2. Rows already there keep probe_version 1: load_known reports
        # them as changed, so the next scan of their root probes them again and fills these in.
        "ALTER TABLE videos ADD COLUMN probe_version INTEGER NOT NULL DEFAULT 1",
        "ALTER TABLE videos ADD COLUMN details_json TEXT",  # library_model.details_json; NULL before version 2
        "ALTER TABLE videos ADD COLUMN hdr_format TEXT",
        "ALTER TABLE videos ADD COLUMN interlaced INTEGER",
        # load_known reads probe_version too, still from this index alone.
        "DROP INDEX IF EXISTS videos_known",
        "CREATE INDEX videos_known ON videos (path, size, mtime_ns, missing, status, probe_version)",
    ],
}

# Columns written by a probe, in this order, for both inserts and the ON CONFLICT update. file_name and dir are
# functions of path, and create_time is kept from the first insert, so the update leaves them alone.
_PROBE_COLUMNS = (
    "size",
    "mtime_ns",
    "status",
    "error",
    "error_kind",
    "container_format",
    "duration_us",
    "bit_rate",
    "video_codec",
    "video_profile",
    "width",
    "height",
    "frame_rate",
    "pixel_format",
    "bit_depth",
    "rotation",
    "color_transfer",
    "color_primaries",
    "hdr",
    "audio_json",
    "subtitle_count",
    "subtitle_languages_json",
    "creation_time_us",
    "probe_time",
    "update_time",
    "probe_version",
    "details_json",
    "hdr_format",
    "interlaced",
)
_UPSERT = (
    f"INSERT INTO videos (path, dir, file_name, create_time, missing, {', '.join(_PROBE_COLUMNS)}) "
    f"VALUES (?, ?, ?, ?, 0, {', '.join('?' for _ in _PROBE_COLUMNS)}) "
    f"ON CONFLICT (path) DO UPDATE SET missing = 0, " + ", ".join(f"{c} = excluded.{c}" for c in _PROBE_COLUMNS)
)
_VIDEO_SELECT = (
    "SELECT id, path, file_name, container_format, size, mtime_ns, duration_us, bit_rate, video_codec, "
    "video_profile, width, height, frame_rate, pixel_format, bit_depth, rotation, color_transfer, "
    "color_primaries, hdr, audio_json, subtitle_count, subtitle_languages_json, creation_time_us, missing, "
    "probe_time, create_time, status, error, error_kind, details_json FROM videos"
)

# load_known's columns (a KnownFile), all in the videos_known index: a rescan reads that index alone. A row probed
# by an older probe version reports size -1, which no file has: the scan sees it as changed and probes it again.
KNOWN_SELECT = (
    f"SELECT path, CASE WHEN probe_version >= {PROBE_VERSION} THEN size ELSE -1 END, mtime_ns, missing, "
    "status = 'failed' FROM videos"
)

MAX_QUERY_TERMS = 16
MAX_TERM_CHARS = 64
_WORD = re.compile(r"\w+")


def fts_query(text: str) -> str | None:
    """An FTS5 MATCH expression for user text: each word quoted (so FTS5 syntax and SQL characters in it are just
    text) and prefix-matched, all words required. None when the text has no words at all."""
    terms = _WORD.findall(text)[:MAX_QUERY_TERMS]
    if not terms:
        return None
    # \w never matches '"', so the quoting below cannot be broken out of; the doubling is belt and braces.
    return " ".join('"' + term[:MAX_TERM_CHARS].replace('"', '""') + '"*' for term in terms)


def _probe_values(row: ProbedFile, now: float) -> tuple[Any, ...]:
    info = row.info
    if info is None:
        failure = (row.size, row.mtime_ns, "failed", row.error, int(row.error_kind))
        return (*failure, *([None] * 14), "[]", 0, "[]", None, now, now, PROBE_VERSION, None, None, None)
    v = info.video
    video_values: tuple[Any, ...] = (
        (None,) * 11
        if v is None
        else (
            v.codec.lower(),
            v.profile,
            v.width,
            v.height,
            v.frame_rate,
            v.pixel_format,
            v.bit_depth,
            v.rotation,
            v.color_transfer,
            v.color_primaries,
            int(v.hdr),
        )
    )
    return (
        row.size,
        row.mtime_ns,
        "ok",
        None,
        None,
        info.container_format,
        info.duration_us,
        info.bit_rate,
        *video_values,
        json.dumps([audio_to_json(a) for a in info.audio]),
        info.subtitle_count,
        json.dumps(list(info.subtitle_languages)),
        info.creation_time_us,
        now,
        now,
        PROBE_VERSION,
        details_json(info),
        None if v is None else v.hdr_format,
        None if v is None else int(v.interlaced),
    )


def _video_from_row(r: Sequence[Any]) -> Video:
    (
        vid,
        path,
        file_name,
        container_format,
        size,
        mtime_ns,
        duration_us,
        bit_rate,
        codec,
        profile,
        width,
        height,
        frame_rate,
        pixel_format,
        bit_depth,
        rotation,
        color_transfer,
        color_primaries,
        hdr,
        audio_json,
        subtitle_count,
        subtitle_languages_json,
        creation_time_us,
        missing,
        probe_time,
        create_time,
        status,
        error,
        error_kind,
        details,
    ) = r
    video = None
    if codec is not None:
        video = VideoInfo(
            codec=codec,
            profile=profile or "",
            width=width or 0,
            height=height or 0,
            frame_rate=frame_rate or 0.0,
            pixel_format=pixel_format or "",
            bit_depth=bit_depth or 0,
            rotation=rotation or 0,
            color_transfer=color_transfer or "",
            color_primaries=color_primaries or "",
            hdr=bool(hdr),
        )
    entry = Video(
        id=str(vid),
        path=path,
        file_name=file_name,
        container_format=container_format or "",
        size=size,
        mtime_ns=mtime_ns,
        duration_us=duration_us,
        bit_rate=bit_rate or 0,
        video=video,
        audio=tuple(audio_from_json(a) for a in json.loads(audio_json)),
        subtitle_count=subtitle_count,
        subtitle_languages=tuple(json.loads(subtitle_languages_json)),
        creation_time_us=creation_time_us,
        missing=bool(missing),
        probe_time=probe_time,
        create_time=create_time,
        failed=status == "failed",
        failure_reason=(error or "") if status == "failed" else "",
        failure_kind=_error_kind(error_kind) if status == "failed" else None,
    )
    return with_details(entry, details)


def _error_kind(value: int | None) -> ProbeErrorKind | None:
    try:
        return None if value is None else ProbeErrorKind(value)
    except ValueError:  # a kind a newer reelscan stored
        return None


SQLITE_MAX_INT = 2**63 - 1


def _is_utf8(text: str) -> bool:
    """Whether SQLite can bind `text` (a token decoded from JSON may hold lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class SqliteLibraryStore:
    """The LibraryStore over one SQLite file: a writer connection behind a lock and a reader connection."""

    def __init__(self, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SqliteLibraryStore:
        writer = await db.connect(path)
        try:
            writer.row_factory = None  # plain tuples: loading 100,000 known files should not build Row objects
            await _migrate(writer, path)
            reader = await db.connect(path)
            reader.row_factory = None
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader)

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    # --- scanning --------------------------------------------------------------------------------------------

    async def load_known(self, root: str, recursive: bool) -> dict[str, KnownFile]:
        """Everything the library knows under `root` (directly in it when not recursive), in one query."""
        # Failed probes are loaded like any other file: unchanged, they are not probed again either.
        columns = KNOWN_SELECT
        params: tuple[str, ...]
        root = library_path(root.rstrip("/") or "/")
        if recursive:
            low, high = subtree_bounds(root)
            sql, params = f"{columns} WHERE path > ? AND path < ?", (low, high)
        else:
            sql, params = f"{columns} WHERE dir = ?", (root,)
        async with self._reader.execute(sql, params) as cursor:
            rows = cast(list[KnownFile], await cursor.fetchall())  # row_factory is None: plain tuples
        return {row[0]: row for row in rows}

    async def write_batch(
        self,
        probed: Sequence[ProbedFile] = (),
        errors: Sequence[ScanErrorRecord] = (),
        unmissing: Sequence[str] = (),
        fence: Claim | None = None,
    ) -> None:
        """Stores probe outcomes, scan errors and returned files in one transaction (fenced on `fence`)."""
        if not (probed or errors or unmissing):
            return
        now = time.time()
        upserts = [
            (row.path, os.path.dirname(row.path) or "/", os.path.basename(row.path), now, *_probe_values(row, now))
            for row in probed
        ]
        error_rows = [(e.job_id, e.path, int(e.kind), e.reason, e.create_time) for e in errors]
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                await self._check_fence(fence)
                if upserts:
                    await self._writer.executemany(_UPSERT, upserts)
                if error_rows:
                    await self._writer.executemany(
                        "INSERT OR IGNORE INTO scan_errors (job_id, path, kind, reason, create_time) "
                        "VALUES (?, ?, ?, ?, ?)",
                        error_rows,
                    )
                if unmissing:
                    await self._writer.executemany(
                        "UPDATE videos SET missing = 0, update_time = ? WHERE path = ?", [(now, p) for p in unmissing]
                    )
                await self._writer.execute("COMMIT")
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise

    async def mark_missing(self, paths: Iterable[str], chunk: int = 5000, fence: Claim | None = None) -> None:
        """Flags library entries as missing (chunked transactions, so a huge vanished tree does not hold the write
        lock for long)."""
        now = time.time()
        batch: list[tuple[float, str]] = []
        for path in paths:
            batch.append((now, path))
            if len(batch) >= chunk:
                await self._update_missing(batch, fence)
                batch = []
        if batch:
            await self._update_missing(batch, fence)

    async def _check_fence(self, fence: Claim | None) -> None:
        """Inside a write transaction (BEGIN IMMEDIATE: the write lock is ours, so the job row cannot change before
        the commit): JobLost unless the claim still holds. The jobs tables live in the same file."""
        if fence is None:
            return
        params = {"id": fence.job_id, "owner": fence.owner, "epoch": fence.epoch, "now": time.time()}
        if not await self._writer.execute_fetchall(FENCE_CHECK, params):
            raise JobLost(f"job {fence.job_id} is no longer this server's: library write refused")

    async def _update_missing(self, rows: list[tuple[float, str]], fence: Claim | None) -> None:
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                await self._check_fence(fence)
                await self._writer.executemany(
                    "UPDATE videos SET missing = 1, update_time = ? WHERE path = ? AND missing = 0", rows
                )
                await self._writer.execute("COMMIT")
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise

    async def delete_scan_errors(self, job_id: str) -> None:
        async with self._write_lock:
            await self._writer.execute("DELETE FROM scan_errors WHERE job_id = ?", (job_id,))

    # --- queries ---------------------------------------------------------------------------------------------

    async def list_videos(self, flt: VideoFilter, page_size: int, token: str) -> tuple[list[Video], str]:
        """A page of videos ordered by path, and the next page's token ("" on the last page)."""
        size = effective_page_size(page_size)
        fingerprint = flt.fingerprint()
        entries = entry_condition(flt, "missing = 1", "missing = 0")
        where = [entries] if entries else []
        params: list[Any] = []
        if token:
            position = page_token.decode(token, fingerprint)
            if len(position) != 1 or not isinstance(position[0], str) or not _is_utf8(position[0]):
                raise InvalidArgument("page_token is malformed", field="page_token")
            where.append("path > ?")
            params.append(position[0])
        if flt.path_prefix:
            prefix = flt.path_prefix.rstrip("/")
            low, high = subtree_bounds(prefix)
            where.append("(path = ? OR (path > ? AND path < ?))")
            params += [prefix or "/", low, high]
        if flt.container:
            # One of the names in FFmpeg's list ("mov,mp4,m4a,3gp,3g2,mj2"), whole.
            where.append("instr(',' || container_format || ',', ?) > 0")
            params.append(f",{flt.container},")
        if flt.audio_language:
            where.append("EXISTS (SELECT 1 FROM json_each(audio_json) WHERE lower(json_extract(value, '$[3]')) = ?)")
            params.append(flt.audio_language)
        if flt.subtitle_language:
            where.append("EXISTS (SELECT 1 FROM json_each(subtitle_languages_json) WHERE lower(value) = ?)")
            params.append(flt.subtitle_language)
        values, value_params = value_conditions(flt, "?")
        where += values
        params += value_params
        if flt.query:
            match = fts_query(flt.query)
            if match is None:
                return [], ""  # nothing searchable in the text: nothing matches
            where.append("id IN (SELECT rowid FROM videos_fts WHERE videos_fts MATCH ?)")
            params.append(match)
        sql = f"{_VIDEO_SELECT} WHERE {' AND '.join(where) or '1'} ORDER BY path LIMIT ?"
        params.append(size + 1)
        async with self._reader.execute(sql, params) as cursor:
            rows = list(await cursor.fetchall())
        videos = [_video_from_row(r) for r in rows[:size]]
        next_token = self.videos_token_after(flt, videos[-1]) if len(rows) > size else ""
        return videos, next_token

    async def get_video(self, *, video_id: str | None = None, path: str | None = None) -> Video:
        """One library entry by id or by path, whatever its status (failed and missing ones too); NotFound when
        the library has no entry for it."""
        params: list[Any]
        if video_id is not None:
            field, what = "id", f"video {video_id!r}"
            # Ids are opaque to clients: a malformed one is simply unknown. ASCII only: str.isdigit() also accepts
            # other scripts' digits, which int() maps onto real ids (or rejects, for superscripts).
            if not (video_id.isascii() and video_id.isdigit()) or len(video_id) > 18:
                raise NotFound(f"{what} not found", field=field)
            sql, params = f"{_VIDEO_SELECT} WHERE id = ?", [int(video_id)]
        elif path is not None:
            field, what = "path", f"video at path {path!r}"
            sql, params = f"{_VIDEO_SELECT} WHERE path = ?", [path]
        else:
            raise InvalidArgument("give the video's id or its path", field="video")
        async with self._reader.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise NotFound(f"{what} not found", field=field)
        return _video_from_row(row)

    async def list_scan_errors(self, job_id: str, page_size: int, token: str) -> tuple[list[ScanErrorRecord], str]:
        """A page of one job's scan errors in the order they were recorded."""
        size = effective_page_size(page_size)
        fingerprint = page_token.fingerprint(["scan_errors", job_id])  # as in scan_errors_token_after
        after = 0
        if token:
            position = page_token.decode(token, fingerprint)
            if (
                len(position) != 1
                or not isinstance(position[0], int)
                or isinstance(position[0], bool)
                or not 0 <= position[0] <= SQLITE_MAX_INT
            ):
                raise InvalidArgument("page_token is malformed", field="page_token")
            after = position[0]
        async with self._reader.execute(
            "SELECT id, job_id, path, kind, reason, create_time FROM scan_errors WHERE job_id = ? AND id > ? "
            "ORDER BY id LIMIT ?",
            (job_id, after, size + 1),
        ) as cursor:
            rows = list(await cursor.fetchall())
        errors = [ScanErrorRecord(j, p, ProbeErrorKind(k), r, t, i) for i, j, p, k, r, t in rows[:size]]
        next_token = self.scan_errors_token_after(job_id, errors[-1]) if len(rows) > size else ""
        return errors, next_token

    @staticmethod
    def videos_token_after(flt: VideoFilter, video: Video) -> str:
        """The page token that continues a listing right after `video` (for pages cut short by size)."""
        return page_token.encode([video.path], flt.fingerprint())

    @staticmethod
    def scan_errors_token_after(job_id: str, error: ScanErrorRecord) -> str:
        return page_token.encode([error.id], page_token.fingerprint(["scan_errors", job_id]))


async def _migrate(conn: aiosqlite.Connection, path: Path) -> None:
    """Creates or migrates the library's tables to SCHEMA_VERSION in one transaction; refuses a newer schema."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA_V1:
            await conn.execute(statement)
        async with conn.execute(
            "SELECT version FROM schema_versions WHERE component = ?", (SCHEMA_COMPONENT,)
        ) as cursor:
            row = await cursor.fetchone()
        version = 1 if row is None else int(row[0])  # no row: version 1 (just created, or from before versions)
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"{path}: library schema version {version} is newer than this server understands "
                f"({SCHEMA_VERSION}); upgrade reelscan"
            )
        for target in range(version + 1, SCHEMA_VERSION + 1):
            for statement in _MIGRATIONS[target]:
                await conn.execute(statement)
        await conn.execute(
            "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
            "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
            (SCHEMA_COMPONENT, SCHEMA_VERSION),
        )
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
