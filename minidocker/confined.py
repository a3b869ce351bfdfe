"""Paths resolved inside a root directory, as if it were `/`: no way out.

`open("dest/" + name)` lets a hostile layer write anywhere: `../x` climbs out,
and a symlink `etc -> /` planted by an earlier entry turns `etc/passwd` into
the host's. So we walk from a descriptor of the root, one component at a time,
with O_NOFOLLOW; a symlink met on the way is read and resolved by hand, an
absolute one from the root, and `..` at the root is refused rather than clamped.
Every change is then made relative to the parent's descriptor (`dir_fd=`).

The kernel's own version of this walk, openat2(RESOLVE_IN_ROOT), is in
openat2.py: it clamps instead of refusing, and the tests use it as an oracle.
"""
import errno
import os
import stat

from .errors import MinidockerError
from .openat2 import open_to_remove, remove_tree_at

O_PATH_DIR = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_REAL_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_LINKS = 40          # like the kernel's ELOOP limit
MAX_CACHED = 4096


def split_name(name: str, entry: str = None) -> list:
    """The components of a tar member name (or of `entry`'s link target); no absolute names, no `..`."""
    what = f"layer entry {name!r}" if entry is None else f"layer entry {entry!r}: link target {name!r}"
    if name.startswith("/"):
        raise MinidockerError(f"{what}: absolute path refused")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise MinidockerError(f"{what}: '..' in a path refused")
    return parts


