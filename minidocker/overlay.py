"""Overlay mounts: image layers stacked read-only, a container's changes on top.

    mount -t overlay overlay -o lowerdir=L2:L1:L0,upperdir=U,workdir=W  TARGET

The merged view at TARGET shows the topmost version of every path; a write
copies the file up into U first, a delete leaves a whiteout (a 0/0 character
device) in U, and `rm -rf dir; mkdir dir` marks U's dir opaque. So U is
exactly the container's changes, which `commit` turns into a layer - provided
redirect_dir, index and metacopy are off (with them, U holds pointers into the
lower layers instead of plain files), which we ask for wherever the kernel
knows the options.

mount(2) takes at most one page of options. Many layers with long absolute
paths overflow it; then a helper process mounts from a directory of
one-character symlinks to the layers, passing those relative names (dockerd
keeps similar short links under overlay2/l/).
"""
import ctypes
import errno
import os
import subprocess
import sys
import tempfile

from .errors import MinidockerError
from .files import mounts_under, remove_tree

PAGE = 4096
FAITHFUL_UPPER = ("redirect_dir", "index", "metacopy")   # off: the upper dir is a plain changeset
MNT_DETACH = 2
MAX_LAYERS = 500          # overlayfs's OVL_MAX_STACK
_libc = ctypes.CDLL(None, use_errno=True)


def options(lowers, upper, work) -> str:
    """The mount data string: lowerdir (top first), upperdir, workdir, and our three `off`s."""
    for path in list(lowers) + [upper, work]:
        if any(c in str(path) for c in ",:\\"):
            raise MinidockerError(f"overlay paths may not contain ',', ':' or '\\': {path}")
    known = [f"{name}=off" for name in FAITHFUL_UPPER if os.path.exists(f"/sys/module/overlay/parameters/{name}")]
    return ",".join([f"lowerdir={':'.join(map(str, lowers))}", f"upperdir={upper}", f"workdir={work}"] + known)


def mount(lowers: list, upper, work, target) -> None:
    """Mount an overlay of `lowers` (top layer first) with `upper` and `work` at `target`."""
    if not lowers:
        raise MinidockerError("an overlay mount needs at least one lower layer")
    lowers = [os.path.abspath(p) for p in lowers]
    upper, work, target = (os.path.abspath(p) for p in (upper, work, target))
    for path in lowers + [upper, work, target]:
        if not os.path.isdir(path):
            raise MinidockerError(f"cannot mount overlay: {path} is not a directory")
    data = options(lowers, upper, work)
    if len(data) < PAGE:
        _mount(data, target)
        return
    if len(lowers) > MAX_LAYERS:
        raise MinidockerError(f"too many layers ({len(lowers)}): overlayfs stacks at most {MAX_LAYERS}")
    # one-character names: symlinks to the layers in a directory of our own, which the helper enters
    farm = tempfile.mkdtemp(prefix="minidocker-lowers-")
    try:
        names = [f"{i:x}" for i in range(len(lowers))]
        for name, path in zip(names, lowers):
            os.symlink(path, os.path.join(farm, name))
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [package_parent,
                                                                        os.environ.get("PYTHONPATH")])))
        helper = subprocess.run([sys.executable, "-m", "minidocker.overlay", options(names, upper, work), target],
                                cwd=farm, env=env, capture_output=True, text=True)
    finally:
        remove_tree(farm)   # the kernel holds the layers themselves now, not the links
    if helper.returncode:
        raise MinidockerError(helper.stderr.strip().splitlines()[-1] if helper.stderr.strip()
                              else f"cannot mount overlay at {target}")


def _mount(data: str, target: str) -> None:
    if _libc.mount(b"overlay", os.fsencode(target), b"overlay", 0, os.fsencode(data)) != 0:
        err = ctypes.get_errno()
        hint = " (see dmesg for overlayfs's reason)" if err == errno.EINVAL else ""
        raise MinidockerError(f"cannot mount overlay at {target}: {os.strerror(err)}{hint}")


def unmount(target, lazy: bool = False) -> None:
    """Unmount `target`; a busy mount is an error unless `lazy`, which detaches it instead."""
    path = os.fsencode(os.path.abspath(target))
    if _libc.umount2(path, 0) == 0:
        return
    err = ctypes.get_errno()
    if err == errno.EBUSY and lazy and _libc.umount2(path, MNT_DETACH) == 0:
        return
    if err == errno.EBUSY:
        raise MinidockerError(f"cannot unmount {target}: it is busy (a process still uses it)")
    if err == errno.EINVAL:
        raise MinidockerError(f"cannot unmount {target}: it is not a mount point")
    raise MinidockerError(f"cannot unmount {target}: {os.strerror(err)}")


def is_mounted(target) -> bool:
    """Whether something is mounted exactly at `target`."""
    return os.path.realpath(target) in mounts_under(target)


if __name__ == "__main__":
    # the helper: run with cwd = the layers' common directory, relative lowerdirs resolve from it
    try:
        _mount(sys.argv[1], sys.argv[2])
    except MinidockerError as e:
        sys.exit(str(e))
