"""Limits through the engine: OOM kill recorded from the cgroup, pids limit,
docker's refusals, stats and update on a running container."""
import json

import pytest

from helpers import md

pytestmark = pytest.mark.root


@pytest.fixture
def root(engine):
    return engine


def _state(root, name):
    return json.loads(md("inspect", name, root=root, check=True).stdout)[0]["State"]


def test_an_oom_kill_exits_137_and_inspect_says_so(root):
    r = md("run", "--name", "oom", "-m", "8m", "--memory-swap", "8m", "busybox", "sh", "-c",
           "x=a; while true; do x=$x$x; done", root=root, timeout=120)
    assert r.returncode == 137
    assert _state(root, "oom")["OOMKilled"] is True


def test_a_kill_is_not_mistaken_for_an_oom_kill(root):
    md("run", "-d", "--name", "killed", "-m", "64m", "busybox", "sleep", "60", root=root, check=True)
    md("kill", "killed", root=root, check=True)
    assert md("wait", "killed", root=root, check=True).stdout.strip() == "137"
    assert _state(root, "killed")["OOMKilled"] is False


def test_the_pids_limit_makes_fork_fail_and_defaults_to_2048(root):
    r = md("run", "--rm", "--pids-limit", "20", "busybox", "sh", "-c",
           "for i in $(seq 40); do sleep 5 & done", root=root, timeout=60)
    assert r.returncode != 0 and "can't fork" in r.stderr
    r = md("run", "--rm", "busybox", "sh", "-c",   # v1 has a pids/ directory, v2 one flat tree
           "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max", root=root, check=True)
    assert r.stdout.strip() == "2048"


@pytest.mark.parametrize("flags, message", [
    (["-m", "1k"], "Minimum memory limit allowed is 6MB"),
    (["--cpus", "0"], "Range of CPUs"),
    (["--cpus", "1000"], "Range of CPUs"),
    (["--pids-limit", "-5"], "pids-limit"),
    (["-m", "12zb"], "invalid"),
])
def test_bad_limits_are_dockers_errors_and_create_nothing(root, flags, message):
    r = md("run", "--rm", *flags, "busybox", "true", root=root)
    assert r.returncode == 125 and message.lower() in r.stderr.lower(), r.stderr
    assert md("ps", "-aq", root=root).stdout == ""


def test_stats_and_update_on_a_running_container(root):
    md("run", "-d", "--name", "busy", "-m", "32m", "busybox", "sleep", "60", root=root, check=True)
    out = md("stats", "--no-stream", root=root, check=True).stdout.splitlines()
    assert out[0].split()[:3] == ["CONTAINER", "ID", "NAME"]
    assert "busy" in out[1] and "32MiB" in out[1]
    md("update", "-m", "48m", "--memory-swap", "96m", "busy", root=root, check=True)
    assert "48MiB" in md("stats", "--no-stream", "busy", root=root, check=True).stdout
    record = json.loads(md("inspect", "busy", root=root, check=True).stdout)[0]
    assert record["HostConfig"]["Resources"]["memory"]["limit"] == 48 * 1024 * 1024
