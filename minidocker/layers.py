"""Image layers: a tar of changes, unpacked safely into a directory.

A layer is a tar (plain, gzip or zstd) of the files one build step added or
changed. Deletions travel as empty marker files: `.wh.NAME` deletes NAME from
the layers below, `DIR/.wh..wh..opq` hides everything the layers below had in
DIR. We unpack a layer as an *overlay layer*: the markers become what the
kernel's overlayfs understands (a 0/0 character device, the xattr
`trusted.overlay.opaque=y`), so the unpacked directories can be stacked by an
overlay mount as they are. The flattened mode applies a layer onto a root
filesystem instead, deleting for real (tests and comparisons with umoci).

A layer comes from the network: every name in it is hostile until proven
otherwise. We never build a path and hand it to open(): every directory is
reached from the root one component at a time, without following symlinks,
and a symlink met on the way is resolved by hand as if the root were `/`.
Names with `..`, absolute names, and links that would climb out of the root
are refused. The safe-path machinery lives in `confined.py`, the tar reading
in `tarstream.py`, the way back (upper dir to tar) in `changes.py`.
"""
import gzip
import io
import os
import stat
import tarfile

import zstandard

from .confined import Confined, split_name
from .errors import MinidockerError
from .tarstream import CHUNK, Entry, Source, entries

WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def open_layer(fileobj):
    """A readable stream of the layer's tar, decompressed according to its first bytes."""
    buffered = fileobj if hasattr(fileobj, "peek") else io.BufferedReader(fileobj, CHUNK)
    magic = buffered.peek(4)[:4]
    if len(magic) < 4:   # a network stream may hand out its first bytes one by one
        magic = buffered.read(4)
        buffered = io.BufferedReader(_Rejoined(magic, buffered), CHUNK)
    if magic.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    if magic == ZSTD_MAGIC:
        reader = zstandard.ZstdDecompressor().stream_reader(buffered, read_across_frames=True, closefd=False)
        return io.BufferedReader(reader, CHUNK)
    return buffered


class _Rejoined(io.RawIOBase):
    """`head` (already read) followed by the rest of `stream`."""

    def __init__(self, head, stream):
        self.head, self.stream = head, stream

    def readable(self):
        return True

    def readinto(self, buf):
        if self.head:
            n = min(len(buf), len(self.head))
            buf[:n], self.head = self.head[:n], self.head[n:]
            return n
        data = self.stream.read(len(buf))
        buf[:len(data)] = data
        return len(data)


def parse_whiteout(base: str, entry: str = None):
    """('opaque', None), ('whiteout', NAME), ('meta', None) or None for an ordinary name."""
    if not base.startswith(WHITEOUT):
        return None
    if base == OPAQUE:
        return ("opaque", None)
    if base.startswith(WHITEOUT + WHITEOUT):
        return ("meta", None)   # aufs bookkeeping (.wh..wh.plnk...): nothing to apply
    target = base[len(WHITEOUT):]
    if target in ("", ".", ".."):
        raise MinidockerError(f"layer entry {entry or base!r}: invalid whiteout name")
    return ("whiteout", target)


def kept_xattr(name: str) -> bool:
    """Whether an xattr from a tar may be restored: never trusted.* (overlay's own)."""
    return name.startswith("user.") or name == "security.capability"


def unpack(stream, dest, *, flatten=False) -> str:
    """Apply the layer tar in `stream` onto `dest` (created if missing); return its diff_id."""
    source = Source(open_layer(stream))
    os.makedirs(dest, mode=0o755, exist_ok=True)
    with Confined(dest) as root:
        applier = _Applier(root, flatten)
        try:
            for entry in entries(source):
                applier.apply(entry)
            applier.finish()
        except RecursionError:
            raise MinidockerError(f"layer entry {root.where!r}: directories nested too deeply") from None
    source.drain()
    return "sha256:" + source.sha.hexdigest()


