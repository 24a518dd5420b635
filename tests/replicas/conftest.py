"""Several real reelscan replicas (server processes) on one PostgreSQL database, and async clients to each.

Each replica connects with its own `application_name` (`reelscan-<pid>-<n>-r<i>`, given in the URL's query string,
so the server needs no option for it), so a test can find that replica's backends in `pg_stat_activity`; a test
may also give each replica its own URL (e.g. its own role, to keep that one replica from logging in). The lease TTL is
short (2 s by default), probes are slowed down (`--probe-delay`) and each replica has one probe worker, so a scan
lasts long enough to act on mid-way.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Generator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from google.protobuf import duration_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reelscan.v1 import job_pb2, job_service_pb2, library_pb2, scan_service_pb2
from tests.helpers.polling import poll  # noqa: F401  (the replica tests import it from here)
from tests.helpers.postgres import PostgresCluster
from tests.helpers.server import ServerProcess
from tests.helpers.stubs import Stubs
from tests.media import make_clip

LEASE_TTL_S = 2.0
RECOVERY_SEQ_GAP = 1_000_000  # service/jobs/model.py: a crash recovery makes seq jump this far
ACTIVE = (job_pb2.JOB_STATE_PENDING, job_pb2.JOB_STATE_RUNNING)
TERMINAL = (
    job_pb2.JOB_STATE_SUCCEEDED,
    job_pb2.JOB_STATE_FAILED,
    job_pb2.JOB_STATE_CANCELLED,
    job_pb2.JOB_STATE_TIMED_OUT,
)
SERVING = health_pb2.HealthCheckResponse.SERVING
_tags = itertools.count(1)
T = TypeVar("T")


def state_name(state: int) -> str:
    return str(job_pb2.JobState.Name(state))  # type: ignore[arg-type]


# ---- media ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("replica-clips") / "source.mp4").path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The directory every replica may scan (all replicas see the media at the same paths)."""
    return tmp_path_factory.mktemp("replica-media")


def make_tree(root: Path, clip: Path, count: int) -> Path:
    """`count` hard links of one clip under `root`: distinct files for the library, no encoding cost."""
    root.mkdir(parents=True)
    for i in range(count):
        os.link(clip, root / f"clip-{i:03d}.mp4")
    return root


# ---- replicas -------------------------------------------------------------------------------------------------


def with_application_name(url: str, name: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}application_name={name}"


class Replicas:
    """N server processes on one database, started (and stopped) in parallel."""

    def __init__(
        self,
        url: str,
        media: Path,
        *,
        count: int = 3,
        lease_ttl_s: float = LEASE_TTL_S,
        probe_delay_s: float = 0.1,
        extra_args: Sequence[str] = (),
        urls: Sequence[str] | None = None,
    ) -> None:
        self.url = url
        self.lease_ttl_s = lease_ttl_s
        run = next(_tags)
        self.app_names = [f"reelscan-{os.getpid()}-{run}-r{i}" for i in range(count)]
        args = [
            "--lease-ttl", str(lease_ttl_s),
            "--probe-delay", str(probe_delay_s),
            "--probe-workers", "1",
            "--max-queued-jobs", "500",
            *extra_args,
        ]  # fmt: skip
        self.servers = [
            ServerProcess(with_application_name(urls[i] if urls else url, name), allow_roots=[media], extra_args=args)
            for i, name in enumerate(self.app_names)
        ]

    def __len__(self) -> int:
        return len(self.servers)

    def start(self) -> Replicas:
        with ThreadPoolExecutor(len(self.servers)) as pool:
            for future in [pool.submit(server.start, 60.0) for server in self.servers]:
                future.result()
        return self

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.servers)) as pool:
            futures = [pool.submit(server.stop) for server in self.servers]
        for server, future in zip(self.servers, futures, strict=True):
            with contextlib.suppress(Exception):
                future.result()
            server.kill()

    def index_of(self, address: str) -> int:
        """Which replica listens at `address` (a Job's replica_address)."""
        for i, server in enumerate(self.servers):
            if server.address == address:
                return i
        raise AssertionError(f"no replica listens at {address!r}: {[s.address for s in self.servers]}")

    def logs(self) -> str:
        return "\n".join(f"---- replica {i} ({s.address}) ----\n{s.log}" for i, s in enumerate(self.servers))


MakeReplicas = Callable[..., Replicas]


# ---- clients --------------------------------------------------------------------------------------------------


