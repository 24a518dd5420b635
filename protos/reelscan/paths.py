"""How the reelscan.v1 contract writes a file-system path as text (Video.path, ScanError.path, path filters), in
one place for server and clients: a client looking a local file up must write its path as the server stored it.

No imports beyond the standard library, so a client imports this without pulling in server code or gRPC.
"""

from __future__ import annotations


def library_path(fs_path: str) -> str:
    """The library's text form of a file-system path: the path itself, unless it holds a backslash or bytes that
    are not UTF-8 (which Python hands over as surrogate escapes). Then backslashes are doubled and each
    undecodable byte is written \\xNN, so that the form is valid UTF-8 (for SQLite text and protobuf strings) and
    one-to-one: a name that is not UTF-8 never takes the place of a file literally named with its escape.
    """
    if "\\" not in fs_path:
        if fs_path.isascii():
            return fs_path
        try:
            fs_path.encode("utf-8")
        except UnicodeEncodeError:
            pass
        else:
            return fs_path
    raw = fs_path.encode("utf-8", "surrogateescape")
    return raw.replace(b"\\", b"\\\\").decode("utf-8", "backslashreplace")
