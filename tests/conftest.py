"""Shared fixtures: a real server on a free port, and channels/stubs to it."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from tests.helpers.postgres import PostgresCluster, find_bin_dir
from tests.helpers.server import ServerProcess
from tests.helpers.stubs import Stubs


@pytest.fixture
def media_root(tmp_path: Path) -> Path:
    """An empty directory the server is allowed to scan."""
    root = tmp_path / "media"
    root.mkdir()
    return root


@pytest.fixture
def server(tmp_path: Path, media_root: Path) -> Iterator[ServerProcess]:
    """A real server process on a free port, allowed to scan `media_root`, with its own SQLite file."""
    with ServerProcess(tmp_path / "reelscan.db", allow_roots=[media_root]) as proc:
        yield proc


@pytest.fixture
async def channel(server: ServerProcess) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(server.address) as chan:
        yield chan


@pytest.fixture
def stubs(channel: grpc.aio.Channel) -> Stubs:
    return Stubs(channel)


# ---- PostgreSQL: one throwaway cluster per test session, one fresh database per test ------------------------


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    """A PostgreSQL server from the system's binaries; PostgreSQL tests skip (saying why) where there are none."""
    if find_bin_dir() is None:
        pytest.skip(
            "PostgreSQL server binaries (pg_ctl, initdb) not found: install Debian's postgresql to run these tests"
        )
    cluster = PostgresCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


_databases = itertools.count(1)


@pytest.fixture
def pg_url(pg_cluster: PostgresCluster) -> str:
    """postgresql:// URL of a new, empty database (NOTIFY channels are per database, so tests never cross-talk)."""
    return pg_cluster.create_database(f"test_{os.getpid()}_{next(_databases)}")
