"""Fixtures every test file shares: a temporary store, and the leak check.

The leak check snapshots the host before each test and compares after it:
mount points, minidocker cgroups, network links, network namespaces and
processes descended from pytest. A test that leaves any of them behind fails,
even if its own assertions passed.
"""
import os
import time
from pathlib import Path

import pytest


# What minidocker keeps on the host between containers (the engine's and the
# runtime's cgroup parents, the default bridge), as docker keeps its
# /sys/fs/cgroup/*/docker parents and docker0: made once, removed by
# `minidocker system reset` (tested there). Everything below them counts.
PERSISTENT = {"minidocker", "minidocker-runtime", "minidocker0"}


def host_snapshot() -> dict:
    mounts = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mounts.add(line.split()[4])
    cgroups = set()
    for top in Path("/sys/fs/cgroup").iterdir():
        try:
            for path in top.glob("**/*minidocker*"):
                if path.is_dir() and not (path.name in PERSISTENT and path.parent == top):
                    cgroups.add(str(path))
        except FileNotFoundError:   # a group removed while we walked: it is gone, not leaked
            continue
    links = set(os.listdir("/sys/class/net")) - PERSISTENT
    netns = set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()
    return {"mounts": mounts, "cgroups": cgroups, "links": links, "netns": netns,
            "processes": descendants(os.getpid()) | monitors()}


def monitors() -> set:
    """Container monitors, the resident helper and its workers are nobody's children by design:
    find them by the names they give themselves."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    name, rest = f.read().split(" (", 1)[1].rsplit(")", 1)
            except OSError:
                continue
            fields = rest.split()
            if name in ("minidocker-mon", "minidocker-srv", "minidocker-cmd") and fields[0] != "Z":
                found.add((int(entry), fields[19]))
    return found


def descendants(pid: int) -> set:
    """Living (non-zombie) processes below `pid`, as (pid, start time) so reuse can't fool us."""
    children, info = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, ppid, start = fields[0], int(fields[1]), fields[19]
        children.setdefault(ppid, []).append(int(entry))
        info[int(entry)] = (state, start)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if info[child][0] != "Z":
                found.add((child, info[child][1]))
            todo.append(child)
    return found


def leaks(before: dict, after: dict) -> dict:
    return {k: sorted(map(str, after[k] - before[k])) for k in before if after[k] - before[k]}


@pytest.fixture(autouse=True)
def no_leaks(request):
    """Fail a test that leaves mounts, cgroups, links, namespaces or processes on the host."""
    before = host_snapshot()
    yield
    after = host_snapshot()
    found = leaks(before, after)
    if found.get("processes"):
        # A process being reaped right now is not a leak: give it a moment.
        time.sleep(0.5)
        after = host_snapshot()
        found = leaks(before, after)
    assert not found, f"the test left these on the host: {found}"


@pytest.fixture
def store_root(tmp_path, monkeypatch):
    """A fresh store root for the test, as $MINIDOCKER_ROOT, with its own default bridge.

    The machine's own store (/var/lib/minidocker, which the notebooks use)
    owns minidocker0; a test store gets `minidockertNNNN` and gives it back, with
    every network it made, when the test ends.
    """
    root = tmp_path / "store"
    monkeypatch.setenv("MINIDOCKER_ROOT", str(root))
    monkeypatch.setenv("MINIDOCKER_BRIDGE", f"minidockert{os.getpid() % 0x10000:04x}")   # one per test run
    yield root
    if (root / "networks").exists():
        from minidocker import endpoints
        endpoints.remove_all(root=root)


@pytest.fixture
def store(store_root):
    from minidocker.store import Store
    return Store(store_root)


@pytest.fixture
def engine(store_root):
    """A store with busybox:latest in it; whatever containers a test leaves are removed after it."""
    from helpers import md
    md("bootstrap", root=store_root, check=True)
    yield store_root
    ids = md("ps", "-aq", "--no-trunc", root=store_root).stdout.split()
    if ids:
        md("rm", "-f", *ids, root=store_root)
