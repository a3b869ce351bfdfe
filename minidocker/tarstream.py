"""Reading a tar as a stream: headers parsed as they come, data never buffered whole.

tarfile's own stream mode re-slices its whole buffer on every 512-byte header
read, and its extractors are what we must not use (see layers.py), so we read
headers with TarInfo.frombuf and fold in what precedes a member: PAX records
(long names, exact times, xattrs as SCHILY.xattr.*) and GNU long names. The
Source hashes every byte it hands out: that hash is the layer's diff_id.
"""
import hashlib
import os
import tarfile
import zlib

import zstandard

from .errors import MinidockerError

BLOCK = 512
CHUNK = 1 << 20


class Source:
    """The uncompressed tar, hashed as it is read: the hash is the diff_id."""

    def __init__(self, f):
        self.f = f
        self.sha = hashlib.sha256()

    def read(self, n: int, eof_ok=False) -> bytes:
        try:
            data = self.f.read(n)
            while len(data) < n:
                more = self.f.read(n - len(data))
                if not more:
                    if eof_ok and not data:
                        return b""
                    raise MinidockerError("layer is truncated: the tar ends in the middle of an entry")
                data += more
        except (EOFError, OSError, zlib.error, zstandard.ZstdError) as e:
            raise MinidockerError(f"layer is corrupt: {e}") from None
        self.sha.update(data)
        return data

    def drain(self) -> None:
        """Hash what follows the end-of-archive blocks: the diff_id covers every byte."""
        try:
            while True:
                data = self.f.read(CHUNK)
                if not data:
                    return
                self.sha.update(data)
        except (EOFError, OSError, zlib.error, zstandard.ZstdError) as e:
            raise MinidockerError(f"layer is corrupt: {e}") from None

    def read_into(self, fd: int, size: int) -> None:
        while size:
            view = memoryview(self.read(min(size, CHUNK)))
            size -= len(view)
            while view:
                view = view[os.write(fd, view):]


class Entry:
    """One tar member: its header (a TarInfo), xattrs, exact times, and its unread data."""

    def __init__(self, info, pax, source):
        self.info, self.source = info, source
        self.name = pax.get("path", info.name)
        self.linkname = pax.get("linkpath", info.linkname)
        self.mode = info.mode & 0o7777
        self.uid = int(pax.get("uid", info.uid))
        self.gid = int(pax.get("gid", info.gid))
        self.size = int(pax.get("size", info.size))
        if not (0 <= self.uid < 2**32 - 1 and 0 <= self.gid < 2**32 - 1 and self.size >= 0):
            raise ValueError("out of range")
        self.mtime_ns = _ns(pax["mtime"]) if "mtime" in pax else int(info.mtime) * 10**9
        self.atime_ns = _ns(pax["atime"]) if "atime" in pax else self.mtime_ns
        self.xattrs = {k[len("SCHILY.xattr."):]: v.encode("utf-8", "surrogateescape")
                       for k, v in pax.items() if k.startswith("SCHILY.xattr.")}
        self.unread = self.size if info.type in tarfile.REGULAR_TYPES else 0

    def write_data(self, fd: int) -> None:
        self.source.read_into(fd, self.unread)
        self.unread = 0

    def skip(self) -> None:
        """Read past what the applier left; only regular files carry data (as in tarfile, Go)."""
        left = self.unread + (-self.size % BLOCK) if self.info.type in tarfile.REGULAR_TYPES else 0
        while left:
            left -= len(self.source.read(min(left, CHUNK)))


def _ns(text: str) -> int:
    whole, _, frac = text.partition(".")
    sign = -1 if whole.startswith("-") else 1
    return int(whole) * 10**9 + sign * int((frac + "000000000")[:9] or 0)


def entries(source):
    """The members of a tar stream, PAX and GNU long-name headers folded in."""
    global_pax, pax, first = {}, {}, True
    while True:
        block = source.read(BLOCK, eof_ok=True)
        if not block and first:
            raise MinidockerError("layer is empty or truncated: not even a tar header")
        if not block or block == bytes(BLOCK):
            return   # end of archive (a missing end marker is tolerated, like GNU tar and Go)
        first = False
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
        except tarfile.HeaderError as e:
            raise MinidockerError(f"layer has a bad tar header: {e}") from None
        if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE,
                         tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
            data = source.read(info.size + (-info.size % BLOCK))[:info.size]
            if info.type == tarfile.XGLTYPE:
                global_pax.update(_parse_pax(data))
            elif info.type == tarfile.GNUTYPE_LONGNAME:
                pax["path"] = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            elif info.type == tarfile.GNUTYPE_LONGLINK:
                pax["linkpath"] = data.rstrip(b"\0").decode("utf-8", "surrogateescape")
            else:
                pax.update(_parse_pax(data))
            continue
        if info.type == tarfile.GNUTYPE_SPARSE or any(k.startswith("GNU.sparse") for k in pax):
            raise MinidockerError(f"layer entry {info.name!r}: sparse files are not supported")
        try:
            entry = Entry(info, {**global_pax, **pax}, source)
        except ValueError:
            raise MinidockerError(f"layer entry {info.name!r}: bad number in its header") from None
        pax = {}
        yield entry
        entry.skip()


def _parse_pax(data: bytes) -> dict:
    """Records of the form b'LEN key=value\\n'."""
    out, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            length = int(data[pos:space])
        except ValueError:
            if not data[pos:].strip(b"\0"):
                break
            raise MinidockerError("layer has a bad PAX header") from None
        record = data[space + 1:pos + length]
        if length <= 0 or pos + length > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise MinidockerError("layer has a bad PAX header")
        key, value = record[:-1].split(b"=", 1)
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out
