"""Crash safety: minidocker killed (SIGKILL) half way, then the next command puts things right.

MINIDOCKER_CRASH_AT=<point> makes the process die with os._exit(137) at that
point, as a SIGKILL would; a monitor is killed with a real SIGKILL. Afterwards
`system df` (which reconciles first) must leave: no partial blob or layer, no
mount of a stopped container, no runtime state, cgroup or init of a dead
container, every blob matching its digest, and the same command working again.
"""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minidocker.store import Store
from registry_server import build_image, registry  # noqa: F401

pytestmark = pytest.mark.root


def cli(*args, root, crash=None, timeout=120):
    env = dict(os.environ, MINIDOCKER_ROOT=str(root))
    env.pop("MINIDOCKER_CRASH_AT", None)
    if crash:
        env["MINIDOCKER_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "minidocker", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout)


def verify(root: Path) -> None:
    """The store is whole: blobs match their names, images have all their parts, nothing half made."""
    blobs = root / "images" / "blobs" / "sha256"
    for blob in blobs.iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, f"corrupt blob {blob.name}"
    index = json.loads((root / "images" / "index.json").read_text())
    for desc in index.get("manifests", []):
        manifest = json.loads((blobs / desc["digest"].split(":")[1]).read_text())
        for part in [manifest["config"]] + manifest["layers"]:
            assert (blobs / part["digest"].split(":")[1]).exists(), part["digest"]
    assert list((root / "ingest").iterdir()) == []
    assert list((root / "layers").glob(".tmp-*")) == []
    for c in (root / "containers").iterdir():
        assert (c / "container.json").exists(), f"half a container: {c.name}"
    running = {c.name for c in (root / "containers").iterdir()
               if json.loads((c / "state.json").read_text())["Status"] == "running"}
    for line in open("/proc/self/mountinfo"):
        point = line.split()[4]
        if point.startswith(str(root)):
            assert Path(point).parent.name in running, f"stale mount {point}"


def no_cgroups_of(ids) -> None:
    for top in Path("/sys/fs/cgroup").iterdir():
        for cid in ids:
            assert not (top / "minidocker" / cid).exists(), f"cgroup left: {top}/minidocker/{cid}"


def push_busybox(reg, tmp_path_factory, repo) -> str:
    """busybox pushed to the test registry as REPO:v1, from a store of its own; its name."""
    src = tmp_path_factory.mktemp(repo.replace("/", "-")) / "store"
    build_image(Store(src), "busybox:latest")
    name = f"{reg.host}/{repo}:v1"
    assert cli("tag", "busybox:latest", name, root=src).returncode == 0
    r = cli("push", name, root=src)
    assert r.returncode == 0, r.stderr
    return name


@pytest.fixture(scope="module")
def pushed(registry, tmp_path_factory):  # noqa: F811
    return push_busybox(registry, tmp_path_factory, "crash/busybox")


@pytest.mark.parametrize("point", ["pull-after-blob", "layer-before-rename"])
def test_pull_killed_half_way(pushed, tmp_path, point):
    root = tmp_path / "store"
    r = cli("pull", pushed, root=root, crash=point)
    assert r.returncode == 137, r.stderr
    assert cli("system", "df", root=root).returncode == 0
    verify(root)
    r = cli("pull", pushed, root=root)
    assert r.returncode == 0, r.stderr
    verify(root)
    r = cli("run", "--rm", "--network", "none", pushed, "cat", "/etc/motd", root=root)
    assert r.returncode == 0, r.stderr
    verify(root)


def kill_holders(root: Path) -> list:
    """SIGKILL every process holding a file under `root` open (what a failed test left)."""
    killed = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            held = any(os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(root)) for fd in fds)
        except OSError:
            continue
        if held and int(pid) != os.getpid():
            _kill_and_wait(int(pid))
            killed.append(int(pid))
    return killed


@pytest.fixture
def root(tmp_path):
    r = tmp_path / "store"
    assert cli("bootstrap", root=r).returncode == 0
    yield r
    kill_holders(r)
    cli("system", "reset", "-f", root=r)