class Api(Stubs):
    """Async calls to one replica, each with a deadline."""

    def __init__(self, channel: grpc.aio.Channel, address: str) -> None:
        super().__init__(channel)
        self.address = address
        self.health = health_pb2_grpc.HealthStub(channel)

    async def start_scan(self, path: Path, **fields: object) -> scan_service_pb2.StartScanResponse:
        request = scan_service_pb2.StartScanRequest(path=str(path), **fields)  # type: ignore[arg-type]
        response: scan_service_pb2.StartScanResponse = await self.scans.StartScan(request, timeout=10)
        return response

    async def scan(self, path: Path) -> job_pb2.Job:
        return (await self.start_scan(path)).job

    async def get(self, job_id: str) -> job_pb2.Job:
        response: job_service_pb2.GetJobResponse = await self.jobs.GetJob(
            job_service_pb2.GetJobRequest(job_id=job_id), timeout=10
        )
        return response.job

    async def list_jobs(self, *states: int, parent_id: str = "") -> list[job_pb2.Job]:
        """Every job (of their own, or with `parent_id` that job's shards), all pages."""
        jobs: list[job_pb2.Job] = []
        token = ""
        while True:
            request = job_service_pb2.ListJobsRequest(
                states=states, page_size=1000, page_token=token, parent_id=parent_id
            )
            response: job_service_pb2.ListJobsResponse = await self.jobs.ListJobs(request, timeout=10)
            jobs += response.jobs
            token = response.next_page_token
            if not token:
                return jobs

    async def wait(self, job_id: str, seconds: int = 60) -> job_pb2.Job:
        response: job_service_pb2.WaitJobResponse = await self.jobs.WaitJob(
            job_service_pb2.WaitJobRequest(job_id=job_id, timeout=duration_pb2.Duration(seconds=seconds)),
            timeout=seconds + 10,
        )
        assert response.done, f"job not done after {seconds}s on {self.address}: {response.job}"
        return response.job

    async def cancel(self, job_id: str) -> job_pb2.Job:
        response: job_service_pb2.CancelJobResponse = await self.jobs.CancelJob(
            job_service_pb2.CancelJobRequest(job_id=job_id), timeout=10
        )
        return response.job

    async def videos(self, prefix: Path) -> list[library_pb2.Video]:
        found: list[library_pb2.Video] = []
        token = ""
        while True:
            response: library_pb2.ListVideosResponse = await self.library.ListVideos(
                library_pb2.ListVideosRequest(path_prefix=str(prefix), page_size=1000, page_token=token), timeout=10
            )
            found += response.videos
            token = response.next_page_token
            if not token:
                return found

    async def health_status(self) -> int:
        response = await self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        return int(response.status)


class Watch:
    """Records every JobUpdate of one job on one replica, with the monotonic time it arrived."""

    def __init__(self, api: Api, job_id: str, *, seconds: float = 90) -> None:
        self.api = api
        self.job_id = job_id
        self.updates: list[job_pb2.JobUpdate] = []
        self.times: list[float] = []
        self.task = asyncio.create_task(self._run(seconds))

    async def _run(self, seconds: float) -> list[job_pb2.JobUpdate]:
        async with asyncio.timeout(seconds):
            stream = self.api.jobs.WatchJob(job_service_pb2.WatchJobRequest(job_id=self.job_id))
            async for update in stream:
                self.updates.append(update)
                self.times.append(time.monotonic())
        return self.updates

    async def done(self) -> list[job_pb2.JobUpdate]:
        return await self.task

    async def until(self, predicate: Callable[[job_pb2.JobUpdate], bool], seconds: float = 30) -> job_pb2.JobUpdate:
        """Waits for the first update (from the start of the watch) that satisfies `predicate`."""
        async with asyncio.timeout(seconds):
            seen = 0
            while True:
                for update in self.updates[seen:]:
                    if predicate(update):
                        return update
                seen = len(self.updates)
                if self.task.done():
                    self.task.result()
                    raise AssertionError(f"watch of {self.job_id} ended without that update: {self.updates[-1:]}")
                await asyncio.sleep(0.01)


@contextlib.asynccontextmanager
async def connect(replicas: Replicas) -> AsyncIterator[list[Api]]:
    """One channel per replica."""
    async with contextlib.AsyncExitStack() as stack:
        apis = []
        for server in replicas.servers:
            channel = await stack.enter_async_context(grpc.aio.insecure_channel(server.address))
            apis.append(Api(channel, server.address))
        yield apis


# ---- fixtures -------------------------------------------------------------------------------------------------


@pytest.fixture
def make_replicas(pg_cluster: PostgresCluster, media: Path, request: pytest.FixtureRequest) -> Iterator[MakeReplicas]:
    """Starts replicas on a fresh database of the session cluster (or on `url`); all stopped at the end of the
    test, their logs attached to a failure report."""
    started: list[Replicas] = []

    def factory(*, url: str | None = None, **kwargs: object) -> Replicas:
        if url is None:
            url = pg_cluster.create_database(f"replicas_{uuid.uuid4().hex[:12]}")
        replicas = Replicas(url, media, **kwargs)  # type: ignore[arg-type]
        started.append(replicas)
        return replicas.start()

    yield factory
    for replicas in started:
        replicas.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        for replicas in started:
            print(replicas.logs())


@pytest.fixture
def own_cluster(pg_cluster: PostgresCluster) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster for this test alone, to stop and start (`pg_cluster` is taken first only so the test
    skips the same way where the binaries are absent)."""
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keeps each phase's report on the item, so a fixture's teardown can tell whether the test failed."""
    report = yield
    setattr(item, f"rep_{report.when}", report)  # type: ignore[attr-defined]
    return report
