"""Leases: what a writer has made but not yet named is not garbage.

A pull, a commit or a build writes blobs and unpacked layers first and names
them in index.json last. In between they belong to no image, and an `rmi` in
another process, collecting what no image refers to, would delete them. So a
process that writes takes a lease: a file in <root>/leases/ that it holds
locked for as long as its Store object lives. The file's mtime is when the
writing began; collect() leaves alone everything newer than the oldest living
lease. A lease whose holder died is unlocked, and whoever looks next removes it.
"""
import fcntl
import os
import secrets
import weakref
from pathlib import Path


class Lease:
    """A locked file; released (and removed) when this object goes away."""

    def __init__(self, root):
        folder = Path(root) / "leases"
        folder.mkdir(mode=0o700, exist_ok=True)
        self.path = folder / f"{os.getpid()}-{secrets.token_hex(4)}"
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self.file = os.fdopen(fd, "rb")
        weakref.finalize(self, _end, self.file, self.path)

    @property
    def inode(self) -> int:
        return os.fstat(self.file.fileno()).st_ino


def _end(file, path) -> None:
    path.unlink(missing_ok=True)
    file.close()


def take(root) -> Lease:
    return Lease(root)


def oldest(root, mine: Lease = None):
    """mtime (ns) of the oldest lease some other living writer holds, or None; dead ones are removed."""
    found, own = None, mine.inode if mine else None
    folder = Path(root) / "leases"
    for path in folder.glob("*") if folder.exists() else ():
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        try:
            st = os.fstat(fd)
            if st.st_ino == own:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                path.unlink(missing_ok=True)   # its writer is gone
            except BlockingIOError:
                found = st.st_mtime_ns if found is None else min(found, st.st_mtime_ns)
        finally:
            os.close(fd)
    return found
