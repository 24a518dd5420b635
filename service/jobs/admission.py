"""Admission: a request for work becomes a PENDING job in the store, or is refused with a clear reason.

Validation happens here; deduplication (an active job of the same kind and key is returned instead) and the
bound on waiting jobs are decided by the store in the same step as the insert, so they hold across servers.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Collection, Mapping
from typing import Any

from reelscan.service.errors import InvalidArgument
from reelscan.service.jobs.model import Job, JobKind, JobState, Progress, Stage
from reelscan.service.jobs.store import JobStore


class Admission:
    def __init__(
        self, store: JobStore, kinds: Collection[JobKind], *, default_timeout_s: float, max_queued: int
    ) -> None:
        self._store = store
        self._kinds = kinds
        self._default_timeout_s = default_timeout_s
        self._max_queued = max_queued

    async def submit(
        self, kind: JobKind, spec: Mapping[str, Any], *, timeout_s: float | None, dedup_key: str
    ) -> tuple[Job, bool]:
        if kind not in self._kinds:
            raise InvalidArgument(f"no handler for job kind {kind.name}", field="kind")
        timeout = self._default_timeout_s if timeout_s is None else timeout_s
        if not (math.isfinite(timeout) and timeout > 0):
            raise InvalidArgument(f"timeout must be a positive number of seconds, got {timeout_s}", field="timeout")
        now = time.time()
        job = Job(
            id=uuid.uuid4().hex,
            kind=kind,
            state=JobState.PENDING,
            spec=dict(spec),
            timeout_s=timeout,
            create_time=now,
            update_time=now,
            seq=1,
            progress=Progress(stage=Stage.QUEUED),
            dedup_key=dedup_key,
        )
        return await self._store.submit(job, max_pending=self._max_queued)
