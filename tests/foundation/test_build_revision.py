"""The build revision GetServerInfo and --version report: git describe of reelscan's own checkout, else unknown."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reelscan.service import version

GIT = shutil.which("git")
pytestmark = pytest.mark.skipif(GIT is None, reason="git is not installed")


def git(root: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t"}
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, env=env, check=True)
    return result.stdout.strip()


def checkout(root: Path, name: str) -> str:
    root.mkdir()
    git(root, "init", "-q")
    (root / "pyproject.toml").write_text(f'[project]\nname = "{name}"\n')
    git(root, "add", "pyproject.toml")
    git(root, "commit", "-q", "-m", "one")
    return git(root, "rev-parse", "HEAD")


def test_a_reelscan_checkout_reports_git_describe_with_the_dirty_marker(tmp_path: Path) -> None:
    head = checkout(tmp_path / "repo", "reelscan")
    clean = version.build_revision.__wrapped__(tmp_path / "repo")
    assert clean == head[:12]
    (tmp_path / "repo" / "pyproject.toml").write_text('[project]\nname = "reelscan"\n# edited\n')
    assert version.build_revision.__wrapped__(tmp_path / "repo") == head[:12] + "-dirty"


def test_another_projects_checkout_or_no_checkout_is_unknown(tmp_path: Path) -> None:
    checkout(tmp_path / "other", "something-else")
    assert version.build_revision.__wrapped__(tmp_path / "other") == "unknown"
    (tmp_path / "site-packages").mkdir()
    assert version.build_revision.__wrapped__(tmp_path / "site-packages") == "unknown"


def test_this_checkout_reports_its_head() -> None:
    root = Path(version.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        pytest.skip("not running from a git checkout")
    described = git(root, "describe", "--always", "--abbrev=12")  # the hash, or tag-N-gHASH once tagged
    assert version.build_revision().removesuffix("-dirty") == described
    assert version.version_line() == f"reelscan {version.package_version()} (revision {version.build_revision()})"
