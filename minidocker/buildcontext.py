"""The build context: the directory `build` may read, its .dockerignore, and
the tar that COPY and ADD apply onto an image.

A COPY is a small layer: we write the sources as a tar whose names already
start with the destination (`app/main.py`), then apply it onto the image with
the same safe unpacker that applies pulled layers. So a symlink in the image
(`/app -> /etc`) is resolved inside the image, never on the host.

Sources must stay inside the context: `../x`, `/etc/passwd` and a symlink
whose target leaves the context are refused, as docker refuses them.
"""
import fnmatch
import glob
import hashlib
import os
import posixpath
import re
import stat

from .errors import MinidockerError


class Ignore:
    """.dockerignore: Go-style patterns, `**` for any depth, `!` to take a path back; the last match wins."""

    def __init__(self, context):
        self.rules = []
        try:
            with open(os.path.join(context, ".dockerignore")) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            keep = line.startswith("!")
            pattern = posixpath.normpath(line.lstrip("!").strip()).lstrip("/")
            self.rules.append((keep, re.compile(_translate(pattern))))

    def excluded(self, rel: str) -> bool:
        """Whether context path `rel` (or a directory above it) is ignored."""
        parts = rel.split("/")
        out = False
        for keep, regex in self.rules:
            if any(regex.fullmatch("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
                out = not keep
        return out


def _translate(pattern: str) -> str:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.find("]", i)
            end = end if end > i else len(pattern) - 1
            out, i = out + fnmatch.translate(pattern[i:end + 1])[4:-3], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return out


def sources(root: str, pattern: str, *, context=True, ignore: Ignore = None) -> list:
    """(name, host path) of each source a COPY names, wildcards expanded, each checked to be inside `root`."""
    what = "the build context" if context else "the stage's image"
    if context and (pattern.startswith("/") or ".." in pattern.split("/")):
        raise MinidockerError(f"COPY failed: {pattern} is outside {what}", 1)
    rel = posixpath.normpath("/" + pattern).lstrip("/")
    found = sorted(glob.glob(os.path.join(root, rel))) if glob.has_magic(rel) else [os.path.join(root, rel)]
    if context and ignore:
        found = [p for p in found if os.path.relpath(p, root) == "." or not ignore.excluded(os.path.relpath(p, root))]
    real_root, out = os.path.realpath(root), []
    for path in found:
        real = os.path.realpath(path) if context else _in_root(root, os.path.relpath(path, root))
        if real != real_root and not real.startswith(real_root + "/"):
            raise MinidockerError(f"COPY failed: {pattern} points outside {what}", 1)
        if os.path.lexists(real):
            out.append((os.path.basename(path.rstrip("/")), real))
    if not out:
        raise MinidockerError(f"COPY failed: {pattern}: no such file or directory in {what}", 1)
    return out


def _in_root(root: str, rel: str) -> str:
    """`rel` resolved inside `root` as if root were `/` (an image's absolute symlinks stay in it)."""
    path = root
    for name in [p for p in rel.split("/") if p not in ("", ".")]:
        path = os.path.join(path, name)
        for _ in range(40):
            if not os.path.islink(path):
                break
            target = os.readlink(path)
            base = root if target.startswith("/") else os.path.dirname(path)
            path = os.path.normpath(os.path.join(base, target.lstrip("/")))
            if not (path + "/").startswith(os.path.realpath(root) + "/"):
                return path   # caller refuses it
    return path


class Sources:
    """What one COPY or ADD reads, walked the same way twice: by digest() for the cache key,
    and by digest(tar_file) to write the tar as well, which only a cache miss needs.

    The digest covers names, types, modes, owners, link targets and contents, not
    times: touching a file does not invalidate the cache, as in docker. An archive
    that ADD unpacks counts by its bytes. A directory brings what is under it
    (minus .dockerignore's paths), its symlinks kept as links.
    """

    def __init__(self, root: str, patterns, where: str, into_dir: bool, *, context=True, ignore: Ignore = None,
                 owner=(0, 0), unpack_archives=False):
        self.owner, self.ignore = owner, ignore if context else None
        self.real_root = os.path.realpath(root)
        self.top = []   # (destination, host path, whether to unpack it): the sources are checked here, hit or miss
        for pattern in patterns:
            for name, path in sources(root, pattern, context=context, ignore=ignore):
                if os.path.isdir(path):
                    self.top.append((where, path, False))
                else:
                    unpack = unpack_archives and is_archive(path)
                    self.top.append((where if unpack or not into_dir else posixpath.join(where, name), path, unpack))

    def members(self):
        """(name in the layer, host path, lstat, tar type, link target) of each entry, in tar order;
        tar type ARCHIVE for an archive to unpack under that name."""
        inodes = {}   # a file seen again through another hard link becomes a hard link, as tarfile does
        for dest, path, unpack in self.top:
            if unpack:
                yield dest, path, os.stat(path), ARCHIVE, ""
            else:
                yield from self._walk(path, dest, os.path.relpath(path, self.real_root), inodes)

    def _walk(self, path, name, rel, inodes):
        st = os.lstat(path)
        kind, link = _TYPES.get(stat.S_IFMT(st.st_mode)), ""
        if kind is None:
            return   # a socket: nothing a layer can hold
        if kind == REG and st.st_nlink > 1:
            link = inodes.setdefault((st.st_dev, st.st_ino), name)
            kind, link = (REG, "") if link == name else (HARDLINK, link)
        elif kind == SYMLINK:
            link = os.readlink(path)
        yield name, path, st, kind, link
        if kind == DIR:
            for child in sorted(os.listdir(path)):
                child_rel = f"{rel}/{child}" if rel != "." else child
                if not (self.ignore and self.ignore.excluded(child_rel)):
                    yield from self._walk(os.path.join(path, child), f"{name}/{child}", child_rel, inodes)

    def digest(self, tar_file=None) -> str:
        """The sources' sha256; with `tar_file`, their tar is written there too."""
        h, tar = hashlib.sha256(repr(self.owner).encode()), None
        if tar_file:
            import tarfile   # here and below, not at the top: a cached build only hashes
            tar = tarfile.open(fileobj=tar_file, mode="w|", format=tarfile.PAX_FORMAT)
        for name, path, st, kind, link in self.members():
            size = st.st_size if kind in (REG, ARCHIVE) else 0
            dev = st.st_rdev if kind in (CHAR, BLOCK) else 0
            h.update(repr((name, kind, st.st_mode & 0o7777, link, size, dev)).encode())
            if kind == ARCHIVE:
                with open(path, "rb") as f:
                    _hash_stream(f, h)
                if tar:
                    _add_archive(tar, path, name)
            elif kind == REG:
                with open(path, "rb") as f:
                    if tar:
                        tar.addfile(_info(name, st, kind, link, self.owner), _Hashing(f, h))
                    else:
                        _hash_stream(f, h)
            elif tar:
                tar.addfile(_info(name, st, kind, link, self.owner))
        if tar:
            tar.close()
        return h.hexdigest()


# tar's type flags, and ours for an archive ADD unpacks
REG, HARDLINK, SYMLINK, CHAR, BLOCK, DIR, FIFO, ARCHIVE = b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"archive"
_TYPES = {stat.S_IFREG: REG, stat.S_IFLNK: SYMLINK, stat.S_IFCHR: CHAR, stat.S_IFBLK: BLOCK,
          stat.S_IFDIR: DIR, stat.S_IFIFO: FIFO}


def _info(name, st, kind, link, owner):
    import tarfile
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, st.st_size if kind == REG else 0
    info.mode, info.mtime = st.st_mode & 0o7777, st.st_mtime
    info.uid, info.gid = owner
    if kind in (CHAR, BLOCK):
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    return info


def _add_archive(tar, path: str, dest: str):
    """ADD of a local tar (plain, gzip, bzip2, xz): its entries, re-rooted under `dest`."""
    import tarfile
    with tarfile.open(path, mode="r|*") as src:
        for info in src:
            name = info.name.lstrip("./") if info.name not in (".", "./") else ""
            info.name = f"{dest}/{name}".rstrip("/") if name else dest
            if info.islnk():
                info.linkname = f"{dest}/{info.linkname.lstrip('./')}"
            tar.addfile(info, src.extractfile(info) if info.isreg() else None)


def _hash_stream(f, h):
    while chunk := f.read(1 << 20):
        h.update(chunk)


class _Hashing:
    def __init__(self, f, h):
        self.f, self.h = f, h

    def read(self, n=-1):
        data = self.f.read(n)
        self.h.update(data)
        return data


def is_archive(path: str) -> bool:
    """Whether ADD should unpack `path`: a regular file that tarfile reads as a tar."""
    import tarfile
    return os.path.isfile(path) and tarfile.is_tarfile(path)


def owner(value: str, line: int) -> tuple:
    """COPY --chown=UID[:GID] (numeric: names would need the image's /etc/passwd); root by default."""
    if not value:
        return (0, 0)
    uid, _, gid = value.partition(":")
    if not uid.isdigit() or not (gid or uid).isdigit():
        raise MinidockerError(f"Dockerfile line {line}: --chown={value}: minidocker takes numeric ids only", 1)
    return int(uid), int(gid or uid)


def is_dir_in(image, path: str) -> bool:
    """Whether `path` is a directory in the image (the top-most layer that has it decides)."""
    if image is None:
        return False
    for lower in image.lower_dirs():
        try:
            return stat.S_ISDIR(os.lstat(os.path.join(str(lower), path.lstrip("/"))).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            continue
    return False
