"""cgroup v1 driver: one directory per controller, same path in each tree.

Used on v1 and hybrid hosts. Quirks it handles:
- a new cpuset group starts with empty cpuset.cpus/mems and refuses processes
  until they are filled, so every level we create copies them from its parent;
- memory.limit_in_bytes may never exceed memory.memsw.limit_in_bytes (memory
  plus swap), so the two are written in whichever order keeps that true;
- devices: `devices.deny a` then the OCI rules in order, Docker's allow-list
  being one such list (limits.DEFAULT_DEVICES);
- killing: freeze (freezer.state FROZEN), signal, thaw.
"""
import os

from .cgroups import V1_CONTROLLERS, Cgroup, MinidockerError, keyed, mounts, number, read, write


class CgroupV1(Cgroup):
    def __init__(self, path: str):
        super().__init__(path)
        v1, v2 = mounts()
        rel = self.path.lstrip("/")
        # one entry per mount: cpu and cpuacct may share a tree ("cpu,cpuacct")
        self.dir = {c: os.path.join(v1[c], rel) for c in V1_CONTROLLERS if c in v1}
        self.dirs = list(dict.fromkeys(self.dir.values()))
        if v2:  # hybrid: also join the v2 tree, which only groups processes
            self.dirs.append(os.path.join(v2, rel))

    def _make(self) -> None:
        for d in self.dirs:
            if d == self.dir.get("cpuset"):
                _make_cpuset(d)
            else:
                os.makedirs(d, exist_ok=True)

    def _file(self, controller: str, name: str) -> str:
        return os.path.join(self.dir[controller], name)

    def _apply(self, r: dict) -> None:
        mem = r.get("memory") or {}
        if mem.get("limit") is not None or mem.get("swap") is not None:
            self._set_memory(mem.get("limit"), mem.get("swap"))
        cpu = r.get("cpu") or {}
        if cpu.get("shares"):
            write(self._file("cpu", "cpu.shares"), cpu["shares"])
        if cpu.get("period"):
            write(self._file("cpu", "cpu.cfs_period_us"), cpu["period"])
        if cpu.get("quota") is not None:
            write(self._file("cpu", "cpu.cfs_quota_us"), cpu["quota"] if cpu["quota"] > 0 else -1)
        for key in ("cpus", "mems"):
            if cpu.get(key):
                write(self._file("cpuset", "cpuset." + key), cpu[key])
        limit = (r.get("pids") or {}).get("limit")
        if limit is not None:
            write(self._file("pids", "pids.max"), limit if limit > 0 else "max")
        if r.get("devices") is not None:
            for rule in r["devices"]:
                kind = "devices.allow" if rule.get("allow") else "devices.deny"
                write(self._file("devices", kind), device_rule(rule))

    def _set_memory(self, limit, swap) -> None:
        memsw = self._file("memory", "memory.memsw.limit_in_bytes")
        steps = []
        if limit is not None:
            steps.append(("memory.limit_in_bytes", limit))
        if swap is not None and os.path.exists(memsw):  # absent without swap accounting
            steps.append(("memory.memsw.limit_in_bytes", swap))
        try:
            for name, value in steps:
                write(self._file("memory", name), value)
        except MinidockerError:
            # raising the limit above the old memsw: memsw has to go first
            for name, value in reversed(steps):
                write(self._file("memory", name), value)

    def oom_killed(self) -> bool:
        """True if the kernel's OOM killer killed a process of this group."""
        return keyed(self._file("memory", "memory.oom_control")).get("oom_kill", 0) > 0

    def stats(self) -> dict:
        """CPU time, memory and pids counters and limits (None = unlimited)."""
        return {
            "cpu_usage_ns": int(read(self._file("cpuacct", "cpuacct.usage"))),
            "cpu_throttled": keyed(self._file("cpu", "cpu.stat")).get("nr_throttled", 0),
            "memory_usage": int(read(self._file("memory", "memory.usage_in_bytes"))),
            "memory_limit": number(read(self._file("memory", "memory.limit_in_bytes"))),
            "pids_current": int(read(self._file("pids", "pids.current"))),
            "pids_limit": number(read(self._file("pids", "pids.max"))),
        }

    def _freeze(self, frozen: bool) -> None:
        if "freezer" not in self.dir or not os.path.isdir(self.dir["freezer"]):
            return
        state = self._file("freezer", "freezer.state")
        want = "FROZEN" if frozen else "THAWED"
        write(state, want)
        self._wait(lambda: read(state) == want, want.lower())


def device_rule(rule: dict) -> str:
    """An OCI device rule as a v1 devices.allow/deny line: 'c 1:3 rwm', 'a'."""
    kind = rule.get("type") or "a"
    if kind == "a":
        return "a"

    def num(n):
        return "*" if n is None or n < 0 else str(n)
    return f"{kind} {num(rule.get('major'))}:{num(rule.get('minor'))} {rule.get('access') or 'rwm'}"


def _make_cpuset(d: str) -> None:
    parent = os.path.dirname(d)
    if not os.path.isdir(parent):
        _make_cpuset(parent)
    if not os.path.isdir(d):
        os.makedirs(d, exist_ok=True)
    for name in ("cpuset.cpus", "cpuset.mems"):
        if not read(os.path.join(d, name)):
            write(os.path.join(d, name), read(os.path.join(parent, name)))
