"""Fixtures for the scanner tests: a session-wide set of real clips (encoded once), a recording JobContext, and an
empty library store of each implementation."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reelscan.service.jobs.model import Stage
from reelscan.service.scan.library_store import LibraryStore
from tests.helpers.library_stores import LIBRARY_STORE_FACTORIES, LibraryStoreFactory
from tests.media import (
    ClipSpec,
    make_clip,
    make_corrupt,
    make_random_bytes,
    make_truncated,
    make_zero_byte,
)


@dataclass(frozen=True)
class Corpus:
    """Good clips (by name) and broken files, in their own directory."""

    directory: Path
    clips: dict[str, ClipSpec]
    broken: dict[str, Path]

    @property
    def good_paths(self) -> list[Path]:
        return sorted(c.path for c in self.clips.values())


def build_corpus(directory: Path) -> Corpus:
    clips = {
        "h264_aac": make_clip(
            directory / "h264_aac.mp4",
            audio_language="eng",
            creation_time="2024-01-02T03:04:05.000000Z",
            subtitle_languages=["eng", "fra"],
        ),
        "vp9_opus": make_clip(
            directory / "vp9_opus.webm", video_codec="vp9", audio_codec="opus", subtitle_languages=["deu"]
        ),
        "mkv_rotated": make_clip(directory / "rotated.mkv", audio_codec=None, rotation=90),
        "hdr10": make_clip(
            directory / "hdr10 clip.mp4",
            pix_fmt="yuv420p10le",
            color_transfer="smpte2084",
            color_primaries="bt2020",
        ),
        "av1": make_clip(
            directory / "sub" / "av1_opus.mkv", video_codec="av1", width=64, height=64, fps=30, audio_codec="opus"
        ),
        "mov_mono": make_clip(
            directory / "sub" / "mono_44k.mov", fps=24, audio_channels=1, audio_rate=44_100, rotation=270
        ),
        "tall": make_clip(directory / "sub" / "deep" / "tall_holiday.mp4", width=160, height=240, duration_s=2.0),
    }
    source = clips["h264_aac"].path
    broken = {
        "zero": make_zero_byte(directory / "broken" / "zero.mp4"),
        "random": make_random_bytes(directory / "broken" / "random.mkv", seed=1),
        "truncated": make_truncated(directory / "broken" / "truncated.mp4", source),
        "corrupt": make_corrupt(directory / "broken" / "corrupt.mov", source, seed=2),
    }
    return Corpus(directory, clips, broken)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(
    params=[factory for _, factory in LIBRARY_STORE_FACTORIES], ids=[name for name, _ in LIBRARY_STORE_FACTORIES]
)
async def library_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LibraryStore]:
    """An empty library store, once for each implementation (the contract suite's tests run against every one).
    A factory asks `request` for what else it needs (PostgreSQL: `pg_url`), so SQLite-only runs start no cluster."""
    factory: LibraryStoreFactory = request.param
    async with factory(tmp_path, request) as store:
        yield store


@dataclass
class _NoChildren:
    """Children of a job run outside an engine: it has none and cannot have any (sharded scans run in an engine:
    tests/scan/test_sharded_scans.py)."""

    async def spawn(self, plan: Mapping[str, Any], payloads: Any) -> list[Any]:
        raise AssertionError("a job run outside an engine cannot spawn children")

    async def payload(self) -> None:
        return None

    async def current(self) -> list[Any]:
        return []

    async def changed(self, timeout_s: float) -> None:
        pass

    def release_slot(self) -> None:
        pass


@dataclass
class RecordingContext:
    """A JobContext that records every report, as the engine would receive them."""

    spec: Mapping[str, Any]
    job_id: str = "job-1"
    reports: list[dict[str, Any]] = field(default_factory=list)
    results: list[dict[str, int]] = field(default_factory=list)
    parent_id: str = ""
    claim: None = None  # run outside an engine: no claim to fence library writes on

    @property
    def children(self) -> _NoChildren:
        return _NoChildren()

    def report(
        self,
        *,
        stage: Stage | None = None,
        done: int | None = None,
        total: int | None = None,
        current_item: str | None = None,
    ) -> None:
        self.reports.append({"stage": stage, "done": done, "total": total, "current_item": current_item})

    def set_result(self, result: Mapping[str, int]) -> None:
        self.results.append(dict(result))

    @property
    def result(self) -> dict[str, int]:
        return self.results[-1] if self.results else {}
