"""The container's /dev: a fresh tmpfs with only the device nodes the OCI spec names.

The image's own /dev is never used: a tmpfs goes on top before anything is
created, so a `/dev -> /host/path` symlink in the image cannot steer our mknod
or symlink calls out of the container (CVE-2026-41579).
"""
import os
import stat

from ..errors import MinidockerError
from .mounts import fd_path, open_in_root

# What every Linux container gets (runtime-spec config-linux.md "Default Devices").
DEFAULT_DEVICES = [
    {"path": "/dev/null", "type": "c", "major": 1, "minor": 3},
    {"path": "/dev/zero", "type": "c", "major": 1, "minor": 5},
    {"path": "/dev/full", "type": "c", "major": 1, "minor": 7},
    {"path": "/dev/random", "type": "c", "major": 1, "minor": 8},
    {"path": "/dev/urandom", "type": "c", "major": 1, "minor": 9},
    {"path": "/dev/tty", "type": "c", "major": 5, "minor": 0},
]
LINKS = {"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
         "/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2",
         "/dev/ptmx": "pts/ptmx"}
_TYPES = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def create_devices(rootfd: int, devices) -> None:
    """mknod the default devices and config's linux.devices inside the root's /dev."""
    seen = set()
    for dev in list(devices or ()) + DEFAULT_DEVICES:
        path = os.path.normpath("/" + dev["path"].lstrip("/"))
        if path in seen:
            continue  # config's entry wins over our default
        seen.add(path)
        if not path.startswith("/dev/"):
            raise MinidockerError(f"device {path} is not under /dev")
        if dev.get("type", "c") not in _TYPES:
            raise MinidockerError(f"device {path} has unknown type {dev.get('type')!r}")
        parent, name = os.path.split(path)
        pfd = open_in_root(rootfd, parent, "dir")
        dfd = os.open(fd_path(pfd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            mode = _TYPES[dev.get("type", "c")] | (dev.get("fileMode") or 0o666)
            rdev = os.makedev(dev.get("major", 0), dev.get("minor", 0))
            os.mknod(name, mode, rdev, dir_fd=dfd)
            os.chown(name, dev.get("uid", 0), dev.get("gid", 0), dir_fd=dfd, follow_symlinks=False)
        finally:
            os.close(dfd)
            os.close(pfd)


def create_links(rootfd: int) -> None:
    """The symlinks programs expect: /dev/fd, /dev/std{in,out,err}, /dev/ptmx."""
    pfd = open_in_root(rootfd, "/dev")
    dfd = os.open(fd_path(pfd), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for link, target in LINKS.items():
            try:
                os.symlink(target, os.path.basename(link), dir_fd=dfd)
            except FileExistsError:
                pass  # a config mount or device already put something there
    finally:
        os.close(dfd)
        os.close(pfd)


def checked_null() -> int:
    """An O_PATH fd of the container's /dev/null, checked to be the real char 1:3."""
    fd = os.open("/dev/null", os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        os.close(fd)
        raise MinidockerError("/dev/null in the container is not the null device")
    return fd
