"""Sharded scans: one big scan spread over every server that shares the database.

A scan discovers its whole tree first, as any scan does. If the files it must probe reach `--shard-threshold`
(or the request says `always`), it does not probe them itself: it becomes the parent of shards, child jobs that
any server with a free slot claims, each probing its share. The parent then only coordinates:

- Shards are contiguous runs of the files to probe in library-path order, so each is a few whole subtrees plus
  the edges of at most two directories; cut points move to a directory boundary when one is near, and a directory
  bigger than a shard is split. About `--shard-size` files each, at most MAX_SHARDS (then larger shards).
- The shards and the parent's plan (its discovery counts and the files to mark missing) are stored in one step
  (JobStore.spawn_children). A parent taken over after its server died finds the plan and adopts the shards as
  they are: nothing is discovered, created or counted twice, so it ends with the same result.
- Progress: discovery first (the parent's own), then files probed over files to probe, summed over the shards.
  The result is the parent's discovery counts plus the shards' probe counts. Scan errors of every shard are
  recorded under the parent's id, so ListScanErrors of the parent lists them all.
- Files gone from disk are marked missing by the parent at the end, over the whole scan (the rule that a scan
  finding nothing where the library has files marks nothing missing is the parent's, decided at discovery).
- Ending: the parent SUCCEEDED when every shard did. A shard that FAILED, was cancelled on its own or timed out
  fails the parent (ABORTED, naming the shard and why); per-file probe errors never fail a shard. Cancelling,
  timing out or deleting the parent does the same to its shards (the store and the runner cascade it).
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from reelscan.service.errors import Aborted, ReelscanError
from reelscan.service.jobs.handler import JobContext
from reelscan.service.jobs.model import Job, JobState, Stage

MAX_SHARDS = 256
# The parent reads its shards (one small query) when one of them changed, and at least this often: watchers see
# it move at about this rate even when shards run here (their progress reaches the store at checkpoints only).
POLL_INTERVAL_S = 0.2
MIN_READ_INTERVAL_S = 0.05
# A cut point moves to a directory boundary if one is within this fraction of a shard's size.
BOUNDARY_SLACK = 0.1
PLAN_VERSION = 1
# Counts the shards report (probing); the others come from the parent's discovery.
PROBE_COUNTS = ("probed", "new", "updated", "failed")


class ShardFailed(Aborted):
    """A shard ended without succeeding, so the scan as a whole did not."""


def wanted(mode: str, files_to_probe: int, threshold: int) -> bool:
    """Whether a scan with this many files to probe is sharded (`mode`: ScanSpec.sharding)."""
    if mode == "never" or files_to_probe < 2:
        return False
    return mode == "always" or files_to_probe >= threshold


def cut(paths: Sequence[str], shard_size: int) -> list[tuple[int, int]]:
    """Splits `paths` (sorted library paths of the files to probe) into contiguous [start, end) ranges of about
    `shard_size` (at least two shards, at most MAX_SHARDS), each cut moved to a directory boundary when one is
    within BOUNDARY_SLACK of a shard's size."""
    count = len(paths)
    shards = max(2, min(MAX_SHARDS, math.ceil(count / max(1, shard_size))))
    shards = min(shards, count)
    size = count / shards
    slack = int(size * BOUNDARY_SLACK)
    cuts = [0]
    for i in range(1, shards):
        target = round(i * size)
        cuts.append(max(cuts[-1] + 1, _near_boundary(paths, target, slack)))
    cuts.append(count)
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def _near_boundary(paths: Sequence[str], target: int, slack: int) -> int:
    """The index nearest `target` (within `slack`) where the directory changes, else `target` itself."""
    for distance in range(slack + 1):
        for i in (target - distance, target + distance):
            if 0 < i < len(paths) and _directory(paths[i - 1]) != _directory(paths[i]):
                return i
    return target


def _directory(path: str) -> str:
    return path.rpartition("/")[0]


@dataclass(frozen=True, slots=True)
class Plan:
    """What the parent decided at discovery, stored with its shards (so a successor adopts it as it was)."""

    counts: Mapping[str, int]  # the parent's discovery counts (discovered, unchanged, walk failures, ...)
    files_to_probe: int
    missing: Sequence[str]  # library paths to mark missing at the end (not missing already)
    missing_count: int  # entries gone from disk, including those already marked missing

    def to_payload(self) -> dict[str, Any]:
        return {
            "version": PLAN_VERSION,
            "counts": dict(self.counts),
            "files_to_probe": self.files_to_probe,
            "missing": list(self.missing),
            "missing_count": self.missing_count,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Plan:
        if payload.get("version") != PLAN_VERSION:
            raise ReelscanError(f"this server cannot adopt a shard plan of version {payload.get('version')!r}")
        return cls(
            counts={str(k): int(v) for k, v in payload["counts"].items()},
            files_to_probe=int(payload["files_to_probe"]),
            missing=[str(p) for p in payload["missing"]],
            missing_count=int(payload["missing_count"]),
        )


async def coordinate(ctx: JobContext, plan: Plan, publish: Callable[[Mapping[str, int]], None]) -> Mapping[str, int]:
    """Follows the parent's shards until every one has ended, reporting their summed progress and counts through
    `ctx` and `publish`. Returns the summed counts; raises ShardFailed if a shard did not succeed."""
    ctx.children.release_slot()  # from here on the parent only waits: its shards may need the slot
    ctx.report(stage=Stage.PROBING, done=0, total=plan.files_to_probe)
    while True:
        shards = await ctx.children.current()
        counts = _summed(plan, shards)
        # Files probed, from the shards' counts: their progress' `done` starts again at 0 when a shard moves on to
        # FINALIZING, so summing it would go back each time a shard ends.
        ctx.report(done=sum(s.result.get("probed", 0) for s in shards))
        current = next((s.progress.current_item for s in shards if s.progress.current_item), None)
        if current is not None:
            ctx.report(current_item=current)
        publish(counts)
        if shards and all(s.terminal for s in shards):
            _check_ended_well(shards)
            ctx.report(done=plan.files_to_probe)
            return counts
        await asyncio.sleep(MIN_READ_INTERVAL_S)  # shards change many times a second: at most ~20 reads a second
        await ctx.children.changed(POLL_INTERVAL_S - MIN_READ_INTERVAL_S)


def _summed(plan: Plan, shards: Sequence[Job]) -> dict[str, int]:
    counts = dict(plan.counts)
    for name in PROBE_COUNTS:
        counts[name] = counts.get(name, 0) + sum(s.result.get(name, 0) for s in shards)
    return counts


def _check_ended_well(shards: Sequence[Job]) -> None:
    for shard in shards:
        if shard.state is not JobState.SUCCEEDED:
            index = int(shard.spec.get("shard_index", 0)) + 1
            why = f": {shard.error.message}" if shard.error is not None else ""
            raise ShardFailed(f"shard {index} of {len(shards)} ({shard.id}) ended {shard.state.name}{why}")
