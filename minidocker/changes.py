"""From an overlay upper directory back to a layer: the tar `commit` writes, and `docker diff`.

With redirect_dir, index and metacopy off (overlay.py), a container's upper
directory holds exactly its changes: new and modified files as they are,
deleted ones as 0/0 character devices, directories emptied and recreated as
opaque directories. Writing the layer is the unpack in reverse: a device
becomes an empty `.wh.NAME`, an opaque directory is followed by
`DIR/.wh..wh..opq`.

The tar is deterministic, so the same files always give the same digest:
names sorted (whiteouts first in each directory, as layer.md asks of
producers), no user or group names, whole-second mtimes, no access times,
xattrs as PAX records, hardlinks found by inode, two zero blocks at the end.
"""
import errno
import hashlib
import os
import stat
import tarfile

from .errors import MinidockerError
from .layers import OPAQUE, OPAQUE_XATTR, WHITEOUT, kept_xattr

BLOCK = 512
CHUNK = 1 << 20


def is_whiteout(st) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def is_opaque(path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _children(path):
    """(name, lstat) of a directory's entries: whiteouts first, then the rest, each sorted by bytes."""
    found = [(name, os.lstat(f"{path}/{name}")) for name in os.listdir(path)]
    return sorted(found, key=lambda ns: (not is_whiteout(ns[1]), os.fsencode(ns[0])))


def write_layer(upper, out, skip=(), hashed=True) -> str:
    """Write the changes in `upper` to `out` as a deterministic layer tar; return its diff_id.

    `skip`: paths relative to `upper` ("etc/hosts") to leave out, with what is under them.
    hashed=False: `out` hashes what it gets itself (returns None).
    """
    sha = hashlib.sha256() if hashed else None
    skip = set(skip)

    def emit(data):
        if sha:
            sha.update(data)
        out.write(data)

    links = {}

    def walk(path, rel):
        for name, st in _children(path):
            full, name_in_tar = f"{path}/{name}", f"{rel}{name}"
            if name_in_tar in skip:
                continue
            if is_whiteout(st):
                emit(_header(f"{rel}{WHITEOUT}{name}", tarfile.REGTYPE, st, mode=0o600))
                continue
            inode = (st.st_dev, st.st_ino)
            if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1 and inode in links:
                emit(_header(name_in_tar, tarfile.LNKTYPE, st, linkname=links[inode]))
                continue
            links[inode] = name_in_tar
            if stat.S_ISDIR(st.st_mode):
                emit(_header(name_in_tar, tarfile.DIRTYPE, st, xattrs=_xattrs(full)))
                if is_opaque(full):
                    emit(_header(f"{name_in_tar}/{OPAQUE}", tarfile.REGTYPE, st, mode=0o600))
                walk(full, name_in_tar + "/")
            elif stat.S_ISREG(st.st_mode):
                head = _header(name_in_tar, tarfile.REGTYPE, st, size=st.st_size, xattrs=_xattrs(full))
                if st.st_size <= CHUNK:   # most files: one read, one hash update, one write
                    emit(head + _small(full, st.st_size))
                else:
                    emit(head)
                    _copy(full, st.st_size, emit)
            elif stat.S_ISLNK(st.st_mode):
                emit(_header(name_in_tar, tarfile.SYMTYPE, st, linkname=os.readlink(full), xattrs=_xattrs(full)))
            else:
                kind = {stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE,
                        stat.S_IFIFO: tarfile.FIFOTYPE}.get(stat.S_IFMT(st.st_mode))
                if kind is None:
                    continue   # sockets do not travel in layers
                emit(_header(name_in_tar, kind, st, xattrs=_xattrs(full)))

    _guarded(walk, upper)
    emit(bytes(2 * BLOCK))
    return "sha256:" + sha.hexdigest() if sha else None


def _guarded(walk, upper):
    """Walk `upper`; a tree too deep to walk (a container can make one) is a clear error."""
    try:
        walk(os.fspath(upper), "")
    except RecursionError:
        raise MinidockerError(f"{upper}: directories nested too deeply to walk") from None
    except OSError as e:
        if e.errno != errno.ENAMETOOLONG:
            raise
        raise MinidockerError(f"{upper}: directories nested too deeply to walk ({e.strerror})") from None


def _header(name, kind, st, mode=None, size=0, linkname="", xattrs=None) -> bytes:
    mode = stat.S_IMODE(st.st_mode) if mode is None else mode
    if not xattrs:
        fast = _ustar(name, kind, mode, st, size, linkname)
        if fast is not None:
            return fast
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, size, linkname, mode
    info.uid, info.gid, info.mtime = st.st_uid, st.st_gid, int(st.st_mtime)
    info.uname = info.gname = ""
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    if xattrs:
        info.pax_headers = {"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape")
                            for k, v in sorted(xattrs.items())}
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _ustar(name, kind, mode, st, size, linkname):
    """The plain ustar header of an entry that needs no PAX record, or None if it does.

    Packed here rather than by tarfile (a commit writes one per file, and
    tarfile's general path dominates the time), field by field as POSIX
    defines them: the same bytes for the same entry on every Python version.
    """
    try:
        name_b, link_b = name.encode("ascii"), linkname.encode("ascii")
    except UnicodeEncodeError:
        return None
    if kind == tarfile.DIRTYPE:
        name_b += b"/"   # as tar writes a directory's name
    mtime, major, minor, device = int(st.st_mtime), 0, 0, bytes(16)   # device numbers: devices only
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        device = b"%07o\0%07o\0" % (major, minor)
    if (len(name_b) > 100 or len(link_b) > 100 or max(st.st_uid, st.st_gid, major, minor) >= 8 ** 7
            or size >= 8 ** 11 or not 0 <= mtime < 8 ** 11):
        return None
    head = b"".join([name_b.ljust(100, b"\0"), b"%07o\0" % mode, b"%07o\0" % st.st_uid,
                     b"%07o\0" % st.st_gid, b"%011o\0" % size, b"%011o\0" % mtime, b" " * 8, kind,
                     link_b.ljust(100, b"\0"), b"ustar\x0000", bytes(64), device]).ljust(BLOCK, b"\0")
    return head[:148] + b"%06o\0 " % sum(head) + head[156:]


