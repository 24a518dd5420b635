"""Databases for real servers under test: every end-to-end suite that takes `backend` runs on both."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

BACKENDS = ("sqlite", "postgresql")
_numbers = itertools.count(1)


def new_database(backend: str, request: pytest.FixtureRequest, directory: Path) -> str:
    """What to pass as --db: a SQLite file in `directory`, or a new database on the session's PostgreSQL cluster
    (the PostgreSQL variant skips, saying why, where the server binaries are absent)."""
    if backend == "sqlite":
        return str(directory / "reelscan.db")
    cluster = request.getfixturevalue("pg_cluster")
    return str(cluster.create_database(f"e2e_{os.getpid()}_{next(_numbers)}"))