@pytest.mark.parametrize("point", ["after-cgroup-create", "after-clone-before-exec"])
def test_run_killed_while_creating_the_container(root, point):
    r = cli("run", "--name", "c1", "--network", "none", "busybox", "true", root=root, crash=point, timeout=20)
    assert r.returncode != 0
    ids = [p.name for p in (root / "containers").iterdir()]
    ps = cli("ps", "-a", root=root)
    assert ps.returncode == 0 and "Up " not in ps.stdout
    assert cli("system", "df", root=root).returncode == 0
    verify(root)
    no_cgroups_of(ids)
    assert not list((root / "runtime").iterdir()) if (root / "runtime").exists() else True
    assert cli("rm", "-f", "c1", root=root).returncode == 0
    r = cli("run", "--name", "c1", "--network", "none", "busybox", "echo", "again", root=root)
    assert r.returncode == 0 and r.stdout.strip() == "again", r.stderr


def _state(root, name):
    for c in (root / "containers").iterdir():
        record = json.loads((c / "container.json").read_text())
        if record["Name"] == "/" + name:
            return c, json.loads((c / "state.json").read_text())
    raise AssertionError(name)


def _kill_and_wait(pid):
    os.kill(pid, signal.SIGKILL)
    for _ in range(100):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)


def test_monitor_and_container_killed_show_as_exited_and_are_released(root):
    assert cli("run", "-d", "--name", "up", "--network", "none", "busybox", "sleep", "300", root=root).returncode == 0
    cdir, state = _state(root, "up")
    _kill_and_wait(state["MonitorPid"])   # the shim dies first: nobody records the exit
    _kill_and_wait(state["Pid"])
    ps = cli("ps", "-a", root=root)
    assert "Exited (255)" in ps.stdout, ps.stdout
    assert cli("system", "df", root=root).returncode == 0
    verify(root)
    no_cgroups_of([cdir.name])
    assert cli("start", "up", root=root).returncode == 0   # and it can run again
    assert cli("rm", "-f", "up", root=root).returncode == 0


def test_rm_interrupted_after_the_record_went(root):
    """What an rm killed inside remove_tree can leave: a directory without its record, still mounted."""
    assert cli("run", "-d", "--name", "gone", "--network", "none", "busybox", "sleep", "300", root=root).returncode == 0
    cdir, state = _state(root, "gone")
    _kill_and_wait(state["MonitorPid"])
    _kill_and_wait(state["Pid"])
    (cdir / "container.json").unlink()
    assert cli("system", "df", root=root).returncode == 0
    assert not cdir.exists()
    verify(root)
    no_cgroups_of([cdir.name])


def test_commit_killed_after_writing_its_layer(root):
    assert cli("run", "--name", "src", "--network", "none", "busybox", "sh", "-c", "echo x > /new", root=root).returncode == 0
    r = cli("commit", "src", "snap:v1", root=root, crash="commit-after-layer")
    assert r.returncode != 0
    assert "snap" not in cli("images", root=root).stdout   # no half-named image
    assert cli("system", "df", root=root).returncode == 0
    verify(root)
    assert cli("commit", "src", "snap:v1", root=root).returncode == 0
    r = cli("run", "--rm", "--network", "none", "snap:v1", "cat", "/new", root=root)
    assert r.stdout == "x\n", r.stderr


def test_build_killed_before_its_image_is_named(root, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN echo built > /built\n")
    r = cli("build", "-t", "made:v1", "--network", "none", ctx, root=root, crash="build-before-tag")
    assert r.returncode != 0
    assert "made" not in cli("images", root=root).stdout
    assert cli("system", "df", root=root).returncode == 0
    verify(root)
    assert cli("build", "-t", "made:v1", "--network", "none", ctx, root=root).returncode == 0
    assert cli("run", "--rm", "--network", "none", "made:v1", "cat", "/built", root=root).stdout == "built\n"


def test_start_killed_between_mount_and_state(root):
    r = cli("run", "--name", "half", "--network", "none", "busybox", "true", root=root, crash="after-mount-before-state")
    assert r.returncode != 0
    ps = cli("ps", "-a", root=root)
    assert "Up " not in ps.stdout
    assert cli("system", "df", root=root).returncode == 0
    verify(root)   # the stale overlay of a container that never ran is unmounted
    assert cli("start", "half", root=root).returncode == 0
    assert cli("rm", "-f", "half", root=root).returncode == 0


def test_rm_killed_after_releasing(root):
    assert cli("run", "-d", "--name", "rmme", "--network", "none", "busybox", "sleep", "300", root=root).returncode == 0
    cdir, _ = _state(root, "rmme")
    r = cli("rm", "-f", "rmme", root=root, crash="rm-after-release")
    assert r.returncode != 0
    assert cli("system", "df", root=root).returncode == 0
    verify(root)
    no_cgroups_of([cdir.name])
    assert cli("rm", "-f", "rmme", root=root).returncode == 0
    assert not cdir.exists()
