"""openat2(2), Linux 5.6+, through ctypes: path resolution with rules the kernel enforces.

RESOLVE_IN_ROOT resolves a path as if its starting directory were `/`: `..`
and absolute symlinks stay inside (chroot semantics, without chroot).
RESOLVE_NO_XDEV refuses to cross a mount point, any mount point: a bind mount
of the same filesystem has the same st_dev, so comparing st_dev would not
tell. We use it so that replacing a directory never empties a mount.
"""
import ctypes
import errno
import os

from .errors import MinidockerError

O_REAL_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS, RESOLVE_IN_ROOT = 0x01, 0x02, 0x04, 0x10
SYS_OPENAT2 = 437       # the same number on every architecture
_libc = ctypes.CDLL(None, use_errno=True)


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def _openat2(dirfd: int, path: str, flags: int, resolve: int) -> int:
    how = _OpenHow(flags, 0, resolve)
    fd = _libc.syscall(SYS_OPENAT2, dirfd, os.fsencode(path), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), path)
    return fd


def resolve_in_root(rootfd: int, path: str, flags: int = os.O_PATH | os.O_CLOEXEC) -> int:
    """openat2(rootfd, path, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS): a descriptor, never outside."""
    return _openat2(rootfd, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)


def open_to_remove(pfd: int, name: str) -> int:
    """Open directory `name` for emptying: never through a symlink, never into a mount (even a bind)."""
    try:
        return _openat2(pfd, name, O_REAL_DIR, RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS)
    except OSError as e:
        if e.errno == errno.EXDEV:
            raise MinidockerError(f"refusing to remove {name}: it is a mount point") from None
        if e.errno != errno.ENOSYS:
            raise
    fd = os.open(name, O_REAL_DIR, dir_fd=pfd)   # before Linux 5.6: another filesystem at least
    if os.fstat(fd).st_dev != os.fstat(pfd).st_dev:
        os.close(fd)
        raise MinidockerError(f"refusing to remove {name}: it is a mount point")
    return fd


def remove_tree_at(pfd: int, name: str) -> None:
    """rm -rf below a directory descriptor; never follows a link, never crosses a mount."""
    fd = open_to_remove(pfd, name)
    try:
        for entry in os.scandir(fd):
            if entry.is_dir(follow_symlinks=False):
                remove_tree_at(fd, entry.name)
            else:
                os.unlink(entry.name, dir_fd=fd)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=pfd)
