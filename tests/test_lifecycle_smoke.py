"""The engine's lifecycle, short, with only the standard library: the same file
runs here (cgroup v1) and inside the cgroup v2 VM (tests/test_cgroup_v2_vm.py),
so run, limits, OOM, exec, stop/start and rm are proven on both versions."""
import json

import pytest

from helpers import md

pytestmark = pytest.mark.root


@pytest.fixture
def root(engine):
    return engine


def test_run_exec_stop_start_rm(root):
    r = md("run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo $$; exit 4", root=root)
    assert (r.returncode, r.stdout) == (4, "1\n"), r.stderr
    md("run", "-d", "--name", "smoke", "--network", "none", "busybox", "sleep", "60", root=root, check=True)
    assert md("exec", "smoke", "sh", "-c", "echo hi > /f; cat /f", root=root, check=True).stdout == "hi\n"
    md("stop", "-t", "1", "smoke", root=root, check=True)
    md("start", "smoke", root=root, check=True)
    assert md("exec", "smoke", "cat", "/f", root=root, check=True).stdout == "hi\n"
    md("rm", "-f", "smoke", root=root, check=True)
    assert md("ps", "-aq", root=root).stdout == ""


def test_memory_limit_oom_kill_is_recorded(root):
    r = md("run", "--name", "oom", "--network", "none", "-m", "8m", "--memory-swap", "8m", "busybox", "sh", "-c",
           "x=a; while true; do x=$x$x; done", root=root, timeout=300)
    assert r.returncode == 137, r.stderr
    assert json.loads(md("inspect", "oom", root=root, check=True).stdout)[0]["State"]["OOMKilled"] is True


def test_pids_limit_and_cgroup_files_inside(root):
    r = md("run", "--rm", "--network", "none", "--pids-limit", "10", "busybox", "sh", "-c",
           "for i in $(seq 20); do sleep 5 & done", root=root, timeout=120)
    assert r.returncode != 0 and "can't fork" in r.stderr
    r = md("run", "--rm", "--network", "none", "-m", "64m", "busybox", "sh", "-c",
           "cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes",
           root=root, check=True)
    assert int(r.stdout) == 64 * 1024 * 1024
