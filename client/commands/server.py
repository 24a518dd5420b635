"""`reelscan server info` (what the server is and how it is configured) and `reelscan version`."""

from __future__ import annotations

import argparse
from typing import Any

from reelscan.client import format as fmt
from reelscan.client.commands.common import (
    EXIT_OK,
    Output,
    add_connection_arguments,
    add_json_argument,
    sync_client,
)
from reelscan.client.errors import ReelscanError, UnavailableError
from reelscan.service.version import build_revision, package_version
from reelscan.v1 import server_service_pb2


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    server = subparsers.add_parser("server", help="what the server is and how it is configured")
    commands = server.add_subparsers(dest="server_command", metavar="COMMAND", required=True)
    p = commands.add_parser(
        "info",
        help="show the server's version, prober, allowed roots, limits, database, replica and uptime",
        description="Asks the server (ServerService.GetServerInfo) what it runs and with which settings. Secrets "
        "(the auth token, the database password) are never part of the answer.",
    )
    _common(p, run_info)

    p = subparsers.add_parser(
        "version",
        help="show this client's version, and the server's when it can be reached",
        description="Prints the client's version, then asks the server for its own; a server that cannot be "
        "reached is reported, and the command still exits 0 (the client's version is its answer).",
    )
    _common(p, run_version)


def _common(parser: argparse.ArgumentParser, handler: object) -> None:
    add_json_argument(parser)
    add_connection_arguments(parser)
    parser.set_defaults(handler=handler)


def _seconds(duration: Any) -> float:
    return float(duration.ToNanoseconds()) / 1e9


def _with_revision(version: str, revision: str) -> str:
    return version + (f" (revision {revision})" if revision and revision != "unknown" else "")


def database_label(db: server_service_pb2.DatabaseInfo) -> str:
    if db.kind == server_service_pb2.DATABASE_KIND_SQLITE:
        return f"SQLite {db.location}"
    if db.kind == server_service_pb2.DATABASE_KIND_POSTGRESQL:
        return f"PostgreSQL {db.location}"
    return db.location or "-"


def prober_label(prober: server_service_pb2.ProberInfo) -> str:
    versions = []
    if prober.pyav_version:
        versions.append(f"PyAV {prober.pyav_version}")
    if prober.ffmpeg_version:
        versions.append(f"FFmpeg {prober.ffmpeg_version}")
    if prober.name == "ffprobe":
        versions.append(prober.ffprobe_version or "ffprobe not found on the server's PATH")
    shown = f"{prober.name}, {fmt.plural(prober.workers, 'worker')}"
    return shown + (f" ({', '.join(versions)})" if versions else "")


def describe(info: server_service_pb2.ServerInfo, *, tty: bool = True) -> list[tuple[str, str]]:
    """The info as `key: value` lines: identity first, then the configuration, then the limits."""
    limits = info.limits
    security = [
        "TLS" if info.tls else "plaintext",
        *(["client certificates required"] if info.client_certificates_required else []),
        "bearer token required" if info.auth_required else "no auth",
    ]
    pairs = [
        ("version", _with_revision(info.version, info.build_revision)),
        ("replica", f"{info.replica_id} at {info.replica_address}"),
        ("started", f"{fmt.local_time(info.start_time, tty=tty)} (up {fmt.short_duration(_seconds(info.uptime))})"),
        ("database", database_label(info.database)),
        ("prober", prober_label(info.prober)),
    ]
    if info.allowed_roots:
        pairs += [("allowed root", root) for root in info.allowed_roots]
    else:
        pairs.append(("allowed root", "any absolute path (no --allow-root; loopback only)"))
    pairs += [
        ("extensions", ", ".join(info.extensions) or "-"),
        ("security", ", ".join(security)),
        ("max concurrent jobs", str(limits.max_concurrent_jobs)),
        ("max queued jobs", str(limits.max_queued_jobs)),
        ("max watchers", str(limits.max_watchers)),
        ("job timeout", fmt.short_duration(_seconds(limits.job_timeout))),
        ("probe timeout", fmt.short_duration(_seconds(limits.probe_timeout))),
        ("probe workers", str(limits.probe_workers)),
        ("probe concurrency", f"up to {limits.probe_concurrency} files per worker"),
        ("job retention", fmt.short_duration(_seconds(limits.job_retention))),
        ("max message size", f"{fmt.size(limits.max_message_bytes)} ({limits.max_message_bytes} bytes)"),
        ("lease TTL", fmt.short_duration(_seconds(limits.lease_ttl))),
        ("grace period", fmt.short_duration(_seconds(limits.grace_period))),
        ("sharding", f"scans of {limits.shard_threshold}+ files to probe, in shards of about {limits.shard_size}"),
        ("runtime", f"Python {info.python_version}, grpcio {info.grpc_version}"),
    ]
    return pairs


def run_info(ns: argparse.Namespace) -> int:
    out = Output(json_mode=ns.json)
    with sync_client(ns) as client:
        info = client.server_info()
    if ns.json:
        out.json(info)
    else:
        out.fields(describe(info, tty=out.tty))
    return EXIT_OK


def run_version(ns: argparse.Namespace) -> int:
    out = Output(json_mode=ns.json)
    client_version, client_revision = package_version(), build_revision()
    info: server_service_pb2.ServerInfo | None = None
    problem = ""
    try:
        with sync_client(ns) as client:
            info = client.server_info()
    except UnavailableError:
        problem = "not reachable"
    except ReelscanError as error:  # e.g. UNAUTHENTICATED: the server is there, but will not say
        problem = str(error)
    if ns.json:
        server: dict[str, Any] = {"address": ns.server}
        if info is not None:
            server.update(version=info.version, buildRevision=info.build_revision, replicaId=info.replica_id)
        else:
            server["error"] = problem
        out.json({"client": {"version": client_version, "buildRevision": client_revision}, "server": server})
        return EXIT_OK
    out.line(f"client: reelscan {_with_revision(client_version, client_revision)}")
    if info is not None:
        out.line(f"server: reelscan {_with_revision(info.version, info.build_revision)} at {ns.server}")
    else:
        out.line(f"server: {ns.server} {problem}")
    return EXIT_OK
