"""Opaque page tokens for keyset pagination.

A token is URL-safe base64 of a small JSON object holding the position after the last item served and a
fingerprint of the filters it was issued for, so that reusing it with other filters is rejected instead of silently
skipping or repeating items. Tokens are not secret (they only name a position), so no signature is needed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Collection
from typing import Any

from reelscan.service.errors import InvalidArgument

_VERSION = 1
# The longest real token holds a 4096-byte path, escaped (non-UTF-8 bytes take 4 characters) and base64-encoded:
# about 22 KB. Anything longer is not one of ours, and the bound caps the work of decoding hostile input.
MAX_TOKEN_LENGTH = 32 * 1024


def fingerprint(filters: Any) -> str:
    """A short stable hash of JSON-serialisable filters; callers normalise them first (e.g. sort lists)."""
    canonical = json.dumps(filters, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode(position: list[Any], filters_fingerprint: str) -> str:
    raw = json.dumps({"v": _VERSION, "p": position, "f": filters_fingerprint}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(token: str, filters_fingerprint: str) -> list[Any]:
    """Returns the position stored in `token`; InvalidArgument if it is malformed or was issued for other filters."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidArgument("page_token is malformed", field="page_token")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError, RecursionError) as error:
        raise InvalidArgument("page_token is malformed", field="page_token") from error
    if not isinstance(data, dict) or data.get("v") != _VERSION or not isinstance(data.get("p"), list):
        raise InvalidArgument("page_token is malformed", field="page_token")
    if data.get("f") != filters_fingerprint:
        raise InvalidArgument(
            "page_token was issued for different filters; repeat the request's filters or start over",
            field="page_token",
        )
    position: list[Any] = data["p"]
    return position


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1  # what SQLite INTEGER and PostgreSQL bigint hold


def job_filters_fingerprint(states: Collection[int], kinds: Collection[int], parent_id: str = "") -> str:
    """The fingerprint of ListJobs filters (states and kinds, order-free; the parent), shared by every job store."""
    filters: dict[str, Any] = {"states": sorted(int(s) for s in states), "kinds": sorted(int(k) for k in kinds)}
    if parent_id:  # absent for top-level listings: tokens issued before children existed stay valid
        filters["parent"] = parent_id
    return fingerprint(filters)


def decode_int64_position(token: str, filters_fingerprint: str) -> int:
    """A token whose position is one 64-bit integer (a row's insertion order); InvalidArgument otherwise."""
    position = decode(token, filters_fingerprint)
    if (
        len(position) != 1
        or not isinstance(position[0], int)
        or isinstance(position[0], bool)
        or not INT64_MIN <= position[0] <= INT64_MAX
    ):
        raise InvalidArgument("page_token is malformed", field="page_token")
    return position[0]
