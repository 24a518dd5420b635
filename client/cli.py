"""The `reelscan` command: `reelscan serve ...` runs the server; the other commands are clients of it."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        from reelscan.service.main import main as serve_main

        return serve_main(args[1:])
    print("usage: reelscan serve [--help]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