class _Applier:
    """Turns entries into files under a Confined root, layer.md's rules included."""

    def __init__(self, root: Confined, flatten: bool):
        self.root, self.flatten = root, flatten
        self.seen = set()        # paths this layer wrote or passed through: whiteouts spare them
        self.dir_times = []      # directory mtimes, set last: writing into a dir changes its own

    def apply(self, e: Entry) -> None:
        """Apply one entry; a failing system call is reported with the entry's name."""
        try:
            self._apply(e)
        except (OSError, OverflowError) as err:
            why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            raise MinidockerError(f"layer entry {e.name!r}: {why}") from None

    def _apply(self, e: Entry) -> None:
        self.root.begin(e.name)
        if "\0" in e.name or "\0" in e.linkname:
            raise MinidockerError(f"layer entry {e.name!r}: NUL in a name")
        parts = tuple(split_name(e.name))
        if not parts:
            if e.info.type != tarfile.DIRTYPE:
                raise MinidockerError(f"layer entry {e.name!r}: only a directory may name the root")
            self.root.set_attrs(self.root.fd, e.uid, e.gid, e.mode, self._xattrs(e))
            self.dir_times.append(((), e.atime_ns, e.mtime_ns))
            return
        *dirs, base = parts
        marker = parse_whiteout(base, e.name)
        if marker:
            return self._marker(e, dirs, marker)
        for i in range(len(parts), 0, -1):
            if parts[:i] in self.seen:
                break
            self.seen.add(parts[:i])
        self._create(e, parts)

    def _create(self, e, parts) -> None:
        r, t = self.root, e.info.type
        if t in tarfile.REGULAR_TYPES:
            fd = r.create_file(parts)
            try:
                e.write_data(fd)
                r.set_attrs(fd, e.uid, e.gid, e.mode, self._xattrs(e))
                os.utime(fd, ns=(e.atime_ns, e.mtime_ns))
            finally:
                os.close(fd)
        elif t == tarfile.DIRTYPE:
            fd = r.make_dir(parts)
            try:
                r.set_attrs(fd, e.uid, e.gid, e.mode, self._xattrs(e))
            finally:
                os.close(fd)
            self.dir_times.append((parts, e.atime_ns, e.mtime_ns))
        elif t == tarfile.SYMTYPE:
            if not e.linkname:
                raise MinidockerError(f"layer entry {e.name!r}: symlink with an empty target")
            r.make_symlink(parts, e.linkname)
            r.set_path_attrs(parts, e.uid, e.gid, None, self._xattrs(e), (e.atime_ns, e.mtime_ns))
        elif t == tarfile.LNKTYPE:
            target = split_name(e.linkname, e.name)
            if not target or tuple(target) == parts:
                raise MinidockerError(f"layer entry {e.name!r}: bad hardlink target {e.linkname!r}")
            r.make_hardlink(parts, tuple(target))
        elif t in (tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE):
            kind = {tarfile.CHRTYPE: stat.S_IFCHR, tarfile.BLKTYPE: stat.S_IFBLK}.get(t, stat.S_IFIFO)
            major, minor = e.info.devmajor, e.info.devminor
            if kind != stat.S_IFIFO and not (0 <= major < 1 << 12 and 0 <= minor < 1 << 20):
                raise MinidockerError(f"layer entry {e.name!r}: invalid device number {major}:{minor}")
            r.make_node(parts, kind, os.makedev(major, minor) if kind != stat.S_IFIFO else 0)
            r.set_path_attrs(parts, e.uid, e.gid, e.mode, self._xattrs(e), (e.atime_ns, e.mtime_ns))
        else:
            raise MinidockerError(f"layer entry {e.name!r}: unsupported tar type {t!r}")

    def _marker(self, e, dirs, marker) -> None:
        kind, name = marker
        r = self.root
        if kind == "meta":
            return
        if kind == "whiteout":
            path = tuple(dirs) + (name,)
            if path in self.seen:
                return   # a whiteout never deletes its own layer's files (layer.md)
            if self.flatten:
                r.remove(path)
            else:
                r.make_whiteout(path, e.uid, e.gid)
            return
        fd = r.make_dir(tuple(dirs), 0o755)   # opaque: DIR/.wh..wh..opq (a dir entry may set the mode)
        try:
            if self.flatten:
                r.prune(fd, tuple(dirs), self.seen)
            else:
                os.setxattr(fd, OPAQUE_XATTR, b"y")
        finally:
            os.close(fd)
        self.seen.add(tuple(dirs))

    def _xattrs(self, e) -> dict:
        return {k: v for k, v in e.xattrs.items() if kept_xattr(k)}

    def finish(self) -> None:
        """Directory times last: creating their content has changed them."""
        for parts, atime, mtime in self.dir_times:
            self.root.set_dir_time(parts, (atime, mtime))
