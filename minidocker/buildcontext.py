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
import tarfile

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


class SourceTar:
    """A tar of COPY sources under their destination names, and a hash of what they hold.

    The hash (the cache key) covers names, types, modes, owners, link targets and
    contents, not times: touching a file does not invalidate the cache, as in docker.
    """

    def __init__(self, fileobj, owner=(0, 0)):
        self.tar = tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.PAX_FORMAT)
        self.owner, self.hash = owner, hashlib.sha256()

    def add(self, path: str, dest: str, ignore: Ignore = None, context: str = None):
        """Add `path` as `dest`; a directory with everything under it (symlinks are kept as links)."""
        self._member(path, dest)
        if os.path.isdir(path) and not os.path.islink(path):
            for name in sorted(os.listdir(path)):
                child = os.path.join(path, name)
                if ignore and context and ignore.excluded(os.path.relpath(child, context)):
                    continue
                self.add(child, f"{dest}/{name}", ignore, context)

    def _member(self, path, dest):
        info = self.tar.gettarinfo(path, arcname=dest)
        if info is None:
            return   # a socket: nothing a layer can hold
        info.uid, info.gid = self.owner
        info.uname = info.gname = ""
        self.hash.update(repr((dest, info.type, info.mode, info.uid, info.gid, info.linkname, info.size)).encode())
        if info.isreg():
            with open(path, "rb") as f:
                self.tar.addfile(info, _Hashing(f, self.hash))
        else:
            self.tar.addfile(info)

    def add_archive(self, path: str, dest: str):
        """ADD of a local tar (plain, gzip, bzip2, xz): its entries, re-rooted under `dest`."""
        with open(path, "rb") as raw:
            while chunk := raw.read(1 << 20):
                self.hash.update(chunk)
        with tarfile.open(path, mode="r|*") as src:
            for info in src:
                name = info.name.lstrip("./") if info.name not in (".", "./") else ""
                info.name = f"{dest}/{name}".rstrip("/") if name else dest
                if info.islnk():
                    info.linkname = f"{dest}/{info.linkname.lstrip('./')}"
                self.tar.addfile(info, src.extractfile(info) if info.isreg() else None)

    def digest(self) -> str:
        return self.hash.hexdigest()

    def close(self):
        self.tar.close()


class _Hashing:
    def __init__(self, f, h):
        self.f, self.h = f, h

    def read(self, n=-1):
        data = self.f.read(n)
        self.h.update(data)
        return data


def is_archive(path: str) -> bool:
    """Whether ADD should unpack `path`: a regular file that tarfile reads as a tar."""
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
