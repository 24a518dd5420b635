"""Server info (issue 14): ServerService/GetServerInfo on a real server process on both backends, `reelscan server
info` (terminal, plain, --json), `reelscan version`, `reelscan serve --version`, and the README's "Server info and
health" commands. The server under test has non-default limits, two allowed roots (one with a hostile name), a
bearer token and, on PostgreSQL, a password in its URL: the info must show the configuration and neither secret."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import av
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reelscan.client import AsyncReelscanClient, ReelscanClient, UnauthenticatedError
from reelscan.v1 import (
    job_service_pb2,
    job_service_pb2_grpc,
    scan_service_pb2,
    scan_service_pb2_grpc,
    server_service_pb2_grpc,
)
from reelscan.v1 import server_service_pb2 as pb
from tests.client.conftest import BIN, REPO, Templates, cli_env, make_library, reelscan_cmd, run_cli
from tests.client.terminal import Tmux, foreign_escapes, run_in_pty
from tests.helpers.databases import BACKENDS, new_database
from tests.helpers.postgres import PASSWORD
from tests.helpers.server import ServerProcess

TOKEN = "tok-9f3b1c7e-secret"
HOSTILE_ROOT = "archive [bold]x\x1b]0;PWNED\x07"
HOSTILE_SHOWN = "archive [bold]x\\x1b]0;PWNED\\x07"
LIMITS = {
    "--max-concurrent-jobs": "3",
    "--max-queued-jobs": "17",
    "--max-watchers": "23",
    "--job-timeout": "123",
    "--probe-timeout": "7.5",
    "--probe-workers": "1",
    "--job-retention": "4567",
    "--max-message-bytes": "3000000",
    "--lease-ttl": "6",
    "--grace-period": "2",
    "--shard-threshold": "777",
    "--shard-size": "55",
    "--probe-concurrency": "3",
    "--extensions": "mp4,MKV",
}
VERSION = metadata.version("reelscan")


@dataclass
class Configured:
    server: ServerProcess
    backend: str
    db: str  # what --db was: a SQLite path, or a postgresql:// URL with the password in it
    media: Path
    archive: Path

    @property
    def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {TOKEN}")]

    def info(self) -> pb.ServerInfo:
        with grpc.insecure_channel(self.server.address) as channel:
            stub = server_service_pb2_grpc.ServerServiceStub(channel)
            response: pb.GetServerInfoResponse = stub.GetServerInfo(
                pb.GetServerInfoRequest(), metadata=self.metadata, timeout=30
            )
        return response.info

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, server=self.server, env={"REELSCAN_TOKEN": TOKEN})


@pytest.fixture(scope="module", params=BACKENDS)
def configured(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, templates: Templates
) -> Iterator[Configured]:
    backend = str(request.param)
    base = tmp_path_factory.mktemp(f"info-{backend}")
    media = base / "media"
    make_library(media, templates, 3)
    archive = base / HOSTILE_ROOT
    archive.mkdir()
    token_file = base / "token"
    token_file.write_text(TOKEN + "\n")
    db = new_database(backend, request, base)
    args = [arg for pair in LIMITS.items() for arg in pair] + ["--auth-token-file", str(token_file)]
    with ServerProcess(db, allow_roots=[media, archive], extra_args=args) as server:
        yield Configured(server, backend, db, media.resolve(), archive.resolve())


def test_get_server_info_shows_the_configured_roots_limits_and_database(configured: Configured) -> None:
    info = configured.info()
    assert list(info.allowed_roots) == [str(configured.media), str(configured.archive)]
    assert list(info.extensions) == ["mp4", "mkv"]
    limits = info.limits
    assert (limits.max_concurrent_jobs, limits.max_queued_jobs, limits.max_watchers) == (3, 17, 23)
    assert limits.job_timeout.ToNanoseconds() == 123 * 10**9
    assert limits.probe_timeout.ToNanoseconds() == 7_500_000_000
    assert limits.probe_workers == 1 and info.prober.workers == 1
    assert limits.job_retention.seconds == 4567
    assert limits.max_message_bytes == 3_000_000
    assert limits.lease_ttl.seconds == 6 and limits.grace_period.seconds == 2
    assert (limits.shard_threshold, limits.shard_size, limits.probe_concurrency) == (777, 55, 3)
    assert info.auth_required and not info.tls and not info.client_certificates_required
    db = info.database
    if configured.backend == "sqlite":
        assert db.kind == pb.DATABASE_KIND_SQLITE
        assert db.location == str(Path(configured.db).absolute())
        assert not db.host and not db.port
    else:
        assert db.kind == pb.DATABASE_KIND_POSTGRESQL
        host_port, name = configured.db.rsplit("@", 1)[1].split("/", 1)
        assert f"{db.host}:{db.port}" == host_port and db.name == name and db.user == "postgres"
        assert db.location == f"postgresql://postgres@{host_port}/{name}"
    # What it runs: the package's version, the prober, and the PyAV/FFmpeg the probe workers load.
    assert info.version == VERSION
    assert info.build_revision  # a git describe in this checkout, else "unknown"
    assert info.prober.name == "pyav"
    assert info.prober.pyav_version == av.__version__
    assert info.prober.ffmpeg_version == str(av.ffmpeg_version_info)
    assert info.prober.library_versions["libavcodec"] == ".".join(map(str, av.library_versions["libavcodec"]))
    assert info.python_version == ".".join(map(str, sys.version_info[:3]))
    assert info.grpc_version == grpc.__version__
    assert info.replica_address == configured.server.address


def test_replica_id_is_that_of_the_jobs_it_runs_and_uptime_grows(configured: Configured) -> None:
    first = configured.info()
    with grpc.insecure_channel(configured.server.address) as channel:
        scans = scan_service_pb2_grpc.ScanServiceStub(channel)
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        started = scans.StartScan(
            scan_service_pb2.StartScanRequest(path=str(configured.media), force=True),
            metadata=configured.metadata,
            timeout=30,
        )
        waited = jobs.WaitJob(
            job_service_pb2.WaitJobRequest(job_id=started.job.id), metadata=configured.metadata, timeout=70
        )
    assert waited.done and waited.job.result.probed == 3, waited.job
    assert waited.job.replica_id == first.replica_id
    assert waited.job.replica_address == first.replica_address
    time.sleep(0.2)
    second = configured.info()
    assert second.replica_id == first.replica_id
    assert second.start_time == first.start_time
    grown = second.uptime.ToNanoseconds() - first.uptime.ToNanoseconds()
    assert grown >= 200_000_000, (first.uptime, second.uptime)
    # The uptime is counted from the start time the info shows (give or take the time a call takes).
    now_ns = time.time_ns()
    assert now_ns - 5 * 10**9 < second.start_time.ToNanoseconds() + second.uptime.ToNanoseconds() <= now_ns


async def test_both_python_clients_have_server_info(configured: Configured) -> None:
    async with AsyncReelscanClient(configured.server.address, token=TOKEN) as client:
        from_async = await client.server_info()
    with ReelscanClient(configured.server.address, token=TOKEN) as sync:
        from_sync = sync.server_info()
    assert from_async.replica_id == from_sync.replica_id == configured.info().replica_id
    assert list(from_sync.allowed_roots) == [str(configured.media), str(configured.archive)]
    assert from_async.limits.max_watchers == 23
    with ReelscanClient(configured.server.address) as anonymous, pytest.raises(UnauthenticatedError):
        anonymous.server_info()


def test_secrets_never_appear_in_the_info_nor_the_cli(configured: Configured) -> None:
    raw = configured.info().SerializeToString()
    as_json = configured.cli("server", "info", "--json")
    human = configured.cli("server", "info")
    assert as_json.returncode == 0 and human.returncode == 0, (as_json.stderr, human.stderr)
    for secret in (TOKEN, PASSWORD):
        assert secret.encode() not in raw, secret
        assert secret not in as_json.stdout and secret not in human.stdout, secret
        assert secret not in as_json.stderr + human.stderr, secret


def test_an_unauthenticated_call_is_refused(configured: Configured) -> None:
    with grpc.insecure_channel(configured.server.address) as channel:
        stub = server_service_pb2_grpc.ServerServiceStub(channel)
        for metadata in ((), (("authorization", "Bearer wrong"),)):
            with pytest.raises(grpc.RpcError) as refused:
                stub.GetServerInfo(pb.GetServerInfoRequest(), metadata=metadata, timeout=10)
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        # Health stays open, and has a status for ServerService.
        health = health_pb2_grpc.HealthStub(channel)
        check = health.Check(health_pb2.HealthCheckRequest(service="reelscan.v1.ServerService"), timeout=10)
        assert check.status == health_pb2.HealthCheckResponse.SERVING
    result = run_cli("server", "info", server=configured.server)
    assert result.returncode == 1
    assert "UNAUTHENTICATED" in result.stderr and "Traceback" not in result.stderr
    assert "allowed root" not in result.stdout


def test_server_info_json_is_the_proto3_json_of_the_info(configured: Configured) -> None:
    result = configured.cli("server", "info", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["allowedRoots"] == [str(configured.media), str(configured.archive)]  # exact, escapes decoded
    assert data["limits"]["maxQueuedJobs"] == 17 and data["limits"]["maxWatchers"] == 23
    assert data["limits"]["jobTimeout"] == "123s" and data["limits"]["maxMessageBytes"] == "3000000"
    assert data["version"] == VERSION and data["replicaAddress"] == configured.server.address
    assert "\x1b" not in result.stdout  # the root's ESC is a JSON escape


def test_server_info_on_a_terminal_shows_roots_and_limits_escaped(configured: Configured) -> None:
    command = reelscan_cmd("server", "info", server=configured.server)
    with Tmux(command, width=160, env=cli_env({"REELSCAN_TOKEN": TOKEN})) as term:
        code, screen = term.wait_exit()
        title = term.title()
    assert code == 0, screen
    assert re.search(rf"^allowed root:\s+{re.escape(str(configured.media))}$", screen, re.MULTILINE), screen
    shown_archive = str(configured.archive).replace(HOSTILE_ROOT, HOSTILE_SHOWN)
    assert re.search(rf"^allowed root:\s+{re.escape(shown_archive)}$", screen, re.MULTILINE), screen
    assert "PWNED" not in title
    for label, value in (
        ("max concurrent jobs", "3"),
        ("max queued jobs", "17"),
        ("max watchers", "23"),
        ("job timeout", "2m 03s"),
        ("probe timeout", "7.50s"),
        ("probe workers", "1"),
        ("probe concurrency", "up to 3 files per worker"),
        ("job retention", "1h 16m"),
        ("lease TTL", "6.00s"),
        ("sharding", "scans of 777+ files to probe, in shards of about 55"),
        ("version", VERSION),
    ):
        assert re.search(rf"^{label}:\s+{re.escape(value)}\b", screen, re.MULTILINE), (label, screen)
    kind = "SQLite" if configured.backend == "sqlite" else "PostgreSQL postgresql://postgres@"
    assert re.search(rf"^database:\s+{re.escape(kind)}", screen, re.MULTILINE), screen
    assert re.search(r"^started:\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+ \(up [\d.]+s\)$", screen, re.MULTILINE), screen
    assert re.search(r"^security:\s+plaintext, bearer token required$", screen, re.MULTILINE), screen
    # The raw bytes: nothing from the root's name reached the terminal as an escape sequence.
    code, raw = run_in_pty(command, env=cli_env({"REELSCAN_TOKEN": TOKEN}), columns=120)
    assert code == 0, raw[-2000:]
    assert foreign_escapes(raw) == []


def test_plain_server_info_is_one_key_value_line_each(configured: Configured) -> None:
    result = configured.cli("server", "info")
    assert result.returncode == 0, result.stderr
    for line in (
        f"allowed root: {configured.media}",
        "max queued jobs: 17",
        "max message size: 3.0 MB (3000000 bytes)",
    ):
        key, value = line.split(": ", 1)
        assert re.search(rf"^{re.escape(key)}: +{re.escape(value)}$", result.stdout, re.MULTILINE), line
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f]", result.stdout)
    assert re.search(r"^started: +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d \(up ", result.stdout, re.MULTILINE)


def test_reelscan_version_prints_the_client_and_the_server_version(configured: Configured) -> None:
    result = configured.cli("version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"client: reelscan {VERSION}")
    assert lines[1].startswith(f"server: reelscan {VERSION}") and configured.server.address in lines[1]
    as_json = json.loads(configured.cli("version", "--json").stdout)
    assert as_json["client"]["version"] == VERSION and as_json["server"]["version"] == VERSION
    assert as_json["server"]["replicaId"] == configured.info().replica_id
    # Without the token the server is there but will not say: the client's version still comes, exit 0.
    refused = run_cli("version", server=configured.server)
    assert refused.returncode == 0
    assert refused.stdout.splitlines()[0].startswith(f"client: reelscan {VERSION}")
    assert "UNAUTHENTICATED" in refused.stdout.splitlines()[1]


def test_reelscan_version_without_a_server_still_prints_the_client_version() -> None:
    # Port 1 on loopback: nothing listens there, the connection is refused at once.
    result = run_cli("version", "--server", "127.0.0.1:1", server=None, timeout=30)
    assert result.returncode == 0, result.stderr
    client, server = result.stdout.splitlines()
    assert client.startswith(f"client: reelscan {VERSION}")
    assert server == "server: 127.0.0.1:1 not reachable"


@pytest.mark.parametrize(
    "command",
    [
        [str(BIN / "reelscan"), "serve", "--version"],
        [sys.executable, "-m", "reelscan.service", "--version"],
        [str(BIN / "reelscan"), "--version"],
    ],
    ids=["reelscan-serve", "python-m", "reelscan"],
)
def test_version_flags_print_the_package_version(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, env=cli_env(), check=False)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(rf"reelscan {re.escape(VERSION)}( \(revision \S+\))?\n", result.stdout), result.stdout


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_password_in_the_url_query_is_not_shown_either(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = new_database(backend, request, tmp_path)  # postgresql://postgres:PASSWORD@host:port/db
    userinfo, rest = url.split("://", 1)[1].split("@", 1)
    query_url = f"postgresql://postgres@{rest}?password={PASSWORD}&application_name=info-test"
    with ServerProcess(query_url) as server:
        with grpc.insecure_channel(server.address) as channel:
            info = server_service_pb2_grpc.ServerServiceStub(channel).GetServerInfo(pb.GetServerInfoRequest()).info
        assert info.database.location == f"postgresql://postgres@{rest}"
        assert PASSWORD.encode() not in info.SerializeToString()
        shown = run_cli("server", "info", "--json", server=server)
        assert shown.returncode == 0 and PASSWORD not in shown.stdout, shown.stderr
    assert userinfo == f"postgres:{PASSWORD}"  # the URL did carry it


# ---- the README's "Server info and health" commands, against a real server ----------------------------------

README = REPO / "README.md"
DOC_ADDRESS = "127.0.0.1:50051"


def section_blocks(title: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"\n### {title}\n")
    end = re.compile(r"^#{2,3} ", re.MULTILINE).search(text, start + 5)
    body = text[start : end.start() if end else len(text)]
    return re.findall(r"^```sh\n(.*?)^```", body, re.MULTILINE | re.DOTALL)


def test_the_readme_server_info_and_health_commands_work(tmp_path: Path, templates: Templates) -> None:
    blocks = section_blocks("Server info and health")
    assert blocks and any("ServerService/GetServerInfo" in b for b in blocks)
    media = tmp_path / "media"
    make_library(media, templates, 1)
    out = ""
    with ServerProcess(tmp_path / "reelscan.db", allow_roots=[media]) as server:
        for code in blocks:
            script = code.replace(DOC_ADDRESS, server.address).replace("/srv/media", shlex.quote(str(media)))
            result = subprocess.run(
                ["bash", "-c", "set -euo pipefail\n" + script],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=tmp_path,
                env=cli_env({"REELSCAN_SERVER": server.address}),
                check=False,
            )
            assert result.returncode == 0, f"{script}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
            assert "Traceback" not in result.stderr
            out += result.stdout
    assert str(media.resolve()) in out  # the info shows the allowed root
    assert '"status": "SERVING"' in out  # the health check of ServerService
    assert f"reelscan {VERSION}" in out  # `reelscan version` and `reelscan serve --version`
