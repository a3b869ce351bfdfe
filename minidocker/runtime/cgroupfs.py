"""What the container sees at /sys/fs/cgroup.

On a cgroup v2 host with a cgroup namespace the kernel does the work: mount
cgroup2 and the container sees its own cgroup as the root. On v1 (no cgroup
namespace, like Docker on v1) we do what runc does: a tmpfs, and in it a
read-only bind of the container's own cgroup directory from each hierarchy.
"""
import os

from .linux import MS_BIND, MS_RDONLY, MS_REC, MS_REMOUNT, mount
from .mounts import fd_path, open_in_root


def _hierarchies():
    """(host mount point, hierarchy id key) of every v1 cgroup hierarchy we can see."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            fstype, _src, opts = right.split()[:3]
            if fstype == "cgroup":
                point = left.split()[4]
                subs = [o for o in opts.split(",") if o not in ("rw", "ro")]
                found.append((point, subs))
    return found


def _own_paths():
    """controller (or name=...) -> this process's cgroup path in that hierarchy."""
    paths = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            _n, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(","):
                paths[c] = path
    return paths


def mount_cgroups(rootfd: int, dest: str, flags: int, cg_path=None) -> None:
    """Mount the cgroup filesystem view at `dest` (called from the container's init).

    `cg_path` is where the container goes in every hierarchy of a controller we
    manage: the init may not have been moved there yet (init.stage)."""
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):  # v2 only: one hierarchy
        fd = open_in_root(rootfd, dest, "dir")
        try:
            mount("cgroup2", fd_path(fd), "cgroup2", flags)
        finally:
            os.close(fd)
        return
    fd = open_in_root(rootfd, dest, "dir")
    try:
        mount("tmpfs", fd_path(fd), "tmpfs", flags & ~MS_RDONLY, "mode=755")
    finally:
        os.close(fd)
    own = _own_paths()
    if cg_path:
        from .cgroups import V1_CONTROLLERS
        own.update(dict.fromkeys(V1_CONTROLLERS, cg_path))
    for point, subs in _hierarchies():
        path = next((own[s] for s in subs if s in own), None)
        if path is None:
            continue
        target = os.path.join(dest, os.path.basename(point))
        tfd = open_in_root(rootfd, target, "dir")
        try:
            mount(point + path, fd_path(tfd), None, MS_BIND | MS_REC)
        finally:
            os.close(tfd)
        tfd = open_in_root(rootfd, target)
        try:
            mount(None, fd_path(tfd), None, MS_BIND | MS_REMOUNT | flags | MS_RDONLY)
        finally:
            os.close(tfd)
    # Like runc, the tmpfs itself stays writable (it lies under read-only /sys and
    # holds nothing but mount points); each cgroup directory in it is read-only.
