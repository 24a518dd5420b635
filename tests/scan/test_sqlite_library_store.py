"""What is particular to SqliteLibraryStore (the behaviour every store shares is in test_library_store_contract.py):
its FTS5 query, its versioned schema (a database from before versions, version 1, is migrated; a newer one is
refused), and the index a rescan reads."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from reelscan.service.config import ConfigError
from reelscan.service.scan.library_model import ProbedFile, VideoFilter, VideoStatus
from reelscan.service.scan.media_info import ProbeErrorKind
from reelscan.service.scan.sqlite_library_store import (
    _SCHEMA_V1,
    KNOWN_SELECT,
    SCHEMA_VERSION,
    SqliteLibraryStore,
    fts_query,
)


def test_fts_query_quotes_every_word() -> None:
    assert fts_query("holiday beach") == '"holiday"* "beach"*'
    assert fts_query("'; --") is None
    assert fts_query('a"b') == '"a"* "b"*'


def make_version_1(path: Path) -> None:
    """A library as a server before schema versions left it: no schema_versions table, failed rows with a reason
    and no kind, scan errors of several jobs."""
    conn = sqlite3.connect(path)
    for statement in _SCHEMA_V1[1:]:  # [0] is schema_versions, which such a server did not create
        conn.execute(statement)
    row = (
        "INSERT INTO videos (path, dir, file_name, size, mtime_ns, status, error, video_codec, probe_time, "
        "create_time, update_time) VALUES (?, '/m', ?, ?, 1, ?, ?, ?, 100.5, 100.0, 100.5)"
    )
    conn.execute(row, ("/m/ok.mp4", "ok.mp4", 10, "ok", None, "h264"))
    conn.execute(row, ("/m/slow.mp4", "slow.mp4", 20, "failed", "timed out", None))
    conn.execute(row, ("/m/old.mp4", "old.mp4", 30, "failed", "Invalid data", None))
    error = "INSERT INTO scan_errors (job_id, path, kind, reason, create_time) VALUES (?, ?, ?, ?, 1.0)"
    conn.execute(error, ("job-1", "/m/slow.mp4", int(ProbeErrorKind.PROBE_FAILED), "bad"))
    conn.execute(error, ("job-2", "/m/slow.mp4", int(ProbeErrorKind.PROBE_TIMEOUT), "timed out"))  # the latest probe
    conn.execute(error, ("job-3", "/m/slow.mp4", int(ProbeErrorKind.UNREADABLE), "gone for a while"))  # a walk error
    conn.execute(error, ("job-3", "/m/ok.mp4", int(ProbeErrorKind.PROBE_CRASHED), "long ago"))  # an ok row: untouched
    conn.commit()
    conn.close()


def schema_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT version FROM schema_versions WHERE component = 'library'").fetchone()[0])


async def test_a_version_1_database_is_migrated(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    make_version_1(db)
    store = await SqliteLibraryStore.open(db)
    try:
        slow = await store.get_video(path="/m/slow.mp4")
        assert (slow.status, slow.failure_reason, slow.failure_kind) == (
            VideoStatus.FAILED,
            "timed out",
            ProbeErrorKind.PROBE_TIMEOUT,  # from its latest probe error
        )
        assert slow.probe_time == 100.5  # when it was last tried, as stored
        old = await store.get_video(path="/m/old.mp4")
        assert (old.status, old.failure_reason, old.failure_kind) == (VideoStatus.FAILED, "Invalid data", None)
        ok = await store.get_video(path="/m/ok.mp4")
        assert (ok.status, ok.failure_kind) == (VideoStatus.OK, None)
        assert await store.load_known("/m", recursive=True) == {
            # Probed before probe versions (version 1): size -1, so the next scan probes them again.
            "/m/ok.mp4": ("/m/ok.mp4", -1, 1, 0, 0),
            "/m/slow.mp4": ("/m/slow.mp4", -1, 1, 0, 1),
            "/m/old.mp4": ("/m/old.mp4", -1, 1, 0, 1),
        }
        failed, _ = await store.list_videos(VideoFilter(statuses=frozenset({VideoStatus.FAILED})), 10, "")
        assert [v.path for v in failed] == ["/m/old.mp4", "/m/slow.mp4"]
        assert [v.path for v in (await store.list_videos(VideoFilter(query="slow"), 10, ""))[0]] == []
        await store.write_batch([ProbedFile("/m/new.mp4", 1, 1, None, "worker died", ProbeErrorKind.PROBE_CRASHED)])
        assert (await store.get_video(path="/m/new.mp4")).failure_kind is ProbeErrorKind.PROBE_CRASHED
    finally:
        await store.close()
    assert schema_version(db) == SCHEMA_VERSION == 3
    reopened = await SqliteLibraryStore.open(db)  # current: nothing to do, nothing lost
    try:
        assert (await reopened.get_video(path="/m/slow.mp4")).failure_kind is ProbeErrorKind.PROBE_TIMEOUT
    finally:
        await reopened.close()


async def test_a_new_database_is_at_the_current_version(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    store = await SqliteLibraryStore.open(db)
    await store.close()
    assert schema_version(db) == SCHEMA_VERSION


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "lib.db"
    store = await SqliteLibraryStore.open(db)
    await store.close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_versions SET version = 99 WHERE component = 'library'")
    with pytest.raises(ConfigError, match="library schema version 99 is newer than this server understands"):
        await SqliteLibraryStore.open(db)


async def test_load_known_reads_one_covering_index(tmp_path: Path) -> None:
    """A 100,000-file rescan must not visit one table row per file: what load_known selects, status included, is
    all in videos_known (on a migrated database too)."""
    for name, prepare in (("new.db", None), ("old.db", make_version_1)):
        db = tmp_path / name
        if prepare is not None:
            prepare(db)
        store = await SqliteLibraryStore.open(db)
        await store.close()
        with sqlite3.connect(db) as conn:
            for where, params in (("path > ? AND path < ?", ("/m/", "/m0")), ("dir = ?", ("/m",))):
                plan = conn.execute(f"EXPLAIN QUERY PLAN {KNOWN_SELECT} WHERE {where}", params).fetchall()
                detail = " ".join(str(step[-1]) for step in plan)
                if where.startswith("path"):
                    assert "COVERING INDEX videos_known" in detail, (name, detail)
                else:
                    assert "videos_dir" in detail, (name, detail)
