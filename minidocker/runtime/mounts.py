"""The container's root filesystem: mounts, pivot_root, masked and read-only paths.

Every mount target is resolved by the kernel *inside* the rootfs
(openat2 RESOLVE_IN_ROOT), then mounted through /proc/self/fd/N. A symlink the
image planted (`/data -> /`, `../../etc`) therefore lands inside the rootfs,
never on the host. /proc, /sys and /dev as symlinks are refused outright, as
runc does ("must be mounted on ordinary directory").
"""
import errno
import os
import stat

from ..errors import MinidockerError
from . import linux
from .linux import (MNT_DETACH, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE,
                    MS_RDONLY, MS_REC, MS_REMOUNT, MS_SLAVE, mount)

_FLAGS = {  # option -> (set, flag); "rw" style options clear a flag
    "ro": (True, MS_RDONLY), "rw": (False, MS_RDONLY),
    "nosuid": (True, MS_NOSUID), "suid": (False, MS_NOSUID),
    "nodev": (True, MS_NODEV), "dev": (False, MS_NODEV),
    "noexec": (True, MS_NOEXEC), "exec": (False, MS_NOEXEC),
    "sync": (True, linux.MS_SYNCHRONOUS), "async": (False, linux.MS_SYNCHRONOUS),
    "dirsync": (True, linux.MS_DIRSYNC), "mand": (True, linux.MS_MANDLOCK),
    "noatime": (True, linux.MS_NOATIME), "atime": (False, linux.MS_NOATIME),
    "nodiratime": (True, linux.MS_NODIRATIME), "diratime": (False, linux.MS_NODIRATIME),
    "relatime": (True, linux.MS_RELATIME), "norelatime": (False, linux.MS_RELATIME),
    "strictatime": (True, linux.MS_STRICTATIME), "nostrictatime": (False, linux.MS_STRICTATIME),
    "bind": (True, MS_BIND), "rbind": (True, MS_BIND | MS_REC),
}
_PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC, "shared": linux.MS_SHARED, "rshared": linux.MS_SHARED | MS_REC,
    "unbindable": linux.MS_UNBINDABLE, "runbindable": linux.MS_UNBINDABLE | MS_REC,
}
_ST_FLAGS = {os.ST_RDONLY: MS_RDONLY, os.ST_NOSUID: MS_NOSUID, os.ST_NODEV: MS_NODEV,
             os.ST_NOEXEC: MS_NOEXEC, os.ST_NOATIME: linux.MS_NOATIME,
             os.ST_NODIRATIME: linux.MS_NODIRATIME, os.ST_RELATIME: linux.MS_RELATIME}


def parse_options(options):
    """OCI mount options -> (mount flags, propagation flags, data string)."""
    flags, propagation, data = 0, 0, []
    for opt in options or ():
        if opt in _FLAGS:
            on, bit = _FLAGS[opt]
            flags = flags | bit if on else flags & ~bit
        elif opt in _PROPAGATION:
            propagation |= _PROPAGATION[opt]
        else:
            data.append(opt)
    return flags, propagation, ",".join(data) or None


def fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def open_in_root(rootfd: int, path: str, create=None) -> int:
    """An O_PATH fd for `path` resolved inside the root; create="dir"/"file" makes it."""
    resolve = linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS
    try:
        return linux.openat2(rootfd, path, os.O_PATH, resolve)
    except FileNotFoundError:
        if not create:
            raise
    parent, name = os.path.split(os.path.normpath("/" + path.lstrip("/")))
    if name in ("", "..", "."):
        raise MinidockerError(f"cannot create {path} in the container")
    pfd = open_in_root(rootfd, parent, "dir")
    try:
        if create == "dir":
            os.mkdir(name, 0o755, dir_fd=pfd)
        else:
            os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC,
                             0o644, dir_fd=_dirfd(pfd)))
    except FileExistsError:
        pass  # created by someone else meanwhile, or a dangling symlink: resolve again
    finally:
        os.close(pfd)
    return linux.openat2(rootfd, path, os.O_PATH, resolve)


