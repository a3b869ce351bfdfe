"""Durable files: atomic writes, locks, crash points and removal that never
crosses into a mount.

Every piece of metadata minidocker keeps is written the same way: to a
temporary file in the same directory, flushed to disk, then renamed over the
old one. A rename is atomic, so a reader (or a crash) sees the old file or the
new one, never half of one.
"""
import contextlib
import fcntl
import json
import os
import stat
import tempfile
import threading
from pathlib import Path

from .errors import MinidockerError


def atomic_write(path, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` so that no reader ever sees a partial file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-" + path.name + "-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(path) -> None:
    """Make a rename in `path` survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path, obj, mode: int = 0o600) -> None:
    atomic_write(path, (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode(), mode)


def read_json(path):
    """Read a JSON file we wrote; a damaged one is a clear error, not a traceback."""
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise MinidockerError(f"{path} is damaged ({e.msg} at byte {e.pos})") from None


class Lock:
    """An exclusive lock on a file, between processes and between threads.

    flock() on a file of our own: fcntl/lockf locks would be dropped when any
    descriptor of the file is closed, and neither kind excludes threads of one
    process, hence the threading lock as well. Re-entrant within a thread.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._thread_lock = threading.RLock()
        self._depth = 0
        self._fd = None

    def __enter__(self):
        self._thread_lock.acquire()
        if self._depth == 0:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._fd = fd
        self._depth += 1
        return self

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0:
            os.close(self._fd)  # closing releases the flock
            self._fd = None
        self._thread_lock.release()


def crash_point(name: str) -> None:
    """Die here, as a SIGKILL would, when MINIDOCKER_CRASH_AT names this point.

    The crash-safety tests use it to stop minidocker halfway through a pull,
    a commit or an rm, then check that the next command puts things right.
    """
    if os.environ.get("MINIDOCKER_CRASH_AT") == name:
        os._exit(137)


def mounts_under(path) -> list:
    """Mount points at or below `path`, from /proc/self/mountinfo."""
    root = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point == root or point.startswith(root.rstrip("/") + "/"):
                found.append(point)
    return found


def remove_tree(path) -> None:
    """rm -rf that refuses to cross into another filesystem.

    shutil.rmtree happily descends into a bind mount and deletes the host's
    files behind it; we compare st_dev at every directory instead and stop
    with an error if anything below is still mounted.
    """
    path = Path(path)
    try:
        top = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(top.st_mode):
        os.unlink(path)
        return
    live = mounts_under(path)
    if live:
        raise MinidockerError(f"refusing to remove {path}: still mounted at {live[0]}")
    _remove_dir(path, top.st_dev)


def _remove_dir(path: Path, dev: int) -> None:
    with os.scandir(path) as entries:
        for entry in entries:
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                if st.st_dev != dev:
                    raise MinidockerError(f"refusing to remove {entry.path}: another filesystem")
                _remove_dir(Path(entry.path), dev)
            else:
                os.unlink(entry.path)
    os.rmdir(path)
