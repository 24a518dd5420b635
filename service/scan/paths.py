"""Which directories a scan may read: the path policy behind StartScan, and its re-check when the job starts.

Checks run in a fixed order, each with its own error (and so its own status code):
  1. syntax: empty, relative, or containing NUL -> InvalidArgument
  2. policy: the fully resolved path (symlinks and `..` resolved) lies outside every allowed root -> PermissionDenied
  3. existence: missing -> NotFound
  4. kind: not a directory -> FailedPrecondition
The policy is decided before the path itself is examined, so a client learns nothing about what exists outside the
roots: a missing and an existing path outside them get the same PERMISSION_DENIED.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from reelscan.limits import MAX_PATH_CHARS
from reelscan.service.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied


def check_syntax(raw: str, field: str = "path") -> None:
    if not raw:
        raise InvalidArgument("path is empty: give the absolute path of a directory", field=field)
    if "\x00" in raw:
        raise InvalidArgument("path contains a NUL byte", field=field)
    if len(raw) > MAX_PATH_CHARS:
        raise InvalidArgument(f"path is longer than {MAX_PATH_CHARS} characters", field=field)
    if not os.path.isabs(raw):
        raise InvalidArgument(f"path must be absolute, got relative path {raw!r}", field=field)


def is_within(path: str, root: str) -> bool:
    """True if `path` is `root` or below it, component-wise ("/media/a" does not contain "/media/ab")."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def within_any(path: str, roots: Sequence[Path]) -> bool:
    """True when there are no roots (no restriction) or `path` is within one of them."""
    return not roots or any(is_within(path, str(root)) for root in roots)


def _resolve(raw: str) -> str:
    # realpath resolves `..` and every symlink component; strict=False so that a missing path still resolves
    # (and is judged by the policy first). Blocking (lstat/readlink): runs in a thread.
    return os.path.realpath(raw)


def _check_policy(raw: str, resolved: str, roots: Sequence[Path], field: str) -> None:
    if not within_any(resolved, roots):
        shown = f"{raw!r}" if resolved == raw else f"{raw!r} (resolves to {resolved!r})"
        raise PermissionDenied(f"path {shown} is outside the allowed roots", field=field)


def _check_directory(resolved: str, field: str) -> None:
    try:
        st = os.stat(resolved)
    except FileNotFoundError:
        raise NotFound(f"path {resolved!r} does not exist", field=field) from None
    except NotADirectoryError:  # a component is a file
        raise NotFound(f"path {resolved!r} does not exist", field=field) from None
    except OSError as error:
        # Permission denied on a parent, a loop, a name too long: the directory cannot be used.
        raise FailedPrecondition(f"path {resolved!r} cannot be accessed: {error.strerror}", field=field) from None
    if not stat.S_ISDIR(st.st_mode):
        raise FailedPrecondition(f"path {resolved!r} is not a directory", field=field)


def _validate_blocking(raw: str, roots: Sequence[Path], field: str) -> Path:
    resolved = _resolve(raw)
    _check_policy(raw, resolved, roots, field)
    _check_directory(resolved, field)
    return Path(resolved)


async def validate_scan_root(raw: str, allow_roots: Sequence[Path], field: str = "path") -> Path:
    """Validates a requested scan path and returns it fully resolved. Raises the domain error of the first
    failing check (see the module docstring)."""
    check_syntax(raw, field)
    return await asyncio.to_thread(_validate_blocking, raw, allow_roots, field)


def _revalidate_blocking(resolved: str, roots: Sequence[Path]) -> Path:
    again = _resolve(resolved)
    _check_policy(resolved, again, roots, "path")
    if again != resolved:
        # Something on the way was swapped for a symlink since StartScan; even inside the roots, scanning a
        # different directory than the one accepted would be a surprise.
        raise FailedPrecondition(f"path {resolved!r} changed since the scan was requested (now {again!r})")
    _check_directory(resolved, "path")
    return Path(resolved)


async def revalidate_scan_root(resolved: str, allow_roots: Sequence[Path]) -> Path:
    """The scan worker's check when the job starts: the already-resolved root must still resolve to itself,
    within the roots, and be a directory. A symlink swapped in meanwhile cannot lead the scan elsewhere."""
    check_syntax(resolved)
    return await asyncio.to_thread(_revalidate_blocking, resolved, allow_roots)
