"""What every client command shares: connection flags, exit codes, error reporting and output."""

from __future__ import annotations

import argparse
import itertools
import os
import re
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, TextIO

from google.protobuf import message
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from reelscan.client import format as fmt
from reelscan.client.async_client import AsyncReelscanClient
from reelscan.client.connection import (
    DEFAULT_ADDRESS,
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    TlsOptions,
    normalize_address,
)
from reelscan.client.errors import ReelscanError, UnavailableError
from reelscan.client.sync_client import ReelscanClient
from reelscan.limits import MAX_PAGE_SIZE
from reelscan.v1 import job_pb2

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 3
EXIT_TIMED_OUT = 4
EXIT_INTERRUPTED = 130  # Ctrl-C; the shell's convention for "stopped by SIGINT"

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
    # Defaults are None: resolve_settings fills them from the environment afterwards, remembering where each
    # value came from so that an error names the flag or the variable the user actually set.
    group = parser.add_argument_group("connection")
    group.add_argument(
        "--server",
        metavar="HOST[:PORT]",
        help=f"server address; port {DEFAULT_ADDRESS.rpartition(':')[2]} if omitted [env REELSCAN_SERVER; "
        f"default {DEFAULT_ADDRESS}]",
    )
    group.add_argument("--token", help="bearer token sent as 'authorization: Bearer TOKEN' [env REELSCAN_TOKEN]")
    group.add_argument("--tls", action="store_true", help="use TLS, trusting the system's CA certificates")
    group.add_argument(
        "--tls-ca", metavar="PATH", help="PEM CA bundle to verify the server with; implies --tls [env REELSCAN_TLS_CA]"
    )
    group.add_argument("--tls-cert", metavar="PATH", help="PEM client certificate (mutual TLS); implies --tls")
    group.add_argument("--tls-key", metavar="PATH", help="PEM private key of --tls-cert")
    group.add_argument("--tls-server-name", metavar="NAME", help="expect this name in the server's certificate")
    group.add_argument(
        "--rpc-timeout",
        metavar="S",
        help=f"deadline of each call in seconds [env REELSCAN_RPC_TIMEOUT; default {DEFAULT_TIMEOUT_S:g}]",
    )
    group.add_argument(
        "--connect-timeout",
        metavar="S",
        help="give up when nothing answers at the address within S seconds [env REELSCAN_CONNECT_TIMEOUT; "
        f"default {DEFAULT_CONNECT_TIMEOUT_S:g}]",
    )


def _setting(ns: argparse.Namespace, dest: str, env: str, default: str | None) -> tuple[str | None, str]:
    """(value, where it came from: "--flag" or "REELSCAN_X") for one connection setting."""
    flag = "--" + dest.replace("_", "-")
    value = getattr(ns, dest, None)
    if value is not None:
        return value, flag
    from_env = os.environ.get(env)
    if from_env:
        return from_env, env
    return default, flag


def _seconds(value: str | None, origin: str) -> float:
    try:
        seconds = float(value or "")
    except ValueError:
        raise UsageError(f"{origin}={value!r}: not a number of seconds") from None
    if not seconds > 0:
        raise UsageError(f"{origin}={value!r}: must be positive")
    return seconds


