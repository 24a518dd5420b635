"""The LibraryStore interface: how scans store the video library and scan errors, and how LibraryService reads
them, independent of the database behind it.

Today that is SQLite (sqlite_library_store.py); a PostgreSQL store can implement the same protocol without
touching the scan handler or the servicer. tests/scan/test_library_store_contract.py is the contract every
implementation passes. The domain types are in library_model.py.

Paths: `load_known` takes a file-system path (the scan root) and encodes it itself; every other path a store takes
or returns is in library_path form (library_model.library_path).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from reelscan.service.jobs.handler import Claim
from reelscan.service.scan.library_model import KnownFile, ProbedFile, ScanErrorRecord, Video, VideoFilter


class LibraryStore(Protocol):
    # --- scanning --------------------------------------------------------------------------------------------

    async def load_known(self, root: str, recursive: bool) -> dict[str, KnownFile]:
        """Everything the library knows under the file-system path `root` (at any depth when `recursive`, else
        directly in it), keyed by library path: (path, size, mtime_ns, missing 0/1, failed 0/1) as last stored,
        failed meaning the last probe failed. Failed probes and missing files are included: the scan compares size
        and mtime_ns to skip unchanged files, whether their last probe failed or not (counting the failed ones it
        skips), and un-marks missing ones that came back."""
        ...

    async def write_batch(
        self,
        probed: Sequence[ProbedFile] = (),
        errors: Sequence[ScanErrorRecord] = (),
        unmissing: Sequence[str] = (),
        fence: Claim | None = None,
    ) -> None:
        """Stores probe outcomes, scan errors and returned files in one transaction (all or nothing).

        With `fence`, the transaction lands only while that job claim still holds (its owner, epoch and live lease,
        checked inside the transaction on the jobs table of the same database): otherwise nothing is written and
        JobLost is raised, so a server that lost the job cannot write what its successor is writing too.

        - `probed`: inserts or replaces each path's row in place (a known path keeps its id and create_time) and
          clears its missing flag; probe_time becomes now. A failed probe (info None) is stored too, with its
          error and error_kind and no media fields, so that load_known knows it and the library lists it as a
          broken file (status FAILED); a later successful probe clears the failure.
        - `errors`: one per (job_id, path); a second error for the same file of the same job is ignored.
        - `unmissing`: clears the missing flag of these paths, nothing else.
        Nothing to write writes nothing."""
        ...

    async def mark_missing(self, paths: Iterable[str], chunk: int = 5000, fence: Claim | None = None) -> None:
        """Flags these library paths as missing (rows are never deleted), at most `chunk` per transaction so that a
        huge vanished tree does not hold the write lock for long. Unknown paths are ignored. `fence`: as for
        write_batch, per transaction."""
        ...

    async def delete_scan_errors(self, job_id: str) -> None:
        """Deletes every scan error of this job (when the job is deleted); other jobs' errors stay."""
        ...

    # --- queries ---------------------------------------------------------------------------------------------

    async def list_videos(self, flt: VideoFilter, page_size: int, token: str) -> tuple[list[Video], str]:
        """A page of library entries ordered by path in code point order, and the next page's token ("" on the
        last page).

        Which entries: those whose status (Video.status) is in flt.statuses, MISSING included when
        flt.include_missing. With no statuses, as before they existed: OK entries only, plus, with include_missing,
        missing ones whose last probe succeeded. Failed entries have no media fields, so the filters on those
        (video_codec, durations, min_height) never match them.

        Filters combine with AND: path_prefix selects that path and everything below it as a whole directory
        component ("/m/a" is not a prefix of "/m/ab/x"); video_codec is case-insensitive; the duration range and
        min_height are inclusive. `query` matches words of the file name: each word of the text must begin a word
        of the name, case-insensitively and ignoring diacritics; text with no words matches nothing. SQL, FTS or
        LIKE syntax in the text has no meaning: it is only text.

        page_size: 0 means the default (100), larger than 1000 is capped. Raises InvalidArgument for a negative
        page_size, and for a token that is malformed, forged, or was issued for other filters."""
        ...

    async def get_video(self, *, video_id: str | None = None, path: str | None = None) -> Video:
        """One library entry by id or by path, whatever its status: failed (with its reason, kind and when it was
        last tried) and missing ones too. NotFound when the library has no entry for it, including a malformed id;
        InvalidArgument when neither is given."""
        ...

    async def list_scan_errors(self, job_id: str, page_size: int, token: str) -> tuple[list[ScanErrorRecord], str]:
        """A page of one job's scan errors in the order they were recorded (ascending `id`), and the next page's
        token ("" on the last page). Page sizes as in list_videos; InvalidArgument for a malformed token or one
        issued for another job."""
        ...

    def videos_token_after(self, flt: VideoFilter, video: Video) -> str:
        """The list_videos page token that continues a listing with `flt` right after `video` (for pages the
        servicer cuts short to fit the message limit). Pure: no database access."""
        ...

    def scan_errors_token_after(self, job_id: str, error: ScanErrorRecord) -> str:
        """The list_scan_errors page token that continues job_id's errors right after `error`. Pure."""
        ...

    async def close(self) -> None:
        """Releases the store's connections; the store is not used afterwards."""
        ...
