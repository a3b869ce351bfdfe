"""Images without internet: `minidocker import` and `minidocker bootstrap`.

bootstrap builds busybox:latest from the host's static busybox, in two layers
so that layer sharing and whiteouts can be seen on it from the first chapter:

    layer 1  a filesystem skeleton: directories, /etc/passwd, /etc/group,
             /etc/motd and /etc/issue
    layer 2  /bin/busybox and a symlink per applet (/bin/sh -> /bin/busybox...),
             a new /etc/motd (hides layer 1's) and /etc/.wh.issue (deletes it)

Every tar header gets the same owner and mtime, so the same busybox binary
always gives the same layers, the same config and the same image ID.
"""
import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from . import images, oci
from .errors import MinidockerError
from .store import Store
from .units import iso, now_iso

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SKELETON_DIRS = ["bin", "dev", "etc", "home", "proc", "run", "sbin", "sys", "usr", "usr/bin",
                 "usr/sbin", "var", "var/spool", "var/spool/mail", "var/www"]   # root and tmp: own modes
PASSWD = ("root:x:0:0:root:/root:/bin/sh\n"
          "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
          "nobody:x:65534:65534:nobody:/home:/bin/false\n"
          "student:x:1000:1000:A learner:/home/student:/bin/sh\n")
GROUP = "root:x:0:\ndaemon:x:1:\nwheel:x:10:root\nstudent:x:1000:\nnogroup:x:65534:\n"


def find_busybox() -> Path:
    """The host's busybox, which must be static to run inside any root."""
    for candidate in ("/bin/busybox", "/usr/bin/busybox"):
        path = Path(candidate)
        if path.exists():
            out = subprocess.run(["file", "-L", str(path)], capture_output=True, text=True).stdout \
                if shutil.which("file") else ""
            if "dynamically linked" in out:
                continue
            return path
    raise MinidockerError("no static busybox on this machine: install it with `apt-get install busybox-static`")


class _TarBuilder:
    """A layer tar written entry by entry, with fixed metadata."""

    def __init__(self, mtime: int):
        self.buffer = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buffer, mode="w", format=tarfile.PAX_FORMAT)
        self.mtime = mtime

    def _info(self, name, kind, mode):
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = kind, mode, self.mtime
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    def dir(self, name, mode=0o755):
        self.tar.addfile(self._info(name, tarfile.DIRTYPE, mode))

    def file(self, name, data: bytes, mode=0o644):
        info = self._info(name, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def symlink(self, name, target):
        info = self._info(name, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.tar.addfile(info)

    def finish(self) -> io.BytesIO:
        self.tar.close()
        self.buffer.seek(0)
        return self.buffer


def bootstrap(store: Store, tag: str = "busybox:latest") -> images.Image:
    """Build `tag` from the host's static busybox (deterministic: same binary, same ID)."""
    busybox = find_busybox()
    binary = busybox.read_bytes()
    mtime = int(busybox.stat().st_mtime)
    version = subprocess.run([str(busybox)], capture_output=True, text=True).stdout.split("\n", 1)[0]

    base = _TarBuilder(mtime)
    for d in SKELETON_DIRS:
        base.dir(d)
    base.dir("tmp", 0o1777)
    base.dir("root", 0o700)
    base.dir("home/student")
    base.file("etc/passwd", PASSWD.encode())
    base.file("etc/group", GROUP.encode())
    base.file("etc/motd", b"Welcome! This motd comes from layer 1.\n")
    base.file("etc/issue", b"This file is deleted by layer 2 with a whiteout.\n")

    top = _TarBuilder(mtime)
    top.dir("bin")
    top.file("bin/busybox", binary, 0o755)
    applets = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True).stdout.split()
    for parent in sorted({str(Path(a).parent) for a in applets} - {"bin", "."}):
        top.dir(parent)
    for applet in sorted(applets):
        if applet != "bin/busybox":
            top.symlink(applet, "/bin/busybox")
    top.dir("etc")
    top.file("etc/motd", b"Welcome! Layer 2 replaced layer 1's motd.\n")
    top.file("etc/.wh.issue", b"")

    layers, diff_ids = [], []
    for builder in (base, top):
        desc, diff_id = images.add_layer(store, builder.finish())
        layers.append(desc)
        diff_ids.append(diff_id)
    created = iso(mtime)
    config = images.new_config(diff_ids=diff_ids[:1], created_by="minidocker bootstrap: filesystem skeleton",
                               created=created)
    config = images.new_config(config, diff_ids=diff_ids[1:], created=created,
                               created_by=f"minidocker bootstrap: {version or 'busybox'} from {busybox}")
    config["config"] = {"Env": [DEFAULT_PATH], "Cmd": ["sh"]}
    return images.add(store, config, layers, tag)


def import_tar(store: Store, path: str, tag: str = None, message: str = "") -> images.Image:
    """docker import: a root filesystem tarball (plain, gzip or zstd) becomes a one-layer image."""
    from . import layers as tarlayers
    try:
        f = open(path, "rb")
    except OSError as e:
        raise MinidockerError(f"cannot read {path}: {e.strerror}") from None
    with f:
        stream = tarlayers.open_layer(f)
        head = stream.read(512)
        if len(head) < 512 or not _is_tar_header(head):
            raise MinidockerError(f"{path} is not a tar archive")
        desc, diff_id = images.add_layer(store, _Prepend(head, stream))
    config = images.new_config(diff_ids=[diff_id], created_by=f"minidocker import {os.path.basename(path)}",
                               comment=message or "Imported from " + os.path.basename(path))
    try:
        return images.add(store, config, [desc], tag)
    except MinidockerError:
        images.discard(store, [desc["digest"]])   # leave the store as it was
        raise


def _is_tar_header(block: bytes) -> bool:
    """A tar header block carries the sum of its bytes (checksum field counted as spaces)."""
    try:
        stored = int(block[148:156].split(b"\0", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(block[:148]) + 8 * 32 + sum(block[156:])


class _Prepend:
    """A stream that first gives back bytes we already read to sniff it."""

    def __init__(self, head: bytes, rest):
        self.head, self.rest = head, rest

    def read(self, n=-1):
        if self.head:
            out, self.head = self.head, b""
            return out
        return self.rest.read(n)
