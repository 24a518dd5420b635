"""What every client command shares: connection flags, exit codes, error reporting and output."""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from google.protobuf import message
from rich.console import Console
from rich.table import Table

from reelscan.client import format as fmt
from reelscan.client.async_client import AsyncReelscanClient
from reelscan.client.connection import DEFAULT_ADDRESS, DEFAULT_TIMEOUT_S, TlsOptions
from reelscan.client.errors import ReelscanError, UnavailableError
from reelscan.client.sync_client import ReelscanClient
from reelscan.v1 import job_pb2

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 3
EXIT_TIMED_OUT = 4
EXIT_INTERRUPTED = 130  # the shell's convention for "stopped by SIGINT"

_EXIT_OF_STATE = {
    job_pb2.JOB_STATE_SUCCEEDED: EXIT_OK,
    job_pb2.JOB_STATE_FAILED: EXIT_FAILED,
    job_pb2.JOB_STATE_CANCELLED: EXIT_CANCELLED,
    job_pb2.JOB_STATE_TIMED_OUT: EXIT_TIMED_OUT,
}


def exit_code_for(state: job_pb2.JobState) -> int:
    """0 succeeded, 1 failed, 3 cancelled, 4 timed out (and 1 for a job that is somehow not finished)."""
    return _EXIT_OF_STATE.get(state, EXIT_FAILED)


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("connection")
    env = os.environ
    group.add_argument(
        "--server",
        metavar="HOST:PORT",
        default=env.get("REELSCAN_SERVER") or DEFAULT_ADDRESS,
        help="server address [env REELSCAN_SERVER; default %(default)s]",
    )
    group.add_argument(
        "--token",
        default=env.get("REELSCAN_TOKEN") or None,
        help="bearer token sent as 'authorization: Bearer TOKEN' [env REELSCAN_TOKEN]",
    )
    group.add_argument("--tls", action="store_true", help="use TLS, trusting the system's CA certificates")
    group.add_argument(
        "--tls-ca",
        metavar="PATH",
        default=env.get("REELSCAN_TLS_CA") or None,
        help="PEM CA bundle to verify the server with; implies --tls [env REELSCAN_TLS_CA]",
    )
    group.add_argument("--tls-cert", metavar="PATH", help="PEM client certificate (mutual TLS); implies --tls")
    group.add_argument("--tls-key", metavar="PATH", help="PEM private key of --tls-cert")
    group.add_argument("--tls-server-name", metavar="NAME", help="expect this name in the server's certificate")
    group.add_argument(
        "--rpc-timeout",
        metavar="S",
        type=positive_float,
        default=DEFAULT_TIMEOUT_S,
        help="deadline of each call in seconds [default %(default)s]",
    )


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print JSON lines (proto3 JSON, as grpcurl does) instead of text"
    )


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text}")
    return value


def _client_kwargs(ns: argparse.Namespace) -> dict[str, Any]:
    tls: TlsOptions | None = None
    if ns.tls or ns.tls_ca or ns.tls_cert or ns.tls_key or ns.tls_server_name:
        if bool(ns.tls_cert) != bool(ns.tls_key):
            raise UsageError("--tls-cert and --tls-key go together")
        try:
            tls = TlsOptions.from_files(ns.tls_ca, ns.tls_cert, ns.tls_key, ns.tls_server_name)
        except OSError as error:
            raise UsageError(f"cannot read TLS file: {error}") from error
    return {"tls": tls, "token": ns.token, "timeout": ns.rpc_timeout}


def sync_client(ns: argparse.Namespace) -> ReelscanClient:
    return ReelscanClient(ns.server, **_client_kwargs(ns))


def async_client(ns: argparse.Namespace) -> AsyncReelscanClient:
    return AsyncReelscanClient(ns.server, **_client_kwargs(ns))


class UsageError(Exception):
    """A bad combination of flags that argparse cannot express; exits 2."""


def report_error(error: ReelscanError, server: str) -> int:
    """Prints a failed call for a person (stderr) and returns the exit code."""
    if isinstance(error, UnavailableError):
        print(
            f"reelscan: cannot reach the server at {server} ({error}).\n"
            "Is `reelscan serve` running there? Point to it with --server HOST:PORT or REELSCAN_SERVER.",
            file=sys.stderr,
        )
        return EXIT_FAILED
    print(f"reelscan: error: {error}", file=sys.stderr)
    for violation in error.field_violations:
        print(f"  {violation.field}: {violation.description}", file=sys.stderr)
    return EXIT_FAILED


class Output:
    """stdout for one command: rich tables on a terminal; tab-separated text or JSON lines otherwise."""

    def __init__(self, stream: TextIO | None = None, *, json_mode: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.json_mode = json_mode
        self.tty = self.stream.isatty()
        self.console = Console(file=self.stream, highlight=False, soft_wrap=True) if self.tty else None

    def line(self, text: str = "") -> None:
        if self.console is not None:
            self.console.print(text, markup=False)
        else:
            print(text, file=self.stream, flush=True)

    def json(self, obj: Mapping[str, Any] | message.Message) -> None:
        print(fmt.json_line(obj), file=self.stream, flush=True)

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[str]]) -> int:
        """Prints rows under headers; returns how many rows there were."""
        count = 0
        rows = iter(rows)
        # Fetch the first row before printing anything, so a failed call prints an error and no stray header.
        first = next(rows, None)
        rows = itertools.chain([first] if first is not None else [], rows)
        if self.console is None:
            print("\t".join(headers), file=self.stream)
            for row in rows:
                print("\t".join(cell.replace("\t", " ") for cell in row), file=self.stream)
                count += 1
            self.stream.flush()
            return count
        table = Table(*headers, box=None, header_style="bold", pad_edge=False)
        for row in rows:
            table.add_row(*row)
            count += 1
        self.console.print(table)
        return count

    def fields(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Key: value lines, aligned."""
        pairs = list(pairs)
        width = max((len(k) for k, _ in pairs), default=0)
        for key, value in pairs:
            self.line(f"{key + ':':<{width + 1}} {value}")
