"""Simulates a directory that can be listed but not stat'ed (a sub-directory of a directory without search
permission), which tests running as root cannot produce with chmod."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


class _Unstatable:
    """A directory entry as os.scandir gives it for such a sub-directory: its type is known, but stat fails."""

    def __init__(self, entry: os.DirEntry[str]) -> None:
        self._entry = entry
        self.name = entry.name
        self.path = entry.path

    def is_symlink(self) -> bool:
        return False

    def is_file(self, *, follow_symlinks: bool = True) -> bool:
        return False

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return True

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        raise PermissionError(13, "Permission denied", self.path)


def make_unstatable(monkeypatch: pytest.MonkeyPatch, target: str) -> None:
    """Patches os.scandir so that the entry for the directory `target` cannot be stat'ed."""
    real_scandir = os.scandir

    class Listing:
        def __init__(self, path: str) -> None:
            self._it = real_scandir(path)

        def __enter__(self) -> Listing:
            return self

        def __exit__(self, *exc: object) -> None:
            self._it.close()

        def __iter__(self) -> Iterator[object]:
            for entry in self._it:
                yield _Unstatable(entry) if entry.path == target else entry

    monkeypatch.setattr(os, "scandir", Listing)
