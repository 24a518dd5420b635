"""Limits of the reelscan.v1 contract (the .proto files document them), in one place for server and clients.

Plain numbers and no imports, so a client imports this without pulling in server code or gRPC.
"""

from __future__ import annotations

# Most items one page of a listing holds (ListJobs, ListVideos, ListScanErrors): a larger page_size is capped.
MAX_PAGE_SIZE = 1000
# Longest path a request may carry (StartScan.path, ListVideos.path_prefix, GetVideo.path): PATH_MAX on Linux.
MAX_PATH_CHARS = 4096
# Longest job or video id a request may carry (job_id fields, GetVideo.id).
MAX_ID_CHARS = 128
