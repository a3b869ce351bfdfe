"""Control groups: limit, count and kill a container's processes.

A cgroup is a directory in a special filesystem. Making the directory creates
the group; writing a PID into its `cgroup.procs` moves that process (and its
future children) in; writing into its other files sets limits; reading them
gives counters. `rmdir` removes it once no process is left.

Two versions of that filesystem exist, and a host mounts one of three layouts:

    v1      /sys/fs/cgroup/<controller>/...   one tree per controller
            (memory, pids, cpu, cpuacct, cpuset, devices, freezer); a group
            is one directory in each tree, all with the same path
    v2      /sys/fs/cgroup/...                one tree for every controller;
            a parent must list a controller in cgroup.subtree_control before
            its children get it, and only leaves hold processes
    hybrid  v1 trees plus an (almost empty) v2 tree at /sys/fs/cgroup/unified;
            we use the v1 trees for limits and also join the v2 one, so every
            line of /proc/<pid>/cgroup names the container's group

Devices: v1 enforces the OCI device rules (devices.allow/deny); v2 would need
an eBPF program, so there the rules are not enforced by the cgroup and the
runtime's /dev (only the spec's nodes, no CAP_MKNOD, nodev) is the guard; see
cgroups_v2.py.

`create(path, resources)` takes what an OCI bundle holds: `linux.cgroupsPath`
("/minidocker/<id>", always relative to the root of each tree) and
`linux.resources` (memory, cpu, pids, devices). The drivers live in
cgroups_v1.py and cgroups_v2.py; this module picks one and holds what they share.
"""
import builtins
import contextlib
import errno
import os
import signal
import time

from ..errors import MinidockerError, NotFound

V1_CONTROLLERS = ("freezer", "pids", "memory", "cpu", "cpuacct", "cpuset", "devices")
UNLIMITED = 1 << 62  # v1 reports "no memory limit" as a huge page-rounded number


def mounts() -> tuple:
    """Where cgroups are mounted: ({v1 controller: mount point}, v2 mount point or None)."""
    v1, v2 = {}, None
    with builtins.open("/proc/self/mountinfo") as f:
        for line in f:
            left, right = line.split(" - ", 1)
            point = left.split()[4].replace("\\040", " ")
            fstype, _source, options = right.split()[:3]
            if fstype == "cgroup":
                for option in options.split(","):
                    if option in V1_CONTROLLERS:
                        v1.setdefault(option, point)
            elif fstype == "cgroup2" and v2 is None:
                v2 = point
    return v1, v2


def mode() -> str:
    """"v1", "v2" or "hybrid", from what the host mounts."""
    v1, v2 = mounts()
    if v1:
        return "hybrid" if v2 else "v1"
    if v2:
        return "v2"
    raise MinidockerError("no cgroup filesystem is mounted on this host")


def create(path: str, resources: dict = None) -> "Cgroup":
    """Make the cgroup at `path` in every hierarchy and apply `resources` to it."""
    cg = _driver()(path)
    try:
        cg._make()
        if resources:
            cg._apply(resources)
    except BaseException:
        with contextlib.suppress(MinidockerError):  # the first error is the one to report
            cg.remove()
        raise
    return cg


def open(path: str) -> "Cgroup":  # noqa: A001 - the verb the interface promises
    """The existing cgroup at `path`; NotFound if no hierarchy has it."""
    cg = _driver()(path)
    if not any(os.path.isdir(d) for d in cg.dirs):
        raise NotFound(f"no such cgroup: {cg.path}")
    return cg


def _driver():
    if mode() == "v2":
        from .cgroups_v2 import CgroupV2
        return CgroupV2
    from .cgroups_v1 import CgroupV1
    return CgroupV1


def clean_path(path: str) -> str:
    """'/minidocker/abc' style path, refusing anything that could climb out with '..'."""
    parts = [p for p in str(path).split("/") if p not in ("", ".")]
    if not parts or ".." in parts:
        raise MinidockerError(f"invalid cgroup path {path!r}", 125)
    return "/" + "/".join(parts)


