"""What is particular to SqliteLibraryStore (the behaviour every store shares is in test_library_store_contract.py)."""

from __future__ import annotations

from reelscan.service.scan.sqlite_library_store import fts_query


def test_fts_query_quotes_every_word() -> None:
    assert fts_query("holiday beach") == '"holiday"* "beach"*'
    assert fts_query("'; --") is None
    assert fts_query('a"b') == '"a"* "b"*'
