"""`make cluster`: several reelscan replicas on one PostgreSQL, on this machine, for trying it out.

Starts a throwaway PostgreSQL cluster under var/pg/ (from the system's PostgreSQL server binaries: Debian's
`postgresql` package), creates the database `reelscan`, then three replicas on 127.0.0.1:50051-50053 sharing it.
Ctrl-C stops the replicas (SIGTERM: their jobs are handed back) and the database.

    python examples/cluster.py [--replicas N] [--base-port 50051 | --ports P1,P2,...] [--lease-ttl S]
                               [--allow-root DIR ...]

Try: `reelscan scan /some/dir --server 127.0.0.1:50052`, then `reelscan jobs list --server 127.0.0.1:50053`
(every replica serves every job; `replica_address` in `reelscan jobs get ID --json` says which one runs it), and
`kill -9` one of the replica pids printed below while it scans: another one takes the job over.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers.postgres import PostgresCluster, find_bin_dir  # noqa: E402  (after the path is set)

DATABASE = "reelscan"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--base-port", type=int, default=50051, help="replicas listen on BASE, BASE+1, ...")
    parser.add_argument("--ports", help="comma-separated ports, one per replica (instead of --base-port)")
    parser.add_argument("--pg-port", type=int, default=55432)
    parser.add_argument("--lease-ttl", type=float, default=5.0)
    parser.add_argument("--allow-root", action="append", default=[])
    parser.add_argument("--dir", type=Path, default=REPO / "var" / "pg")
    args = parser.parse_args()
    ports = [int(p) for p in args.ports.split(",")] if args.ports else []
    if ports:
        args.replicas = len(ports)
    else:
        ports = [args.base_port + i for i in range(args.replicas)]
    if find_bin_dir() is None:
        print("PostgreSQL server binaries (pg_ctl, initdb) not found: install them (Debian: apt install postgresql)")
        return 1

    signal.signal(signal.SIGTERM, _interrupt)  # stop everything on SIGTERM too, not just Ctrl-C
    cluster = PostgresCluster(args.dir.resolve(), port=args.pg_port)
    print(f"PostgreSQL: starting in {cluster.base} on 127.0.0.1:{cluster.port} ...", flush=True)
    cluster.start()
    replicas: list[subprocess.Popen[bytes]] = []
    try:
        if cluster.sql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'") != "1":
            cluster.create_database(DATABASE)
        url = cluster.url(DATABASE)
        for port in ports:
            listen = f"127.0.0.1:{port}"
            command = [
                sys.executable, "-m", "reelscan.service", "--listen", listen, "--db", url,
                "--lease-ttl", str(args.lease_ttl),
            ]  # fmt: skip
            for root in args.allow_root:
                command += ["--allow-root", root]
            replicas.append(subprocess.Popen(command))
        for i, (port, proc) in enumerate(zip(ports, replicas, strict=True)):
            listen = f"127.0.0.1:{port}"
            _wait_serving(listen, proc)
            print(f"replica {i + 1}: {listen} (pid {proc.pid})", flush=True)
        print(f"database: {cluster.url(DATABASE, password=None)} (password in tests/helpers/postgres.py)")
        print("Ctrl-C stops everything.", flush=True)
        while all(p.poll() is None for p in replicas):
            time.sleep(0.5)
        print("a replica exited; stopping the others", flush=True)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in replicas:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in replicas:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
        cluster.stop()
        print("stopped (the database stays in var/pg; delete it to start afresh)")


def _wait_serving(address: str, proc: subprocess.Popen[bytes], timeout_s: float = 60.0) -> None:
    """Returns once the replica's health service says SERVING, so what is printed can be used at once."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"replica {address} exited with {proc.returncode}")
            with contextlib.suppress(grpc.RpcError):
                if (
                    stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    == health_pb2.HealthCheckResponse.SERVING
                ):
                    return
            time.sleep(0.1)
    raise SystemExit(f"replica {address} did not become SERVING within {timeout_s:g}s")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