def read(path) -> str:
    with builtins.open(path) as f:  # this module's own open() is the cgroup verb
        return f.read().strip()


def write(path, value) -> None:
    """One write(2) per value: cgroupfs parses each write on its own."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(value).encode())
    except OSError as e:
        raise MinidockerError(f"cgroup: cannot write {value!r} to {path}: {e.strerror}", 125) from None
    finally:
        os.close(fd)


def keyed(path) -> dict:
    """A 'key value' per line file (memory.events, cpu.stat...) as a dict of ints."""
    out = {}
    for line in read(path).splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


def number(text: str):
    """A counter or limit as an int; None for 'max' or v1's unlimited marker."""
    if text == "max" or int(text) >= UNLIMITED or int(text) < 0:
        return None
    return int(text)


class Cgroup:
    """One control group, in every hierarchy the driver uses (see the module docstring)."""

    def __init__(self, path: str):
        self.path = clean_path(path)
        self.dirs = []  # the group's directory in each hierarchy; drivers fill it

    def __repr__(self):
        return f"<{type(self).__name__} {self.path}>"

    def add(self, pid: int) -> None:
        """Move process `pid` (and its future children) into this group."""
        self.mover()(pid)

    def mover(self):
        """add(), in two halves: the cgroup.procs files are opened now, and the function
        returned writes a PID to them later, even once a pivot_root in a mount namespace
        we share has taken the host's /sys away from us (init.stage)."""
        files = [(os.open(os.path.join(d, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC), d) for d in self.dirs]

        def move(pid: int) -> None:
            try:
                for fd, d in files:
                    try:
                        os.write(fd, str(pid).encode())
                    except OSError as e:
                        raise MinidockerError(f"cgroup: cannot move {pid} into {d}: {e.strerror}", 125) from None
            finally:
                for fd, _ in files:
                    os.close(fd)
        return move

    def procs(self) -> list:
        """PIDs directly in this group."""
        text = read(os.path.join(self.dirs[0], "cgroup.procs"))
        return sorted(int(p) for p in text.split())

    def all_procs(self) -> list:
        """PIDs in this group and any group below it."""
        found = []
        for top, _subdirs, _files in os.walk(self.dirs[0]):
            found += [int(p) for p in read(os.path.join(top, "cgroup.procs")).split()]
        return sorted(found)

    def update(self, resources: dict) -> None:
        """Change limits on a live group, as `docker update` does."""
        self._apply(resources)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal every process; frozen first so none can fork a child we would miss."""
        self._freeze(True)
        try:
            for pid in self.all_procs():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            self._freeze(False)

    def freeze(self) -> None:
        """Stop every process where it stands (docker pause)."""
        self._freeze(True)

    def thaw(self) -> None:
        """Let frozen processes run again (docker unpause)."""
        self._freeze(False)

    def remove(self, timeout: float = 10.0) -> None:
        """Kill what is left, then rmdir in every hierarchy (retrying EBUSY). Idempotent."""
        live = [d for d in self.dirs if os.path.isdir(d)]
        if not live:
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                if os.path.isdir(self.dirs[0]) and self.all_procs():
                    self.kill()
                for d in live:
                    _rmdir_tree(d)
                return
            except OSError as e:
                # EBUSY: killed processes are still exiting
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise MinidockerError(f"cannot remove cgroup {self.path}: {e.strerror}") from None
                time.sleep(0.02)

    def _wait(self, ready, what: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if time.monotonic() > deadline:
                raise MinidockerError(f"cgroup {self.path}: timed out waiting to {what}")
            time.sleep(0.005)


def _rmdir_tree(top: str) -> None:
    """rmdir a cgroup and the groups below it, deepest first (their files go with them)."""
    for d, _subdirs, _files in os.walk(top, topdown=False):
        try:
            os.rmdir(d)
        except FileNotFoundError:
            pass
