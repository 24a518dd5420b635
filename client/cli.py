"""The `reelscan` command: `reelscan serve ...` runs the server; the other commands are clients of it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from reelscan.client.commands import jobs, scan, server, videos
from reelscan.client.commands.common import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    UsageError,
    err,
    report_error,
    resolve_settings,
)
from reelscan.client.errors import ReelscanError
from reelscan.service.version import VersionAction


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="reelscan",
        description="Scan directories of video files into a media library, and query it. `reelscan serve` runs "
        "the server; every other command talks to one (--server HOST:PORT or REELSCAN_SERVER, default "
        "127.0.0.1:50051).",
    )
    parser.add_argument("--version", action=VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    # Only listed here for --help: main() hands `serve` to the server's own parser before this one runs.
    commands.add_parser("serve", help="run the server (see `reelscan serve --help`)", add_help=False)
    scan.add_parser(commands)
    jobs.add_parser(commands)
    videos.add_parser(commands)
    server.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        from reelscan.service.main import main as serve_main

        return serve_main(args[1:])
    parser = build_parser()
    ns = parser.parse_args(args)  # exits 2 on a usage error
    handler: Callable[[argparse.Namespace], int] = ns.handler
    try:
        resolve_settings(ns)
        return handler(ns)
    except UsageError as error:
        lines = str(error).splitlines() or [""]
        err(f"reelscan: error: {lines[0]}")
        for line in lines[1:]:
            err(line)
        err(f"(see `reelscan {_command_words(ns)} --help`)")
        return EXIT_USAGE
    except ReelscanError as error:
        return report_error(error, ns.server)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `reelscan videos list | head`: the reader left; not an error worth a traceback.
        sys.stderr.close()
        return 0


def _command_words(ns: argparse.Namespace) -> str:
    words = [ns.command]
    for attr in ("jobs_command", "videos_command", "server_command"):
        if getattr(ns, attr, None):
            words.append(getattr(ns, attr))
    return " ".join(words)


if __name__ == "__main__":
    sys.exit(main())
