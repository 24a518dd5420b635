"""Generates sync_client.py (the blocking ReelscanClient) from async_client.py, as unasync does for httpcore.

    python -m reelscan.client.gen_sync          # rewrite client/sync_client.py
    python -m reelscan.client.gen_sync --check  # exit 1 if the committed file is not what this makes

The rewrite is token-level: `async def`/`async for`/`async with` lose `async`, `await ` goes, async names become
their blocking twins (RENAMES), and two line directives handle what has no twin: a line ending in
`# unasync: async-only` is dropped together with the block it opens, and a line ending in `# unasync: sync=CODE`
becomes CODE (same indentation). The result is then sorted and formatted by ruff, as every file of the project is.
tests/client/test_sync_generated.py runs the check.
"""

from __future__ import annotations

import argparse
import difflib
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "async_client.py"
TARGET = HERE / "sync_client.py"

HEADER = '''"""The blocking client, for scripts and threads: the same methods and semantics as AsyncReelscanClient.

GENERATED from async_client.py by `python -m reelscan.client.gen_sync`: edit async_client.py, then regenerate.
"""
'''

# Phrases of docstrings and comments that have no token-level twin; each must occur in the source.
PHRASES: tuple[tuple[str, str], ...] = (
    ('"""Talks to a reelscan server from asyncio code.', '"""Talks to a reelscan server, blocking.'),
    (", inside the running event loop", ""),
    ("(calling `on_update`, sync or async, with each JobUpdate)", "(calling `on_update` with each JobUpdate)"),
    (
        "# Made on first use: grpc.aio ties a channel to the event loop it was made in, so an asyncio client\n"
        "        # constructed before asyncio.run() still works.",
        "# Made on first use, like the asyncio client's (which must make it inside the running event loop).",
    ),
    ("(and closing the generator, `aclose()`)", "(or calling the generator's `close()`)"),
)

# Whole-word renames, applied in order after the phrases.
RENAMES: tuple[tuple[str, str], ...] = (
    (r"AsyncGenerator\[(.+?), None\]", r"Generator[\1, None, None]"),
    (r"\bAsyncReelscanClient\b", "ReelscanClient"),
    (r"\bAsyncGenerator\b", "Generator"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAwaitable\[None\]", "None"),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\baclose\b", "close"),
    (r"\bgrpc\.aio\.Channel\b", "grpc.Channel"),
    (r"\baio_channel\b", "sync_channel"),
    (r"\baio_wait_ready\b", "sync_wait_ready"),
    (r"\basyncio\.sleep\b", "time.sleep"),
    (r"\basync (def|for|with)\b", r"\1"),
    (r"\bawait ", ""),
    (r"  # noqa: ASYNC\d+[^\n]*", ""),
)

ASYNC_ONLY = re.compile(r"\s*# unasync: async-only$")
SYNC_CODE = re.compile(r"^(\s*).*?\s*# unasync: sync=(.+)$")
LEFTOVER_NAMES = frozenset({"async", "await", "asyncio", "aio", "inspect"})


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _directives(text: str) -> str:
    out: list[str] = []
    skip_deeper_than: int | None = None
    for line in text.splitlines():
        if skip_deeper_than is not None:
            if not line.strip() or _indent(line) > skip_deeper_than:
                continue
            skip_deeper_than = None
        if ASYNC_ONLY.search(line):
            # A block opener (`if ...:`) goes with its body; a plain line goes alone.
            opener = ASYNC_ONLY.sub("", line).rstrip().endswith(":")
            skip_deeper_than = _indent(line) if opener else None
            continue
        match = SYNC_CODE.match(line)
        out.append(match.group(1) + match.group(2) if match else line)
    return "\n".join(out) + "\n"


def _strip_module_docstring(text: str) -> str:
    match = re.match(r'""".*?"""\n', text, re.DOTALL)
    if match is None:
        raise ValueError("async_client.py must start with a module docstring")
    return text[match.end() :]


def transform(source: str, *, strict: bool = True) -> str:
    """The unformatted sync module for an async module's text (`strict`: every PHRASES entry must occur)."""
    text = _strip_module_docstring(source)
    for old, new in PHRASES:
        if strict and old not in text:
            raise ValueError(f"phrase not in async_client.py any more (update gen_sync.PHRASES): {old!r}")
        text = text.replace(old, new)
    text = _directives(text)
    for pattern, replacement in RENAMES:
        text = re.sub(pattern, replacement, text)
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if (token.type == tokenize.NAME and token.string in LEFTOVER_NAMES) or "unasync:" in token.string:
            raise ValueError(f"line {token.start[0]} of the output still has {token.string!r}: {token.line.strip()}")
    return HEADER + text


def _ruff(args: list[str], text: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--stdin-filename", str(TARGET), "-"],
        input=text,
        capture_output=True,
        text=True,
        cwd=HERE.parent,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"ruff {' '.join(args)} failed on the generated code:\n{result.stderr}{result.stdout}")
    return result.stdout


def generate(source: str | None = None) -> str:
    """The sync client's text, sorted and formatted, for async_client.py's (or `source`)."""
    text = transform(SOURCE.read_text() if source is None else source)
    # F401: imports only the async side uses (Awaitable, ...); I001: their order after the renames.
    text = _ruff(["check", "--fix", "--select", "I001,F401", "--exit-zero", "--quiet"], text)
    return _ruff(["format", "--quiet"], text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reelscan.client.gen_sync", description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if sync_client.py is stale")
    ns = parser.parse_args(argv)
    generated = generate()
    current = TARGET.read_text() if TARGET.exists() else ""
    if ns.check:
        if generated == current:
            return 0
        diff = difflib.unified_diff(current.splitlines(True), generated.splitlines(True), "committed", "generated")
        sys.stderr.write("".join(diff))
        sys.stderr.write("client/sync_client.py is stale: run `python -m reelscan.client.gen_sync` and commit\n")
        return 1
    if generated != current:
        TARGET.write_text(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main())
