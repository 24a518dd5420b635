"""The Python clients against a real server: scan_and_wait with progress, auto-paging, lookups, error mapping
with real rich details, TLS + token, and a watch that survives a server restart."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from reelscan.client import (
    AsyncReelscanClient,
    FailedPreconditionError,
    InvalidArgumentError,
    NotFoundError,
    ReconnectPolicy,
    ReelscanClient,
    ReelscanError,
    TlsOptions,
    UnauthenticatedError,
    is_terminal,
)
from reelscan.v1 import job_pb2
from tests.client.conftest import Templates, make_library, run_cli
from tests.helpers.certs import CertificateAuthority
from tests.helpers.server import ServerProcess


def test_sync_scan_and_wait_reports_real_progress(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 40)
    updates: list[job_pb2.JobUpdate] = []
    with ReelscanClient(cli_server.address) as client:
        job = client.scan_and_wait(library_dir, on_update=updates.append)
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED
    assert job.result.discovered == 40 and job.result.new == 40
    progress = [u.progress for u in updates]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(0 < p < 1 for p in progress)  # it was observed part-way, not just at 0 and 1
    assert [u.seq for u in updates] == sorted({u.seq for u in updates})


async def test_async_scan_and_wait_awaits_async_callbacks(
    cli_server: ServerProcess, library_dir: Path, templates: Templates
) -> None:
    make_library(library_dir, templates, 10)
    states: list[int] = []

    async def on_update(update: job_pb2.JobUpdate) -> None:
        states.append(update.state)

    async with AsyncReelscanClient(cli_server.address) as client:
        job = await client.scan_and_wait(str(library_dir), on_update=on_update)
        videos = [v async for v in client.list_videos(path_prefix=library_dir, page_size=3)]
        jobs = [j.id async for j in client.list_jobs(limit=1)]
    assert job.state == job_pb2.JOB_STATE_SUCCEEDED
    assert states[-1] == job_pb2.JOB_STATE_SUCCEEDED
    assert len(videos) == 10  # four pages of three, followed for us
    assert jobs == [job.id]  # newest first


def test_sync_lookups_and_paging(cli_server: ServerProcess, library_dir: Path, templates: Templates) -> None:
    make_library(library_dir, templates, 7, broken=3, hd=["hd-one.mp4"])
    with ReelscanClient(cli_server.address) as client:
        job = client.scan_and_wait(library_dir)
        paths = [v.path for v in client.list_videos(path_prefix=library_dir, page_size=2)]
        assert len(paths) == 8 and paths == sorted(paths)
        assert [v.path for v in client.list_videos(path_prefix=library_dir, limit=3)] == paths[:3]
        assert [v.file_name for v in client.list_videos(path_prefix=library_dir, min_height=720)] == ["hd-one.mp4"]
        errors = list(client.list_scan_errors(job.id, page_size=1))
        assert sorted(Path(e.path).name for e in errors) == ["broken-0.mp4", "broken-1.mp4", "broken-2.mp4"]
        by_path = client.get_video(library_dir / "hd-one.mp4")
        assert client.get_video(by_path.id) == by_path
        assert client.wait_job(job.id, timeout=5).state == job_pb2.JOB_STATE_SUCCEEDED


def test_real_errors_map_to_the_hierarchy_with_rich_details(cli_server: ServerProcess, scan_root: Path) -> None:
    with ReelscanClient(cli_server.address) as client:
        with pytest.raises(NotFoundError) as not_found:
            client.get_job("no-such-job")
        assert not_found.value.code is grpc.StatusCode.NOT_FOUND
        assert not_found.value.error_info is not None and not_found.value.error_info.domain == "reelscan.v1"

        with pytest.raises(InvalidArgumentError) as invalid:
            client.start_scan("relative/path")
        assert "path" in {v.field for v in invalid.value.field_violations}

        with pytest.raises(FailedPreconditionError):
            client.start_scan(_a_file(scan_root))

        with pytest.raises(NotFoundError):
            client.get_video(scan_root / "never-scanned.mp4")


def _a_file(root: Path) -> Path:
    path = root / "not-a-directory.txt"
    path.write_text("x")
    return path


@pytest.fixture
def secure_server(tmp_path: Path, scan_root: Path) -> Iterator[tuple[ServerProcess, CertificateAuthority]]:
    """TLS with a client certificate required (mTLS) and a bearer token."""
    ca = CertificateAuthority(tmp_path)
    server_pair = ca.issue("server", server=True)
    (tmp_path / "token").write_text("s3cret\n")
    args = [
        "--tls-cert", str(server_pair.cert), "--tls-key", str(server_pair.key),
        "--tls-client-ca", str(ca.pair.cert), "--auth-token-file", str(tmp_path / "token"),
    ]  # fmt: skip

    class Secure(ServerProcess):
        def wait_healthy(self, timeout: float = 10.0) -> None:
            pass  # the base class probes in plaintext; the tests below are the real check

    with Secure(tmp_path / "db.sqlite", allow_roots=[scan_root], extra_args=args) as server:
        yield server, ca


def test_tls_client_certificate_and_token(secure_server: tuple[ServerProcess, CertificateAuthority]) -> None:
    server, ca = secure_server
    client_pair = ca.issue("client", server=False)
    tls = TlsOptions.from_files(ca=ca.pair.cert, cert=client_pair.cert, key=client_pair.key)
    with ReelscanClient(server.address, tls=tls, token="s3cret", timeout=10) as client:
        assert list(client.list_jobs()) == []
    with ReelscanClient(server.address, tls=tls, timeout=10) as client, pytest.raises(UnauthenticatedError):
        list(client.list_jobs())

    base = ["jobs", "list", "--tls-ca", str(ca.pair.cert), "--tls-cert", str(client_pair.cert)]
    ok = run_cli(*base, "--tls-key", str(client_pair.key), server=server, env={"REELSCAN_TOKEN": "s3cret"})
    assert ok.returncode == 0, ok.stderr
    no_token = run_cli(*base, "--tls-key", str(client_pair.key), server=server)
    assert no_token.returncode == 1 and "UNAUTHENTICATED" in no_token.stderr
    assert run_cli(*base, server=server).returncode == 2  # --tls-cert without --tls-key


@pytest.mark.parametrize("kill", [False, True], ids=["graceful-restart", "kill-9-restart"])
async def test_async_watch_survives_a_server_restart(
    kill: bool, tmp_path: Path, scan_root: Path, templates: Templates
) -> None:
    library = Path(scan_root) / f"restart-{'kill' if kill else 'term'}"
    make_library(library, templates, 150)  # about 1.5 s of probing at 0.02 s x 2 workers
    args = ["--probe-delay", "0.02", "--probe-workers", "2"]
    server = ServerProcess(tmp_path / "reelscan.db", allow_roots=[scan_root], extra_args=args).start()
    disconnects: list[ReelscanError] = []
    updates: list[job_pb2.JobUpdate] = []
    try:
        policy = ReconnectPolicy(initial_backoff_s=0.05, max_backoff_s=0.5, give_up_after_s=30)
        async with AsyncReelscanClient(server.address, reconnect=policy) as client:
            job = (await client.start_scan(library)).job
            restarting: asyncio.Task[ServerProcess] | None = None
            async for update in client.watch_job(job.id, on_disconnect=disconnects.append):
                updates.append(update)
                if restarting is None and update.state == job_pb2.JOB_STATE_RUNNING and update.progress > 0.1:
                    # Same port, same database, in a thread so the watch lives through the restart as it happens.
                    restarting = asyncio.create_task(asyncio.to_thread(server.restart, kill=kill))
            assert restarting is not None
            await restarting
            final = await client.get_job(job.id)
    finally:
        server.stop()
        server.kill()
    assert disconnects, "the restart did not interrupt the watch"
    assert is_terminal(updates[-1].state)
    assert updates[-1].state == final.state  # the terminal state the server settled on was delivered
    assert sum(is_terminal(u.state) for u in updates) == 1
    seqs = [u.seq for u in updates[:-1]]
    assert seqs == sorted(set(seqs))  # nothing delivered twice
