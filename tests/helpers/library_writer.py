"""A process that writes big fenced library batches in a loop, for tests that freeze it (SIGSTOP) in the middle of
one: `python -m tests.helpers.library_writer URL JOB_ID OWNER EPOCH ROWS`. It opens the database the way a server
does (storage.open_stores), prints "writing" once its first batch starts, and exits 3 once a write is refused
(JobLost) or fails because the database ended its session."""

from __future__ import annotations

import asyncio
import sys

import psycopg

from reelscan.service.config import Settings
from reelscan.service.jobs.handler import Claim, JobLost
from reelscan.service.scan.library_model import ProbedFile
from reelscan.service.scan.media_info import ProbeErrorKind
from reelscan.service.storage import open_stores

LEASE_TTL_S = 0.5


async def main(url: str, job_id: str, owner: str, epoch: int, rows: int) -> int:
    stores = await open_stores(Settings(db_url=url, lease_ttl_s=LEASE_TTL_S))
    try:
        fence = Claim(job_id, owner, epoch)
        for batch in range(1_000_000):
            files = [
                ProbedFile(f"/frozen/{batch}/{i:07d}.mp4", 1, 1, None, "x", ProbeErrorKind.PROBE_FAILED)
                for i in range(rows)
            ]
            print("writing", flush=True)
            try:
                await stores.library.write_batch(files, fence=fence)
            except (JobLost, psycopg.Error) as error:
                print(f"refused: {type(error).__name__}: {error}", flush=True)
                return 3
        return 0
    finally:
        await stores.close()


if __name__ == "__main__":
    url, job_id, owner, epoch, rows = sys.argv[1:6]
    sys.exit(asyncio.run(main(url, job_id, owner, int(epoch), int(rows))))
