"""A read-only FUSE passthrough that adds a fixed delay to every read: slow storage (a network mount: milliseconds
per read) built on this machine, for the slow-storage benchmark (bench/slow_storage.py).

Usage: python -m bench.slowfs SOURCE MOUNTPOINT --delay-ms 2   (runs in the foreground until unmounted)

Needs /dev/fuse, `fusermount3` (Debian's fuse3) and mfusepy (ctypes bindings for libfuse 3; `pip install
mfusepy`). Mounted with direct_io, so every read of every probe reaches this process and pays the delay (the
kernel's page cache would otherwise serve repeated reads for free); lookups and attributes are cached by the
kernel for the default second, like a network file system's attribute cache. Multi-threaded: reads wait side by
side (up to 64), as on a network mount that has several requests in flight.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
from typing import Any

import mfusepy as fuse


class SlowPassthrough(fuse.Operations):  # type: ignore[misc]
    use_ns = True

    def __init__(self, source: str, delay_s: float) -> None:
        self.source = os.path.realpath(source)
        self.delay_s = delay_s

    def _full(self, path: str) -> str:
        return os.path.join(self.source, path.lstrip("/"))

    def getattr(self, path: str, fh: Any = None) -> dict[str, Any]:
        try:
            st = os.lstat(self._full(path))
        except OSError as error:
            raise fuse.FuseOSError(error.errno or errno.EIO) from error
        keys = ("st_mode", "st_nlink", "st_size", "st_uid", "st_gid", "st_ino")
        attrs: dict[str, Any] = {k: getattr(st, k) for k in keys}
        attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        return attrs

    def readdir(self, path: str, fh: Any) -> list[str]:
        return [".", "..", *os.listdir(self._full(path))]

    def open(self, path: str, flags: int) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR):
            raise fuse.FuseOSError(errno.EROFS)
        return os.open(self._full(path), os.O_RDONLY)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        time.sleep(self.delay_s)  # the network round trip
        return os.pread(fh, size, offset)

    def release(self, path: str, fh: int) -> int:
        os.close(fh)
        return 0

    def readlink(self, path: str) -> str:
        return os.readlink(self._full(path))

    def statfs(self, path: str) -> dict[str, Any]:
        st = os.statvfs(self._full(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_frsize")
        return {k: getattr(st, k) for k in keys} | {"f_namemax": st.f_namemax}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source")
    parser.add_argument("mountpoint")
    parser.add_argument("--delay-ms", type=float, default=2.0)
    args = parser.parse_args(argv)
    fuse.FUSE(
        SlowPassthrough(args.source, args.delay_ms / 1000),
        args.mountpoint,
        foreground=True,
        nothreads=False,
        ro=True,
        direct_io=True,
        max_threads=64,  # libfuse 3's default of 10 would cap the reads in flight below the probes in flight
        max_idle_threads=64,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
