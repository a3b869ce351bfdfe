"""stats and update: a running container's resource use, read from its cgroup,
and its limits changed while it runs.

CPU % is docker's: CPU time the container used between two samples, divided
by the wall time between them, so 100% is one CPU busy and 200% two.
"""
import time

from .containers import Container
from .errors import Conflict, MinidockerError
from .files import read_json, write_json


def _cgroup(c: Container):
    from .runtime import cgroups
    if c.reload().status != "running":
        raise Conflict(f"container {c.name} is not running", 1)
    return cgroups.open(f"/minidocker/{c.id}")


def host_memory() -> int:
    with open("/proc/meminfo") as f:
        return int(f.readline().split()[1]) * 1024


def sample(containers, interval: float = 0.5) -> list:
    """One row of numbers per running container: cpu_percent, memory usage/limit, pids."""
    groups = {}
    for c in containers:
        try:
            groups[c] = _cgroup(c)
        except MinidockerError:
            continue
    first = {c: (g.stats(), time.monotonic()) for c, g in groups.items()}
    time.sleep(interval)
    rows = []
    for c, g in groups.items():
        try:
            now, t = g.stats(), time.monotonic()
        except (MinidockerError, OSError):
            continue   # it stopped while we watched
        before, t0 = first[c]
        limit = now["memory_limit"]
        if not limit or limit > host_memory():
            limit = host_memory()
        rows.append({"container": c, "cpu_percent": 100 * (now["cpu_usage_ns"] - before["cpu_usage_ns"]) / ((t - t0) * 1e9),
                     "memory_usage": now["memory_usage"], "memory_limit": limit,
                     "pids": now["pids_current"], "throttled": now["cpu_throttled"]})
    return rows


def update(c: Container, resources: dict) -> None:
    """docker update: new limits on the live cgroup, and kept for the next start."""
    if c.reload().status == "running":
        _cgroup(c).update(resources)
    record = read_json(c.dir / "container.json")
    record["HostConfig"]["Resources"] = {**record["HostConfig"].get("Resources", {}), **resources}
    write_json(c.dir / "container.json", record)
