"""A scan job's request as stored in the job (`Job.spec`, JSON): the fields of reelscan.v1.ScanSpec."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reelscan.service.errors import InvalidArgument

MAX_EXTENSIONS = 64
SHARDING_MODES = ("auto", "always", "never")
MAX_EXTENSION_CHARS = 16


@dataclass(frozen=True, slots=True)
class ScanSpec:
    path: str  # absolute and fully resolved
    recursive: bool
    force: bool
    extensions: tuple[str, ...]  # lower case, no dot
    follow_symlinks: bool
    sharding: str = "auto"  # one of SHARDING_MODES (reelscan.v1.Sharding)

    def to_mapping(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "recursive": self.recursive,
            "force": self.force,
            "extensions": list(self.extensions),
            "follow_symlinks": self.follow_symlinks,
            "sharding": self.sharding,
        }

    @classmethod
    def from_mapping(cls, spec: Mapping[str, Any]) -> ScanSpec:
        return cls(
            path=str(spec["path"]),
            recursive=bool(spec.get("recursive", True)),
            force=bool(spec.get("force", False)),
            extensions=tuple(str(e) for e in spec.get("extensions", ())),
            follow_symlinks=bool(spec.get("follow_symlinks", False)),
            sharding=str(spec.get("sharding", "auto")),  # jobs stored before sharding existed: auto
        )


def normalize_extensions(requested: Sequence[str], default: Sequence[str]) -> tuple[str, ...]:
    """Request extensions -> lower case without dots, de-duplicated in order; `default` when none are given."""
    if len(requested) > MAX_EXTENSIONS:
        raise InvalidArgument(f"at most {MAX_EXTENSIONS} extensions, got {len(requested)}", field="extensions")
    result: list[str] = []
    for raw in requested:
        ext = raw.strip().lower().lstrip(".")
        if not ext or len(ext) > MAX_EXTENSION_CHARS or not all(c.isalnum() or c in "_-" for c in ext):
            raise InvalidArgument(
                f"extension {raw!r} is not valid: use letters, digits, '_' or '-' (e.g. 'mp4'), "
                f"at most {MAX_EXTENSION_CHARS} characters",
                field="extensions",
            )
        if ext not in result:
            result.append(ext)
    return tuple(result) if result else tuple(default)
