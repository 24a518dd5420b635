"""What is particular to PgLibraryStore (the behaviour every store shares is in test_library_store_contract.py): its
versioned schema, a version 1 database migrated to the current one."""

from __future__ import annotations

from reelscan.service.pg.database import PgDatabase
from reelscan.service.pg.migrate import migrate
from reelscan.service.scan.library_model import ProbedFile, VideoFilter, VideoStatus
from reelscan.service.scan.media_info import ProbeErrorKind
from reelscan.service.scan.pg_library_store import SCHEMA, PgLibraryStore, name_words, path_hash


async def test_a_version_1_database_is_migrated(pg_url: str) -> None:
    db = await PgDatabase.open(pg_url)
    try:
        async with db.pool.connection() as conn:
            assert await migrate(conn, "library", {1: SCHEMA[1]}, db.where) == 1
            for path, size, status, error, codec in (
                ("/m/ok.mp4", 10, "ok", None, "h264"),
                ("/m/slow.mp4", 20, "failed", "timed out", None),
                ("/m/old.mp4", 30, "failed", "Invalid data", None),
            ):
                name = path.rsplit("/", 1)[1]
                await conn.execute(
                    "INSERT INTO videos (path, path_hash, dir, file_name, name_words, size, mtime_ns, status, error, "
                    "video_codec, probe_time, create_time, update_time) "
                    "VALUES (%s, %s, '/m', %s, %s::tsvector, %s, 1, %s, %s, %s, 100.5, 100.0, 100.5)",
                    (path, path_hash(path), name, name_words(name), size, status, error, codec),
                )
            for job, path, kind in (
                ("job-1", "/m/slow.mp4", ProbeErrorKind.PROBE_FAILED),
                ("job-2", "/m/slow.mp4", ProbeErrorKind.PROBE_TIMEOUT),  # its latest probe
                ("job-3", "/m/slow.mp4", ProbeErrorKind.UNREADABLE),  # a walk error, not a probe
                ("job-3", "/m/ok.mp4", ProbeErrorKind.PROBE_CRASHED),  # an ok row: untouched
            ):
                await conn.execute(
                    "INSERT INTO scan_errors (job_id, path, path_hash, kind, reason, create_time) "
                    "VALUES (%s, %s, %s, %s, 'r', 1.0)",
                    (job, path, path_hash(path), int(kind)),
                )
        store = await PgLibraryStore.open(db)
        slow = await store.get_video(path="/m/slow.mp4")
        assert (slow.status, slow.failure_reason, slow.failure_kind, slow.probe_time) == (
            VideoStatus.FAILED,
            "timed out",
            ProbeErrorKind.PROBE_TIMEOUT,
            100.5,
        )
        old = await store.get_video(path="/m/old.mp4")
        assert (old.status, old.failure_reason, old.failure_kind) == (VideoStatus.FAILED, "Invalid data", None)
        assert (await store.get_video(path="/m/ok.mp4")).failure_kind is None
        assert await store.load_known("/m", recursive=True) == {
            # Probed before probe versions (version 1): size -1, so the next scan probes them again.
            "/m/ok.mp4": ("/m/ok.mp4", -1, 1, 0, 0),
            "/m/slow.mp4": ("/m/slow.mp4", -1, 1, 0, 1),
            "/m/old.mp4": ("/m/old.mp4", -1, 1, 0, 1),
        }
        failed, _ = await store.list_videos(VideoFilter(statuses=frozenset({VideoStatus.FAILED})), 10, "")
        assert [v.path for v in failed] == ["/m/old.mp4", "/m/slow.mp4"]
        await store.write_batch([ProbedFile("/m/new.mp4", 1, 1, None, "worker died", ProbeErrorKind.PROBE_CRASHED)])
        assert (await store.get_video(path="/m/new.mp4")).failure_kind is ProbeErrorKind.PROBE_CRASHED
        async with db.pool.connection() as conn:
            cursor = await conn.execute("SELECT version FROM schema_versions WHERE component = 'library'")
            assert await cursor.fetchone() == (max(SCHEMA),) == (3,)
        await PgLibraryStore.open(db)  # current: nothing to do
    finally:
        await db.close()