def _dirfd(opath_fd: int) -> int:
    # open(O_CREAT) needs a real directory fd; reopen the O_PATH one through procfs.
    return os.open(fd_path(opath_fd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def refuse_symlinks(rootfs: str) -> None:
    """Refuse an image whose /proc, /sys or /dev is a symlink (CVE-2019-19921 class)."""
    for name in ("proc", "sys", "dev"):
        try:
            st = os.lstat(os.path.join(rootfs, name))
        except FileNotFoundError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise MinidockerError(f"/{name} in the container image must be an ordinary "
                                  f"directory, not a {'symlink' if stat.S_ISLNK(st.st_mode) else 'file'}")


def prepare_root(rootfs: str, propagation: str = "") -> int:
    """Stop mounts leaking to the host, bind the rootfs on itself; return an fd of it."""
    # With a shared host / every mount below would propagate out; rslave first.
    mount(None, "/", None, _PROPAGATION.get(propagation) or MS_SLAVE | MS_REC)
    mount(rootfs, rootfs, None, MS_BIND | MS_REC)  # pivot_root needs a mount point
    return os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def mount_one(rootfd: int, m: dict, cgroup_mounter=None) -> None:
    """Mount one OCI `mounts[]` entry inside the root."""
    dest, mtype, source = m["destination"], m.get("type") or "", m.get("source")
    flags, propagation, data = parse_options(m.get("options"))
    if mtype in ("cgroup", "cgroup2") and cgroup_mounter:
        return cgroup_mounter(rootfd, dest, flags)
    is_bind = bool(flags & MS_BIND)
    if is_bind:
        if not os.path.exists(source):
            raise MinidockerError(f"bind mount source {source} does not exist")
        kind = "dir" if os.path.isdir(source) else "file"
    else:
        kind = "dir"
    fd = open_in_root(rootfd, dest, kind)
    try:
        if is_bind:
            mount(source, fd_path(fd), None, flags & (MS_BIND | MS_REC))
        else:
            mount(source or mtype, fd_path(fd), mtype, flags, data)
    finally:
        os.close(fd)
    extra = flags & ~(MS_BIND | MS_REC)
    if (is_bind and extra) or propagation:
        fd = open_in_root(rootfd, dest)  # now resolves to the new mount, not the one below
        try:
            if is_bind and extra:
                mount(None, fd_path(fd), None, MS_BIND | MS_REMOUNT | extra | _flags_of(fd_path(fd)))
            if propagation:
                mount(None, fd_path(fd), None, propagation)
        finally:
            os.close(fd)


def _flags_of(path: str) -> int:
    """The mount flags `path` has now (a bind remount must repeat locked ones)."""
    f = os.statvfs(path).f_flag
    return sum(bit for st, bit in _ST_FLAGS.items() if f & st) & ~MS_RDONLY


def pivot(rootfs: str) -> None:
    """pivot_root into `rootfs` and detach the old root (the "." "." trick, no temp dir)."""
    oldroot = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.chdir(rootfs)
        linux.pivot_root(".", ".")
        os.fchdir(oldroot)  # the old root is now stacked on top of "."
        mount(None, ".", None, MS_SLAVE | MS_REC)  # its unmount must not reach the host
        linux.umount2(".", MNT_DETACH)
    finally:
        os.close(oldroot)
    os.chdir("/")


def mask(paths, null_fd: int) -> None:
    """Hide paths: /dev/null over files, an empty read-only tmpfs over directories."""
    for path in paths or ():
        try:
            st = os.stat(path, follow_symlinks=False)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISDIR(st.st_mode):
            mount("tmpfs", path, "tmpfs", MS_RDONLY)
        else:
            mount(fd_path(null_fd), path, None, MS_BIND)


def readonly(paths) -> None:
    """Bind each path onto itself read-only."""
    for path in paths or ():
        try:
            mount(path, path, None, MS_BIND | MS_REC)
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                continue
            raise
        mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | _flags_of(path))


def readonly_root() -> None:
    """Make the container's / read-only (root.readonly)."""
    mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | _flags_of("/"))
