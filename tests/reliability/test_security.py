"""TLS, mutual TLS and bearer-token auth, each with a real handshake and with wrong credentials."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from reelscan.v1 import job_service_pb2, job_service_pb2_grpc
from tests.helpers.certs import CertificateAuthority
from tests.helpers.server import ServerProcess

TOKEN = "s3cret-token-for-tests"


def list_jobs(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> job_service_pb2.ListJobsResponse:
    stub = job_service_pb2_grpc.JobServiceStub(channel)
    return stub.ListJobs(job_service_pb2.ListJobsRequest(), timeout=10, metadata=metadata)


def health_check(channel: grpc.Channel) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=10).status)


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return CertificateAuthority(tmp_path)


class TlsServer(ServerProcess):
    """ServerProcess whose readiness check speaks TLS (the plaintext probe of the base class cannot)."""

    def __init__(self, *args: object, root_cert: bytes, client_pair: tuple[bytes, bytes] | None = None, **kw: object):
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.root_cert = root_cert
        self.client_pair = client_pair

    def wait_healthy(self, timeout: float = 10.0) -> None:
        with grpc.secure_channel(self.address, self.credentials()) as channel:
            health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=max(timeout, 1.0), wait_for_ready=True
            )

    def credentials(self) -> grpc.ChannelCredentials:
        key, cert = self.client_pair or (None, None)
        return grpc.ssl_channel_credentials(self.root_cert, private_key=key, certificate_chain=cert)


@pytest.fixture
def tls_server(tmp_path: Path, ca: CertificateAuthority) -> Iterator[TlsServer]:
    server_pair = ca.issue("server", server=True)
    args = ["--tls-cert", str(server_pair.cert), "--tls-key", str(server_pair.key)]
    with TlsServer(tmp_path / "db.sqlite", extra_args=args, root_cert=ca.pair.cert_bytes()) as proc:
        yield proc


def test_tls_handshake_and_rpc(tls_server: TlsServer) -> None:
    with grpc.secure_channel(tls_server.address, tls_server.credentials()) as channel:
        assert list_jobs(channel).jobs == []
    assert "(TLS)" in tls_server.log


def test_tls_rejects_plaintext_and_untrusted_ca(tls_server: TlsServer, tmp_path: Path) -> None:
    with grpc.insecure_channel(tls_server.address) as channel, pytest.raises(grpc.RpcError) as info:
        list_jobs(channel)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE
    other_ca = (
        CertificateAuthority(tmp_path / "other", name="other CA") if (tmp_path / "other").mkdir() is None else None
    )
    assert other_ca is not None
    creds = grpc.ssl_channel_credentials(other_ca.pair.cert_bytes())
    with grpc.secure_channel(tls_server.address, creds) as channel, pytest.raises(grpc.RpcError) as info:
        list_jobs(channel)
    assert info.value.code() is grpc.StatusCode.UNAVAILABLE


def test_mtls_requires_a_client_certificate_signed_by_the_client_ca(tmp_path: Path, ca: CertificateAuthority) -> None:
    server_pair = ca.issue("server", server=True)
    client_pair = ca.issue("client", server=False)
    args = [
        "--tls-cert",
        str(server_pair.cert),
        "--tls-key",
        str(server_pair.key),
        "--tls-client-ca",
        str(ca.pair.cert),
    ]
    good = (client_pair.key_bytes(), client_pair.cert_bytes())
    with TlsServer(tmp_path / "db.sqlite", extra_args=args, root_cert=ca.pair.cert_bytes(), client_pair=good) as proc:
        with grpc.secure_channel(proc.address, proc.credentials()) as channel:
            assert list_jobs(channel).jobs == []
        no_client_cert = grpc.ssl_channel_credentials(ca.pair.cert_bytes())
        with grpc.secure_channel(proc.address, no_client_cert) as channel, pytest.raises(grpc.RpcError) as info:
            list_jobs(channel)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        (tmp_path / "rogue").mkdir()
        rogue_ca = CertificateAuthority(tmp_path / "rogue", name="rogue CA")
        rogue = rogue_ca.issue("rogue-client", server=False)
        rogue_creds = grpc.ssl_channel_credentials(
            ca.pair.cert_bytes(), private_key=rogue.key_bytes(), certificate_chain=rogue.cert_bytes()
        )
        with grpc.secure_channel(proc.address, rogue_creds) as channel, pytest.raises(grpc.RpcError) as info:
            list_jobs(channel)
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE


@pytest.fixture
def token_server(tmp_path: Path) -> Iterator[ServerProcess]:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    with ServerProcess(tmp_path / "db.sqlite", extra_args=["--auth-token-file", str(token_file)]) as proc:
        yield proc


def test_bearer_token_required_but_health_stays_open(token_server: ServerProcess) -> None:
    with grpc.insecure_channel(token_server.address) as channel:
        assert health_check(channel) == health_pb2.HealthCheckResponse.SERVING
        assert list_jobs(channel, (("authorization", f"Bearer {TOKEN}"),)).jobs == []
        for metadata, message in (
            ((), "missing authorization"),
            ((("authorization", "Bearer wrong"),), "invalid bearer token"),
            ((("authorization", TOKEN),), "invalid bearer token"),
        ):
            with pytest.raises(grpc.RpcError) as info:
                list_jobs(channel, metadata)
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert message in (info.value.details() or "")


def test_bearer_token_guards_streams_too(token_server: ServerProcess) -> None:
    with grpc.insecure_channel(token_server.address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.WatchJob(job_service_pb2.WatchJobRequest(job_id="x"), timeout=10))
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as info:
            list(
                stub.WatchJob(
                    job_service_pb2.WatchJobRequest(job_id="x"),
                    timeout=10,
                    metadata=(("authorization", f"Bearer {TOKEN}"),),
                )
            )
        assert info.value.code() is grpc.StatusCode.NOT_FOUND


def test_empty_token_file_refused_at_start_up(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("\n")
    proc = ServerProcess(tmp_path / "db.sqlite", extra_args=["--auth-token-file", str(token_file)])
    with pytest.raises(RuntimeError, match="is empty"):
        proc.start()


def test_oversized_request_gets_resource_exhausted(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "db.sqlite", extra_args=["--max-message-bytes", "65536"])
    with server as proc, grpc.insecure_channel(proc.address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetJob(job_service_pb2.GetJobRequest(job_id="x" * 100_000), timeout=10)
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        # The server is unharmed.
        assert health_check(channel) == health_pb2.HealthCheckResponse.SERVING
