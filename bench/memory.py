"""7. Memory: server RSS with an N-video library, idle and while a client lists it page by page (limit 200 MB).

The library is a copy of the cached snapshot (tree-N scanned for real, see corpus.py). RSS is the server process
alone (psutil); its probe workers are separate processes, reported in the note. Idle is read 1 s after start-up
(health check answered); the peak while listing is sampled every 20 ms during ListVideos over every page at the
largest page size (1,000). The reference column is the same server with an empty library.
"""

from __future__ import annotations

import asyncio
import time

from bench import corpus, rpc
from bench.harness import MB, Context, PeakRss, Row, children_rss_bytes, log, reelscan_server, rss_bytes
from reelscan.v1 import library_pb2, library_pb2_grpc

PAGE_SIZE = 1000
SETTLE_S = 1.0


async def list_all(address: str) -> int:
    async with rpc.channel(address) as ch:
        stub = library_pb2_grpc.LibraryServiceStub(ch)
        token = ""
        count = 0
        while True:
            page = await stub.ListVideos(library_pb2.ListVideosRequest(page_size=PAGE_SIZE, page_token=token))
            count += len(page.videos)
            token = page.next_page_token
            if not token:
                return count


def run(ctx: Context) -> list[Row]:
    count = ctx.sizes.tree_files
    root = corpus.tree(count)
    snapshot, _ = corpus.library(count)
    with reelscan_server(ctx.db("memory-empty"), [root]) as server:
        assert server.proc is not None
        time.sleep(SETTLE_S)
        empty = rss_bytes(server.proc.pid)
    db = corpus.copy_library(snapshot, ctx.db("memory"))
    with reelscan_server(db, [root], fresh=False) as server:
        assert server.proc is not None
        pid = server.proc.pid
        time.sleep(SETTLE_S)
        idle = rss_bytes(pid)
        workers = children_rss_bytes(pid)
        with PeakRss(pid) as peak:
            t0 = time.perf_counter()
            listed = asyncio.run(list_all(server.address))
            seconds = time.perf_counter() - t0
        time.sleep(SETTLE_S)
        after = rss_bytes(pid)
    if listed != count:
        raise RuntimeError(f"listed {listed} videos, expected {count}")
    log(f"  RSS empty {empty / MB:.0f} MB, idle {idle / MB:.0f} MB, listing peak {peak.peak / MB:.0f} MB")
    return [
        Row(
            f"server RSS (7), {count:,}-video library, idle",
            "MB",
            idle / MB,
            empty / MB,
            "same server, empty library",
            limit=200,
            higher_is_better=False,
            note=f"probe workers (separate processes) hold another {workers / MB:.0f} MB in all",
        ),
        Row(
            f"server RSS (7), peak while listing {count:,} videos",
            "MB",
            peak.peak / MB,
            empty / MB,
            "same server, empty library",
            limit=200,
            higher_is_better=False,
            note=(
                f"ListVideos x{-(-count // PAGE_SIZE)} pages of {PAGE_SIZE} in {seconds:.1f} s "
                f"({count / seconds:,.0f} videos/s); {peak.samples} RSS samples; {after / MB:.0f} MB after"
            ),
            extra={"listing_seconds": seconds, "rss_after_bytes": after, "workers_rss_bytes": workers},
        ),
    ]
