"""cgroup v2 driver: one tree, controllers handed down through subtree_control.

- A group only gets the memory, pids, cpu and cpuset files if every ancestor
  lists them in cgroup.subtree_control, so create() enables them level by level.
- "No internal processes": a group with processes cannot hand controllers to
  children (the root is exempt), which is why containers are leaves.
- Limits: memory.max; memory.swap.max counts swap alone (OCI's memory.swap is
  memory + swap, as in v1); cpu.max "quota period"; cpu.weight from shares.
- Devices: v2 has no devices files; the kernel asks an eBPF CGROUP_DEVICE
  program instead, which we cannot load from plain Python here. Fallback: the
  device rules are NOT enforced by the cgroup. The runtime keeps devices safe
  by creating only the OCI spec's nodes in the container's /dev and dropping
  nothing extra: a container without CAP_MKNOD cannot make others, and a
  `nodev` mount cannot open them (security.md A8).
- Killing: cgroup.kill for SIGKILL (Linux 5.14+), else cgroup.freeze, signal, thaw.
"""
import os
import signal

from .cgroups import Cgroup, MinidockerError, keyed, mounts, number, read, write

CONTROLLERS = ("cpuset", "cpu", "memory", "pids")


class CgroupV2(Cgroup):
    def __init__(self, path: str):
        super().__init__(path)
        self.root = mounts()[1]
        self.dir = os.path.join(self.root, self.path.lstrip("/"))
        self.dirs = [self.dir]

    def _make(self) -> None:
        level = self.root
        for part in self.path.strip("/").split("/"):
            available = read(os.path.join(level, "cgroup.controllers")).split()
            enabled = read(os.path.join(level, "cgroup.subtree_control")).split()
            for c in CONTROLLERS:
                if c in available and c not in enabled:
                    try:
                        write(os.path.join(level, "cgroup.subtree_control"), "+" + c)
                    except MinidockerError as e:
                        if "busy" not in str(e):
                            raise
                        raise MinidockerError(
                            f"cgroup {level} holds processes, so it cannot hand the {c} controller "
                            f"to a child (cgroup v2: no internal processes); choose a cgroup path "
                            f"under an empty parent", 125) from None
            level = os.path.join(level, part)
            os.makedirs(level, exist_ok=True)

    def _file(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def _apply(self, r: dict) -> None:
        mem = r.get("memory") or {}
        if mem.get("limit") is not None:
            write(self._file("memory.max"), mem["limit"] if mem["limit"] > 0 else "max")
        swap = mem.get("swap")
        if swap is not None and os.path.exists(self._file("memory.swap.max")):
            limit = mem.get("limit") or number(read(self._file("memory.max")))
            write(self._file("memory.swap.max"), "max" if swap < 0 or limit is None else swap - limit)
        cpu = r.get("cpu") or {}
        if cpu.get("shares"):
            write(self._file("cpu.weight"), shares_to_weight(cpu["shares"]))
        if cpu.get("quota") is not None or cpu.get("period"):
            old_quota, old_period = read(self._file("cpu.max")).split()
            quota = cpu.get("quota", old_quota)
            quota = "max" if quota in (None, "max") or int(quota) <= 0 else quota
            write(self._file("cpu.max"), f"{quota} {cpu.get('period') or old_period}")
        for key in ("cpus", "mems"):
            if cpu.get(key):
                write(self._file("cpuset." + key), cpu[key])
        limit = (r.get("pids") or {}).get("limit")
        if limit is not None:
            write(self._file("pids.max"), limit if limit > 0 else "max")
        # r["devices"]: not enforceable without eBPF; see the module docstring

    def oom_killed(self) -> bool:
        """True if the kernel's OOM killer killed a process of this group."""
        return keyed(self._file("memory.events")).get("oom_kill", 0) > 0

    def stats(self) -> dict:
        """CPU time, memory and pids counters and limits (None = unlimited)."""
        cpu = keyed(self._file("cpu.stat"))
        return {
            "cpu_usage_ns": cpu["usage_usec"] * 1000,
            "cpu_throttled": cpu.get("nr_throttled", 0),
            "memory_usage": int(read(self._file("memory.current"))),
            "memory_limit": number(read(self._file("memory.max"))),
            "pids_current": int(read(self._file("pids.current"))),
            "pids_limit": number(read(self._file("pids.max"))),
        }

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal every process in the group and below it."""
        if sig == signal.SIGKILL and os.path.exists(self._file("cgroup.kill")):
            write(self._file("cgroup.kill"), 1)  # the kernel does freeze-kill-thaw itself
        else:
            super().kill(sig)

    def _freeze(self, frozen: bool) -> None:
        if not os.path.isdir(self.dir):
            return
        write(self._file("cgroup.freeze"), int(frozen))
        self._wait(lambda: keyed(self._file("cgroup.events")).get("frozen") == int(frozen),
                   "freeze" if frozen else "thaw")


def shares_to_weight(shares: int) -> int:
    """v1 cpu.shares (2..262144, default 1024) to v2 cpu.weight (1..10000), as runc maps it."""
    return 1 + ((shares - 2) * 9999) // 262142
