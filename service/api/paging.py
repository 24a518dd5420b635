"""Keeping list responses within the message size limit.

Pages are asked for by item count, but items vary in size (long paths, many audio streams), so a page that fits
by count may not fit by bytes. Such a page is cut short and its next_page_token points after the last item sent:
the client still walks every item exactly once, and never gets RESOURCE_EXHAUSTED for a valid page_size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
# Room left in a response for everything but the items: the next page token and field framing.
RESPONSE_MARGIN_BYTES = 4096


def fit(items: Sequence[Any], max_bytes: int) -> int:
    """How many of `items` (messages of a repeated field) fit in a response of `max_bytes`. At least one, so a
    listing always makes progress."""
    budget = max_bytes - RESPONSE_MARGIN_BYTES
    used = 0
    for count, item in enumerate(items):
        used += item.ByteSize() + 8  # field tag and length prefix
        if used > budget and count > 0:
            return count
    return len(items)
