"""The JobStore interface: where jobs live, who owns them, and how changes are announced.

A job is owned by the store, not by a server's memory. Each server (engine) has an identity, fresh per start, and
holds a lease on it that it renews (heartbeats). Claiming a pending job makes it RUNNING under that owner with a
new epoch; every later write by the owner names both (they travel in the Job itself: `job.owner`, `job.epoch`),
and the store applies it only while they still match, so a server that lost a job (its lease expired and another
recovered it) changes nothing and is told so. Cancellation is a flag any server may set; no owner write ever clears
it. Pending jobs, deduplication and the queue bound are decided by the store, so they hold for every server on it.

Every committed change is announced on the store's change feed as a small ChangeEvent; receivers that need the
details read the row. SQLite implements this for one server per database file (sqlite_store.py); a PostgreSQL
store for several replicas implements the same protocol, and both pass tests/jobs/test_store_contract.py.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from reelscan.service.jobs.feed import ChangeFeed
from reelscan.service.jobs.model import Job, JobCounts, JobKind, JobState


def payload_to_text(payload: Mapping[str, Any]) -> str:
    """A child's payload (or a parent's plan) as stored: compact ASCII JSON, so a file name that is not UTF-8
    (surrogate escapes) survives as \\u escapes in any text column."""
    return json.dumps(dict(payload), separators=(",", ":"))


def payload_from_text(text: str) -> Mapping[str, Any]:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError("a job payload must be a JSON object")
    return value


@dataclass(frozen=True, slots=True)
class Owner:
    """A server instance that runs jobs: a fresh id per start, plus where to find it (for operators)."""

    id: str
    address: str = ""
    pid: int = 0


class JobStore(Protocol):
    @property
    def changes(self) -> ChangeFeed:
        """Announces every committed change (after the commit, in commit order per job)."""
        ...

    async def insert(self, job: Job) -> None:
        """Stores a job as given, in any state (restores, imports and tests insert non-PENDING rows too)."""
        ...

    async def submit(self, job: Job, *, max_pending: int) -> tuple[Job, bool]:
        """Queues a new PENDING job as one atomic step with its checks. Returns (job, existed): if a PENDING or
        RUNNING job of the same kind has the same non-empty dedup_key, that job and True, and nothing is stored.
        Raises ResourceExhausted when `max_pending` jobs without a parent are already PENDING."""
        ...

    # ---- ownership -------------------------------------------------------------------------------------------

    async def register_owner(self, owner: Owner, ttl_s: float) -> None:
        """Starts `owner`'s lease, valid for `ttl_s` seconds."""
        ...

    async def renew_lease(self, owner_id: str, ttl_s: float) -> bool:
        """Extends the lease by `ttl_s` from now. False if it had already expired or was revoked: the owner may
        have lost its jobs to recovery and must stop them without writing."""
        ...

    async def release_owner(self, owner_id: str) -> None:
        """Ends the lease (clean shutdown, after the owner handed its jobs back)."""
        ...

    async def claim(self, owner_id: str, kinds: Collection[JobKind], limit: int) -> list[Job]:
        """Moves up to `limit` PENDING jobs of these kinds, oldest first, to RUNNING under `owner_id` with a new
        epoch, and returns them. Each pending job is claimed exactly once, whoever else claims at the same time.

        A shard (a child job) is passed over while this owner runs another shard of the same parent: a server's
        probe pool serves all its jobs, so one shard already keeps it busy, and a second one there would only
        add its own overhead while another server may be idle. The shards of one scan spread over the servers."""
        ...

    async def save(self, job: Job) -> bool:
        """The owner's write of a RUNNING job's new state (terminal, back to PENDING, or RUNNING with newer
        progress), in full except `cancel_requested`. Applied only if the stored row is RUNNING under the same
        owner and epoch; False (nothing written) otherwise."""
        ...

    async def checkpoint(self, job: Job) -> bool:
        """Like save for a RUNNING snapshot, and also ignored unless it is at least as new (seq) as the stored one.
        False if nothing was written."""
        ...

    async def request_cancel(self, job_id: str) -> Job | None:
        """Cancels: a PENDING job ends CANCELLED here and now; a RUNNING one gets `cancel_requested` (its owner
        hears of it through the change feed and stops it); a terminal one is left as it is. The job's children that
        have not ended are cancelled the same way, in the same step. Returns the job as stored afterwards, or None
        if there is no such job."""
        ...

    # ---- children (a job split into jobs of its own, e.g. the shards of a big scan) --------------------------

    async def spawn_children(
        self, parent: Job, plan: Mapping[str, Any], children: Sequence[tuple[Job, Mapping[str, Any]]]
    ) -> list[Job] | None:
        """Creates the children of `parent` as PENDING jobs (each with its payload), and stores the parent's `plan`
        payload, in one step: either all of it or nothing. Idempotent: if the parent already has children, nothing
        is written and those are returned (a coordinator taken over after a crash adopts them). Fenced like save:
        None (nothing written) unless `parent` is RUNNING under its owner and epoch with a live lease. Children do
        not count toward the queue bound and are not deduplicated."""
        ...

    async def list_children(self, parent_id: str) -> list[Job]:
        """The parent's children, in creation order."""
        ...

    async def get_payload(self, job_id: str) -> Mapping[str, Any] | None:
        """What spawn_children stored for this job (a child's work, or a parent's plan); None if nothing."""
        ...

    async def recover_expired(self) -> list[Job]:
        """Applies the crash rules (model.recover_crashed) to every RUNNING job whose owner's lease has expired
        (or whose owner is unknown), never to a live owner's. Returns the recovered jobs as stored."""
        ...

    # ---- reading and housekeeping ----------------------------------------------------------------------------

    async def get(self, job_id: str) -> Job | None: ...

    async def list_page(
        self,
        *,
        states: Collection[JobState],
        kinds: Collection[JobKind],
        page_size: int,
        page_token: str,
        parent_id: str = "",
    ) -> tuple[list[Job], str]:
        """One page of jobs, newest first; empty collections mean no filter. Only jobs without a parent, or with
        `parent_id` the children of that job. Returns the next page's token ("" on the last page). Raises
        InvalidArgument for a malformed token or one issued for other filters."""
        ...

    async def list_finished_before(self, cutoff: float, limit: int) -> list[Job]:
        """Terminal jobs without a parent that finished before `cutoff` (Unix seconds), oldest first (for
        retention pruning; children go with their parent)."""
        ...

    async def delete(self, job_id: str) -> bool:
        """Deletes a terminal job with its children (and every payload); False if there is no such terminal job.
        Children that have not ended yet are deleted too: their parent is over, and they were cancelled with it."""
        ...

    async def count_by_state(self) -> JobCounts:
        """How many jobs and shards are stored in each state, every server's."""
        ...

    async def close(self) -> None: ...
