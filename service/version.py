"""What this copy of reelscan is: its package version and the source revision it was built from.

The revision comes from git at run time, once per process: when the code runs from a git checkout (a development
or editable install, `make run`, CI), `git describe --always --dirty` of that checkout; otherwise "unknown". Why
not write it at build time: a wheel or container image is built from a package version, which the version string
already names, and a revision written into the source tree goes stale in every checkout that does not rebuild it
(an editable install never does). At run time it is always the revision of the code that was loaded, dirty marker
included. The checkout must be reelscan's own (its top level holds this package's pyproject.toml), so an install
that happens to sit inside some other git repository does not report that repository's revision.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE = "reelscan"
UNKNOWN = "unknown"
GIT_TIMEOUT_S = 5.0
# service/ is reelscan.service; its parent is the project root in a checkout (site-packages when installed).
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def package_version() -> str:
    """The installed reelscan distribution's version, or "unknown" when it is not installed (a bare checkout)."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return UNKNOWN


def _is_our_checkout(root: Path) -> bool:
    pyproject = root / "pyproject.toml"
    if not (root / ".git").exists() or not pyproject.is_file():
        return False
    try:
        return f'name = "{PACKAGE}"' in pyproject.read_text(encoding="utf-8")
    except OSError:
        return False


@functools.lru_cache(maxsize=1)
def build_revision(root: Path = _SOURCE_ROOT) -> str:
    """`git describe --always --dirty --abbrev=12` of the checkout the code runs from, or "unknown" (installed
    package, git missing or failing). Blocks for up to GIT_TIMEOUT_S: call it off the event loop."""
    if not _is_our_checkout(root):
        return UNKNOWN
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            # --dirty refreshes the index; without this it may lock .git/index and make a concurrent commit fail.
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    revision = result.stdout.strip()
    return revision if result.returncode == 0 and revision else UNKNOWN


def version_line(prog: str = "reelscan") -> str:
    """`reelscan 0.1.0 (revision 2a2b4c6d1e0f)`: what --version prints."""
    revision = build_revision()
    return f"{prog} {package_version()}" + (f" (revision {revision})" if revision != UNKNOWN else "")


class VersionAction(argparse.Action):
    """`--version`: prints version_line() and exits 0. Unlike argparse's own, it asks git only when used."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        kwargs.setdefault("help", "print the version (and the source revision, in a git checkout) and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        print(version_line(), file=sys.stdout, flush=True)
        parser.exit()