class Confined:
    """A root directory and the operations a layer needs, each confined to it."""

    def __init__(self, path):
        self.fd = os.open(path, O_REAL_DIR)
        st = os.fstat(self.fd)
        self.root_id = (st.st_dev, st.st_ino)
        self.where = ""          # the entry being applied, for error messages
        self._dirs = {(): self.fd}
        self._stale = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._forget()
        for fd in self._stale:
            os.close(fd)
        os.close(self.fd)

    def _fail(self, why):
        raise MinidockerError(f"layer entry {self.where!r}: {why}")

    # -- walking -----------------------------------------------------------

    def dir(self, parts, create=True):
        """Descriptor (O_PATH, cached) of directory `parts`, or None if missing and not `create`."""
        parts = tuple(parts)
        if len(self._dirs) > MAX_CACHED:
            self._forget()
        known = len(parts)
        while parts[:known] not in self._dirs:   # () always is
            known -= 1
        fd = self._dirs[parts[:known]]
        for i in range(known, len(parts)):
            fd = self._step(fd, parts[i], create, 0)
            if fd is None:
                return None
            self._dirs[parts[:i + 1]] = fd
        return fd

    def _step(self, pfd, name, create, links):
        try:
            return os.open(name, O_PATH_DIR, dir_fd=pfd)
        except FileNotFoundError:
            if not create:
                return None
            os.mkdir(name, 0o755, dir_fd=pfd)
            os.chmod(name, 0o755, dir_fd=pfd)   # a parent the tar never names: 0755 whatever the umask
            return os.open(name, O_PATH_DIR, dir_fd=pfd)
        except OSError as e:
            if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
        if not stat.S_ISLNK(os.lstat(name, dir_fd=pfd).st_mode):
            self._fail(f"{name!r} on the way is not a directory")
        if links >= MAX_LINKS:
            self._fail("too many levels of symlinks")
        return self._follow(pfd, os.readlink(name, dir_fd=pfd), create, links + 1)

    def _follow(self, pfd, target, create, links):
        """Resolve a symlink's target from `pfd`, treating the root as `/`."""
        cur = os.dup(self.fd if target.startswith("/") else pfd)
        try:
            for name in target.split("/"):
                if name in ("", "."):
                    continue
                if name == "..":
                    st = os.fstat(cur)
                    if (st.st_dev, st.st_ino) == self.root_id:
                        self._fail(f"symlink target {target!r} leads outside the layer")
                    nxt = os.open("..", O_PATH_DIR, dir_fd=cur)
                else:
                    nxt = self._step(cur, name, create, links)
                os.close(cur)
                cur = nxt
                if cur is None:
                    return None
            return cur
        except BaseException:
            if cur is not None:
                os.close(cur)
            raise

    def begin(self, name):
        """Start on the next entry: descriptors dropped during the last one can be closed now."""
        self.where = name
        for fd in self._stale:
            os.close(fd)
        self._stale = []

    def _forget(self):
        """Drop cached descriptors after a removal: a path may now lead elsewhere."""
        # closed in begin(): the current entry's code may still hold one
        self._stale.extend(fd for key, fd in self._dirs.items() if key)
        self._dirs = {(): self.fd}

    # -- changing ----------------------------------------------------------

    def _replace(self, pfd, name):
        """Make room for a new entry: dir over dir merges, anything else is removed."""
        try:
            st = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            remove_tree_at(pfd, name)
        else:
            os.unlink(name, dir_fd=pfd)
        self._forget()

    def create_file(self, parts) -> int:
        pfd, name = self.dir(parts[:-1]), parts[-1]
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            return os.open(name, flags, 0o600, dir_fd=pfd)
        except FileExistsError:
            self._replace(pfd, name)
            return os.open(name, flags, 0o600, dir_fd=pfd)

    def make_dir(self, parts, mode=0o700) -> int:
        """A real descriptor of directory `parts`, created with `mode` or kept (merged) as layer.md says."""
        if not parts:
            return os.dup(self.fd)
        pfd, name = self.dir(parts[:-1]), parts[-1]
        try:
            os.mkdir(name, 0o700, dir_fd=pfd)
        except FileExistsError:
            if stat.S_ISDIR(os.lstat(name, dir_fd=pfd).st_mode):
                return os.open(name, O_REAL_DIR, dir_fd=pfd)
            self._replace(pfd, name)
            os.mkdir(name, 0o700, dir_fd=pfd)
        fd = os.open(name, O_REAL_DIR, dir_fd=pfd)
        os.fchmod(fd, mode)
        return fd

    def make_symlink(self, parts, target):
        pfd, name = self.dir(parts[:-1]), parts[-1]
        try:
            os.symlink(target, name, dir_fd=pfd)
        except FileExistsError:
            self._replace(pfd, name)
            os.symlink(target, name, dir_fd=pfd)

    def make_hardlink(self, parts, target):
        """A hardlink to `target`, itself resolved inside the root (the link is not followed)."""
        pfd, name = self.dir(parts[:-1]), parts[-1]
        try:
            st = os.lstat(name, dir_fd=pfd)
        except FileNotFoundError:
            st = None
        tfd = self.dir(target[:-1], create=False)
        try:
            tst = tfd is not None and os.lstat(target[-1], dir_fd=tfd)
        except FileNotFoundError:
            tst = None
        if not tst:
            self._fail(f"hardlink target {'/'.join(target)!r} is not in the layer")
        if stat.S_ISDIR(tst.st_mode):
            self._fail("hardlink to a directory")
        if st and (st.st_dev, st.st_ino) == (tst.st_dev, tst.st_ino):
            return
        if st:
            self._replace(pfd, name)
            pfd, tfd = self.dir(parts[:-1]), self.dir(target[:-1], create=False)
        os.link(target[-1], name, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)

    def make_node(self, parts, kind, rdev):
        pfd, name = self.dir(parts[:-1]), parts[-1]
        try:
            os.mknod(name, kind | 0o600, rdev, dir_fd=pfd)
        except FileExistsError:
            self._replace(pfd, name)
            os.mknod(name, kind | 0o600, rdev, dir_fd=pfd)

    def make_whiteout(self, parts, uid, gid):
        """overlayfs's whiteout: a 0/0 character device owned as the tar said."""
        self.make_node(parts, stat.S_IFCHR, 0)
        pfd = self.dir(parts[:-1])
        os.chmod(parts[-1], 0, dir_fd=pfd)
        os.chown(parts[-1], uid, gid, dir_fd=pfd, follow_symlinks=False)

    def remove(self, parts):
        """rm -rf of `parts` (the last component not followed); missing is fine."""
        pfd = self.dir(parts[:-1], create=False)
        if pfd is not None:
            self._replace(pfd, parts[-1])

    def prune(self, fd, parts, keep):
        """Remove what directory `parts` (open as `fd`) holds, except paths in `keep`."""
        for entry in os.scandir(fd):
            path = parts + (entry.name,)
            if path not in keep:
                self._replace(fd, entry.name)
            elif entry.is_dir(follow_symlinks=False):
                sub = open_to_remove(fd, entry.name)
                try:
                    self.prune(sub, path, keep)
                finally:
                    os.close(sub)

    # -- attributes ----------------------------------------------------------

    def set_attrs(self, fd, uid, gid, mode, xattrs):
        """Owner, then mode (chown clears setuid), then xattrs, on an open file or dir."""
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        for key, value in xattrs.items():
            self._setxattr(fd, key, value)

    def set_path_attrs(self, parts, uid, gid, mode, xattrs, times):
        """Attributes of a symlink (mode None: links have none) or a fresh device or fifo."""
        pfd, name = self.dir(parts[:-1]), parts[-1]
        os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
        if mode is not None:
            os.chmod(name, mode, dir_fd=pfd)   # a node can't be opened safely; it is fresh, no symlink
        for key, value in xattrs.items():
            self._setxattr(f"/proc/self/fd/{pfd}/{name}", key, value, follow=False)
        os.utime(name, ns=times, dir_fd=pfd, follow_symlinks=False)

    def _setxattr(self, target, key, value, follow=True):
        try:
            os.setxattr(target, key, value, follow_symlinks=follow)
        except OSError as e:
            self._fail(f"cannot set xattr {key}: {e.strerror}")

    def set_dir_time(self, parts, times):
        if not parts:
            os.utime(self.fd, ns=times)
            return
        pfd = self.dir(parts[:-1], create=False)
        try:
            if pfd is not None and stat.S_ISDIR(os.lstat(parts[-1], dir_fd=pfd).st_mode):
                os.utime(parts[-1], ns=times, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            pass   # replaced later in the layer by something that is not a directory
