"""Fixtures of the reliability suite, its hypothesis profiles, and a summary of the figures it measured."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.media import make_clip
from tests.reliability.support import FIGURES

# Request fuzzing against one live server. No example database: the suite must not write into the repository,
# and each run should explore afresh (a failure prints the seed and the falsifying example to reproduce it).
_FUZZ = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    "print_blob": True,
}
settings.register_profile("reliability-fuzz", max_examples=600, **_FUZZ)  # type: ignore[arg-type]
settings.register_profile("reliability-fuzz-soak", max_examples=4000, **_FUZZ)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two tiny real clips (encoded once per session) to copy or hard-link into test trees."""
    directory = tmp_path_factory.mktemp("reliability-clips")
    return {
        "mp4": make_clip(directory / "source.mp4", audio_language="eng").path,
        "mkv": make_clip(directory / "source.mkv", width=80, height=64, audio_codec=None).path,
    }


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("reliability figures")
    for name, value in FIGURES.items():
        terminalreporter.write_line(f"{name}: {value}")
