"""Existing libraries (issue 16): a database written by the previous schema (library version 2, before probe
versions and the new fields) opens in a real server, is migrated, still lists its rows, and the next scan of their
root probes them again (size and mtime unchanged: the stale probe version counts as a change), filling the new
fields in; the scan after that skips them as unchanged. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path

import grpc
import psycopg
import pytest

from reelscan.service.pg.migrate import migrate
from reelscan.service.scan import pg_library_store, sqlite_library_store
from reelscan.v1 import library_pb2
from tests.helpers.databases import BACKENDS, new_database
from tests.helpers.server import ServerProcess
from tests.helpers.stubs import Stubs
from tests.media import make_clip, make_zero_byte
from tests.scan.test_metadata_e2e import scan

# The columns a version-2 server wrote for an OK row and for a failed one.
OLD_ROW = (
    "path, dir, file_name, size, mtime_ns, status, error, error_kind, container_format, duration_us, bit_rate, "
    "video_codec, video_profile, width, height, frame_rate, pixel_format, bit_depth, rotation, color_transfer, "
    "color_primaries, hdr, subtitle_count, probe_time, create_time, update_time"
)
OLD_REASON = "Invalid data found when processing input"


def old_rows(good: Path, empty: Path) -> list[tuple[object, ...]]:
    rows = []
    for path, ok in ((good, True), (empty, False)):
        st = path.stat()
        media = (
            ("mov,mp4,m4a,3gp,3g2,mj2", 1_000_000, 40_000, "h264", "High", 64, 48, 25.0, "yuv420p", 8, 0, "", "")
            if ok
            else (None,) * 13
        )
        rows.append(
            (
                str(path),
                str(path.parent),
                path.name,
                st.st_size,
                st.st_mtime_ns,
                "ok" if ok else "failed",
                None if ok else OLD_REASON,
                None if ok else 1,
                *media,
                False if ok else None,
                0,
                100.0,
                100.0,
                100.0,
            )
        )
    return rows


def make_sqlite_version_2(db: Path, rows: list[tuple[object, ...]]) -> None:
    conn = sqlite3.connect(db)
    for statement in sqlite_library_store._SCHEMA_V1 + sqlite_library_store._MIGRATIONS[2]:
        conn.execute(statement)
    conn.execute("INSERT INTO schema_versions (component, version) VALUES ('library', 2)")
    marks = ", ".join("?" for _ in OLD_ROW.split(","))
    for row in rows:
        hdr = row[21]
        conn.execute(
            f"INSERT INTO videos ({OLD_ROW}) VALUES ({marks})", (*row[:21], None if hdr is None else 0, *row[22:])
        )
    conn.execute("""UPDATE videos SET audio_json = '[["aac", 2, 48000, "eng"]]' WHERE status = 'ok'""")
    conn.commit()
    conn.close()


async def make_pg_version_2(url: str, rows: list[tuple[object, ...]]) -> None:
    versions = {v: pg_library_store.SCHEMA[v] for v in (1, 2)}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await migrate(conn, "library", versions, "test")
        marks = ", ".join("%s" for _ in OLD_ROW.split(","))
        for row in rows:
            path = str(row[0])
            await conn.execute(
                f"INSERT INTO videos ({OLD_ROW}, path_hash, name_words, audio) "
                f"VALUES ({marks}, %s, %s::tsvector, %s::jsonb)",
                (
                    *row,
                    pg_library_store.path_hash(path),
                    pg_library_store.name_words(os.path.basename(path)),
                    json.dumps([["aac", 2, 48000, "eng"]] if row[5] == "ok" else []),
                ),
            )


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_of_the_previous_schema_are_probed_again(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    media = tmp_path / "media"
    good = make_clip(media / "old.mp4", audio_language="eng").path
    empty = make_zero_byte(media / "empty.mp4")
    rows = old_rows(good, empty)
    db = new_database(backend, request, tmp_path)
    if backend == "sqlite":
        make_sqlite_version_2(Path(db), rows)
    else:
        asyncio.run(make_pg_version_2(db, rows))

    async def check(server: ServerProcess) -> None:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stubs = Stubs(channel)
            before = (await stubs.library.GetVideo(library_pb2.GetVideoRequest(path=str(good)), timeout=10)).video
            # The migrated row is there as it was, the new fields not known yet.
            assert (before.video.codec, before.audio[0].language) == ("h264", "eng")
            assert before.video.hdr_format == library_pb2.HDR_FORMAT_UNSPECIFIED
            assert before.audio[0].channel_layout == "" and before.probe_time.seconds == 100

            job = await scan(stubs, media)
            r = job.result
            # Nothing changed on disk, yet both rows are probed again: their probe version is older.
            assert (r.discovered, r.probed, r.updated, r.new, r.unchanged, r.failed) == (2, 2, 1, 0, 0, 1)
            after = (await stubs.library.GetVideo(library_pb2.GetVideoRequest(path=str(good)), timeout=10)).video
            assert after.id == before.id and after.probe_time.seconds > 100
            assert after.video.hdr_format == library_pb2.HDR_FORMAT_SDR
            assert (after.audio[0].channel_layout, after.audio[0].profile) == ("stereo", "LC")
            assert after.video.frame_count == 25 and after.video.display_width == 64
            broken = (await stubs.library.GetVideo(library_pb2.GetVideoRequest(path=str(empty)), timeout=10)).video
            assert broken.failure_reason == "empty file"  # the clearer reason replaced the old generic one

            again = (await scan(stubs, media)).result
            assert (again.probed, again.unchanged, again.unchanged_failed) == (0, 2, 1)

    with ServerProcess(db, allow_roots=[media], extra_args=["--probe-workers", "1"]) as server:
        asyncio.run(check(server))