def resolve_settings(ns: argparse.Namespace) -> None:
    """Fills the connection settings from flags, then REELSCAN_* variables, then defaults; checks them. A bad
    value is a UsageError naming the flag or the variable it came from (`REELSCAN_SERVER='h:x': ...`)."""
    server, origin = _setting(ns, "server", "REELSCAN_SERVER", DEFAULT_ADDRESS)
    try:
        ns.server = normalize_address(server or "")
    except ValueError as error:
        raise UsageError(f"{origin}={server!r}: {error}") from None
    ns.token, _ = _setting(ns, "token", "REELSCAN_TOKEN", None)
    ns.tls_ca, ns.tls_ca_origin = _setting(ns, "tls_ca", "REELSCAN_TLS_CA", None)
    ns.rpc_timeout = _seconds(*_setting(ns, "rpc_timeout", "REELSCAN_RPC_TIMEOUT", str(DEFAULT_TIMEOUT_S)))
    ns.connect_timeout = _seconds(
        *_setting(ns, "connect_timeout", "REELSCAN_CONNECT_TIMEOUT", str(DEFAULT_CONNECT_TIMEOUT_S))
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
        for path, origin in ((ns.tls_ca, ns.tls_ca_origin), (ns.tls_cert, "--tls-cert"), (ns.tls_key, "--tls-key")):
            if path is not None and not os.access(path, os.R_OK):
                reason = "no such file" if not os.path.exists(path) else "not readable"
                raise UsageError(f"{origin}={path!r}: cannot read the TLS file ({reason})")
        try:
            tls = TlsOptions.from_files(ns.tls_ca, ns.tls_cert, ns.tls_key, ns.tls_server_name)
        except OSError as error:
            raise UsageError(f"cannot read TLS file: {error}") from error
    return {"tls": tls, "token": ns.token, "timeout": ns.rpc_timeout}


def sync_client(ns: argparse.Namespace, *, connect: bool = True) -> ReelscanClient:
    """A client for one-shot commands. With `connect`, it connects first and fails within --connect-timeout
    (UnavailableError) when nothing answers, instead of waiting for the first call's deadline."""
    client = ReelscanClient(ns.server, **_client_kwargs(ns))
    if connect:
        try:
            client.wait_for_server(ns.connect_timeout)
        except BaseException:
            client.close()
            raise
    return client


def async_client(ns: argparse.Namespace) -> AsyncReelscanClient:
    """An asyncio client; call `await client.wait_for_server(ns.connect_timeout)` before the first call."""
    return AsyncReelscanClient(ns.server, **_client_kwargs(ns))


class UsageError(Exception):
    """A bad argument, flag or variable that argparse cannot check; exits 2. The message may have several lines."""


def err(text: str = "") -> None:
    """One line for the person at the terminal, on stderr, made safe like everything printed (printable)."""
    print(fmt.printable(text), file=sys.stderr, flush=True)


def report_error(error: ReelscanError, server: str) -> int:
    """Prints a failed call for a person (stderr) and returns the exit code."""
    if isinstance(error, UnavailableError):
        err(f"reelscan: cannot reach the server at {server} ({error}).")
        err("Is `reelscan serve` running there? Point to it with --server HOST[:PORT] or REELSCAN_SERVER.")
        return EXIT_FAILED
    err(f"reelscan: error: {error}")
    for violation in error.field_violations:
        err(f"  {violation.field}: {violation.description}")
    return EXIT_FAILED


# Job ids are 32 lower-case hex digits (a UUID), a shard's with its number after a dash (`<parent>-003`); a shorter
# piece of one is looked up among the server's jobs.
FULL_JOB_ID = re.compile(r"[0-9a-f]{32}(-[0-9]{3,})?")
MIN_JOB_PREFIX = 6


def match_job_prefix(text: str, jobs: Iterable[job_pb2.Job]) -> str:
    """The id of the one job whose id starts with `text`; `text` itself when none does (the server then says
    NOT_FOUND, or finds an id of another form). UsageError for a prefix that is too short or ambiguous."""
    if len(text) < MIN_JOB_PREFIX:
        raise UsageError(
            f"job id {text!r} is too short: give at least {MIN_JOB_PREFIX} characters of it (`reelscan jobs list` "
            "shows the ids)"
        )
    prefix = text.lower() if re.fullmatch(r"[0-9a-fA-F]+", text) else text
    matches = [job for job in jobs if job.id.startswith(prefix)]
    if not matches:
        return text
    if len(matches) == 1:
        return matches[0].id
    lines = [f"job id prefix {text!r} matches {len(matches)} jobs; give more characters of one of them:"]
    for job in matches[:20]:
        where = f" {job.scan.path}" if job.HasField("scan") else ""
        lines.append(f"  {job.id}  {fmt.state_label(job.state)}{where}")
    if len(matches) > 20:
        lines.append(f"  ... and {len(matches) - 20} more")
    raise UsageError("\n".join(lines))


def resolve_job_id(client: ReelscanClient, text: str) -> str:
    """A full job id for `text`: a full id as it is (no lookup), else the one job whose id starts with it."""
    text = text.strip()
    if FULL_JOB_ID.fullmatch(text):
        return text
    if FULL_JOB_ID.fullmatch(text.lower()):
        return text.lower()
    if len(text) < MIN_JOB_PREFIX:
        return match_job_prefix(text, ())
    return match_job_prefix(text, client.list_jobs(page_size=MAX_PAGE_SIZE))


def make_console(stream: TextIO) -> Console:
    """A rich console that never reads markup, emoji codes or highlights in what it prints."""
    return Console(file=stream, highlight=False, markup=False, emoji=False, soft_wrap=True)


class Output:
    """stdout for one command: rich tables on a terminal; tab-separated text or JSON lines otherwise.

    Everything it prints goes through fmt.printable (or fmt.json_line), so data never controls the terminal.
    """

    def __init__(self, stream: TextIO | None = None, *, json_mode: bool = False) -> None:
        self.stream = stream or sys.stdout
        self.json_mode = json_mode
        self.tty = self.stream.isatty()
        self.console = make_console(self.stream) if self.tty else None

    def line(self, text: str = "", *, style: str = "") -> None:
        """One line of text, made printable; `style` (rich's, e.g. "bold") applies on a terminal only."""
        safe = fmt.printable(text)
        if self.console is not None:
            self.console.print(Text(safe, style=style))
        else:
            print(safe, file=self.stream, flush=True)

    def row(self, cells: Sequence[str]) -> None:
        """One tab-separated line of cells, each made printable (tabs and newlines in data are escaped)."""
        print("\t".join(fmt.printable(cell) for cell in cells), file=self.stream, flush=True)

    def json(self, obj: Mapping[str, Any] | message.Message) -> None:
        print(fmt.json_line(obj), file=self.stream, flush=True)

    def table(
        self,
        headers: Sequence[str],
        rows: Iterable[Sequence[str]],
        *,
        fold: Collection[str] = (),
        optional: Sequence[str] = (),
        empty: str | None = None,
    ) -> int:
        """Prints rows under headers; returns how many rows there were.

        On a terminal, columns are never cut: those named in `fold` (paths, reasons) wrap when space is short,
        every other column (ids, states, times) is shown whole; when even that does not fit, the `optional`
        columns are left out, the first named first; with no rows, `empty` (when given) is printed instead of a
        bare header. Elsewhere: tab-separated, every column (and just the header when there are no rows).
        """
        count = 0
        rows = iter(rows)
        # Fetch the first row before printing anything, so a failed call prints an error and no stray header.
        first = next(rows, None)
        rows = itertools.chain([first] if first is not None else [], rows)
        if self.console is None:
            # printable escapes tabs and newlines too, so each row stays one line of tab-separated cells.
            print("\t".join(headers), file=self.stream)
            for row in rows:
                print("\t".join(fmt.printable(cell) for cell in row), file=self.stream)
                count += 1
            self.stream.flush()
            return count
        cells = [[fmt.printable(cell) for cell in row] for row in rows]
        if not cells and empty is not None:
            self.line(empty)
            return 0
        table, needed = render_table(headers, cells, self.console.width, fold=fold, optional=optional)
        # Wider than the terminal only when even the whole columns alone do not fit: the terminal then wraps the
        # lines, but no id is ever cut.
        self.console.print(table, width=max(self.console.width, needed))
        return len(cells)

    def fields(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Key: value lines, aligned."""
        pairs = list(pairs)
        width = max((len(k) for k, _ in pairs), default=0)
        for key, value in pairs:
            self.line(f"{key + ':':<{width + 1}} {value}")


def render_table(
    headers: Sequence[str],
    cells: Sequence[Sequence[str]],
    width: int,
    *,
    fold: Collection[str] = (),
    optional: Sequence[str] = (),
) -> tuple[Table, int]:
    """A rich table of already printable cells for `width` columns, and the width it needs (see Output.table)."""
    keep, needed = fitting_columns(headers, cells, width, fold=fold, optional=optional)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for i in keep:
        if headers[i] in fold:
            table.add_column(headers[i], overflow="fold", min_width=min(FOLD_MIN_WIDTH, len(headers[i])))
        else:
            table.add_column(headers[i], no_wrap=True, overflow="ignore")
    for row in cells:
        table.add_row(*(Text(row[i]) for i in keep))
    return table, needed


# The narrowest a folding column (a path) gets before optional columns are left out to make room.
FOLD_MIN_WIDTH = 16


def fitting_columns(
    headers: Sequence[str], rows: Sequence[Sequence[str]], width: int, *, fold: Collection[str], optional: Sequence[str]
) -> tuple[list[int], int]:
    """(indexes of the columns to show in `width` cells, the width they need): all columns, unless the whole
    columns plus FOLD_MIN_WIDTH per folding column (and 2 cells between columns) do not fit; then optional ones
    go, in the order given."""
    natural = [max([cell_len(h)] + [cell_len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    keep = list(range(len(headers)))

    def needed() -> int:
        widths = [min(natural[i], FOLD_MIN_WIDTH) if headers[i] in fold else natural[i] for i in keep]
        return sum(widths) + 2 * (len(keep) - 1)

    for name in optional:
        if needed() <= width:
            break
        if name in headers:
            keep.remove(headers.index(name))
    return keep, needed()