def _xattrs(path) -> dict:
    names = os.listxattr(path, follow_symlinks=False)
    if not names:   # the common case
        return {}
    return {k: os.getxattr(path, k, follow_symlinks=False) for k in names if kept_xattr(k)}


def _small(path, size) -> bytes:
    """A small file's content padded to whole blocks."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        data = os.read(fd, size)
    finally:
        os.close(fd)
    if len(data) != size:
        raise OSError(f"{path} shrank while it was being committed")
    return data + bytes(-size % BLOCK)


def _copy(path, size, emit):
    with open(path, "rb") as f:
        left = size
        while left:
            data = f.read(min(left, CHUNK))
            if not data:
                raise OSError(f"{path} shrank while it was being committed")
            emit(data)
            left -= len(data)
    if size % BLOCK:
        emit(bytes(BLOCK - size % BLOCK))


def changes(upper, lowers: list, skip=()) -> list:
    """docker diff: [(kind, "/path")] with A(dded), C(hanged), D(eleted), sorted by path.

    A path is C rather than A when a lower layer has it (lowers top first). An
    opaque directory that hid a lower one is C, and what it hid is D. `skip`
    as for write_layer.
    """
    found, lowers, skip = [], [os.fspath(p) for p in lowers], {"/" + p for p in skip}

    def walk(path, rel):
        for name, st in _children(path):
            full, where = os.path.join(path, name), f"{rel}/{name}"
            if where in skip:
                continue
            below = _lower(lowers, where)
            if is_whiteout(st):
                found.append(("D", where))
                continue
            found.append(("C" if below else "A", where))
            if stat.S_ISDIR(st.st_mode):
                if below and is_opaque(full):
                    mine = set(os.listdir(full))
                    found.extend(("D", f"{where}/{n}") for n in _lower_names(lowers, where) - mine)
                walk(full, where)

    _guarded(walk, upper)
    return sorted(found, key=lambda kp: os.fsencode(kp[1]))


def _lower(lowers, where):
    """The lstat of `where` in the merged lower layers, or None (deleted or never there)."""
    for lower in lowers:
        try:
            st = os.lstat(lower + where)
            return None if is_whiteout(st) else st
        except (FileNotFoundError, NotADirectoryError):
            pass
        if is_opaque(os.path.dirname(lower + where)):
            return None
    return None


def _lower_names(lowers, where) -> set:
    names = set()
    for lower in lowers:
        try:
            names.update(n for n in os.listdir(lower + where) if _lower(lowers, f"{where}/{n}"))
        except (FileNotFoundError, NotADirectoryError):
            pass
        if is_opaque(lower + where):
            break
    return names
