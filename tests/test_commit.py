"""commit and diff with real containers: the upper directory becomes a layer, whiteouts included."""
import json
import os
import tarfile
import time

import pytest

from helpers import md
from minidocker import commit, containers, images
from minidocker.bootstrap import bootstrap
from minidocker.errors import MinidockerError, NotFound

pytestmark = pytest.mark.root

# layer.md's round trip (oci-interop 2.7): delete a lower file, rm -rf and recreate a lower
# directory, modify a lower file, add a directory and a file
MUTATE = ("rm /etc/motd && rm -rf /etc/init.d && mkdir /etc/init.d && echo new > /etc/init.d/c && "
          "echo changed >> /etc/passwd && mkdir -p /new/dir && echo hi > /new/dir/f")


@pytest.fixture
def base(store):
    image = bootstrap(store)
    yield image
    for c in containers.all_containers(store):
        c.remove(force=True)


def run(store, command, name=None, detach=False):
    c = containers.create(store, "busybox", ["sh", "-c", command], name=name, network="none")
    c.start().close()
    if not detach:
        c.wait()
    return c.reload()


def layer_names(store, image) -> list:
    with open(store.blob_path(image.layers[-1]["digest"]), "rb") as f, tarfile.open(fileobj=f, mode="r|") as t:
        return [m.name for m in t]


def test_commit_writes_the_changes_as_a_layer_with_whiteouts(store, base):
    # busybox's bootstrap has /etc/motd and an /etc/init.d with a file in it
    run(store, "mkdir -p /etc/init.d && echo old > /etc/init.d/a && echo hi > /etc/motd", name="prep")
    prepared = commit.commit(store, "prep", "prepared:1")
    c = containers.create(store, "prepared:1", ["sh", "-c", MUTATE], network="none")
    c.start().close()
    assert c.wait() == 0
    assert commit.diff(store, c.id) == [
        ("C", "/etc"), ("C", "/etc/init.d"), ("D", "/etc/init.d/a"), ("A", "/etc/init.d/c"), ("D", "/etc/motd"),
        ("C", "/etc/passwd"), ("A", "/new"), ("A", "/new/dir"), ("A", "/new/dir/f")]
    image = commit.commit(store, c.id, "changed:1", message="two edits", author="me <me@example.org>")
    assert image.diff_ids[:-1] == prepared.diff_ids and len(image.layers) == len(prepared.layers) + 1
    assert layer_names(store, image) == [
        "etc", "etc/.wh.motd", "etc/init.d", "etc/init.d/.wh..wh..opq", "etc/init.d/c", "etc/passwd",
        "new", "new/dir", "new/dir/f"]
    hist = image.config["history"][-1]
    assert hist["comment"] == "two edits" and hist["author"] == "me <me@example.org>"
    assert hist["created_by"] == "sh -c " + MUTATE and not hist.get("empty_layer")
    assert len(image.config["history"]) == len(prepared.config["history"]) + 1
    # the new image shows the changes, the old one does not
    n = containers.create(store, "changed:1", ["sh", "-c", "ls /etc/init.d; cat /new/dir/f; "
                                                "test -e /etc/motd || echo gone; tail -1 /etc/passwd"],
                          network="none")
    n.start().close()
    n.wait()
    assert n.logs() == "c\nhi\ngone\nchanged\n"


def test_the_same_files_give_the_same_layer_digest(store, base):
    c = run(store, "echo same > /a; mkdir /d; echo x > /d/x; touch -d @1000000 /a /d/x /d")
    first = commit.commit(store, c.id, "one")
    second = commit.commit(store, c.id, "two")
    assert first.layers[-1] == second.layers[-1] and first.diff_ids == second.diff_ids


def test_a_container_that_changed_nothing_adds_no_layer(store, base):
    c = run(store, "true")
    assert commit.diff(store, c.id) == []
    image = commit.commit(store, c.id, "same:1")
    assert image.layers == base.layers and image.diff_ids == base.diff_ids
    assert image.config["history"][-1]["empty_layer"] is True
    assert image.id != base.id


def test_changes_set_the_new_image_config(store, base):
    c = run(store, "echo x > /x")
    image = commit.commit(store, c.id, "conf:1", changes=[
        'CMD ["cat", "/x"]', "ENV A=1 B=2", "WORKDIR /tmp", "USER nobody", "EXPOSE 8080", "LABEL k=v"])
    cfg = image.config["config"]
    assert cfg["Cmd"] == ["cat", "/x"] and "A=1" in cfg["Env"] and "B=2" in cfg["Env"]
    assert (cfg["WorkingDir"], cfg["User"], cfg["ExposedPorts"], cfg["Labels"]) == (
        "/tmp", "nobody", {"8080/tcp": {}}, {"k": "v"})
    r = containers.create(store, "conf:1", network="none")
    r.start().close()
    assert r.wait() == 0 and r.logs() == "x\n"


def test_a_running_container_is_frozen_while_committed_and_runs_on(store, base):
    from minidocker.runtime import cgroups
    c = run(store, "echo before > /f; while true; do sleep 0.05; done", detach=True)
    while not (c.dir / "upper" / "f").exists() or (c.dir / "upper" / "f").stat().st_size == 0:
        time.sleep(0.02)
    group = cgroups.open(f"/minidocker/{c.id}")
    seen = []
    real_layer_blob = commit.layer_blob

    def spy(store_, upper, skip=(), progress=False):
        seen.append(_freezer(group))
        return real_layer_blob(store_, upper, skip, progress)
    commit.layer_blob = spy
    try:
        image = commit.commit(store, c.id, "live:1")
    finally:
        commit.layer_blob = real_layer_blob
    assert seen == ["FROZEN"] or seen == ["1"], seen
    assert c.reload().status == "running" and _freezer(group) in ("THAWED", "0")
    r = containers.create(store, "live:1", ["cat", "/f"], network="none")
    r.start().close()
    r.wait()
    assert r.logs() == "before\n"


def _freezer(group) -> str:
    """freezer.state (v1) or cgroup.freeze (v2) of the container's cgroup."""
    for d in group.dirs:
        for name in ("freezer.state", "cgroup.freeze"):
            if os.path.exists(os.path.join(d, name)):
                with open(os.path.join(d, name)) as f:
                    return f.read().strip()
    return "?"


def test_engine_mount_points_stay_out_of_the_layer(store, base, tmp_path):
    # An image without /proc, /dev, /sys: the runtime creates them as mount points in upper.
    from minidocker import build
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM scratch\nCOPY --from=busybox /bin/busybox /bin/busybox\n")
    build.build(store, tmp_path / "ctx", tags=["bare"], out=lambda line: None, network="none")
    c = containers.create(store, "bare", ["/bin/busybox", "true"], network="none")
    c.start().close()
    assert c.wait() == 0
    assert {"proc", "dev", "sys"} <= set(os.listdir(c.dir / "upper"))
    assert commit.diff(store, c.id) == []
    assert commit.commit(store, c.id).config["history"][-1]["empty_layer"] is True


def test_bad_input_is_a_clear_error_and_writes_nothing(store, base, store_root):
    c = run(store, "echo x > /x")
    blobs = set(os.listdir(store.blobs))
    with pytest.raises(MinidockerError, match="invalid reference format"):
        commit.commit(store, c.id, "UPPER:case")
    with pytest.raises(MinidockerError, match="not a valid change command"):
        commit.commit(store, c.id, changes=["RUN true"])
    c.remove()
    with pytest.raises(NotFound, match="No such container"):
        commit.commit(store, c.id, "x")
    assert set(os.listdir(store.blobs)) == blobs
    r = md("commit", c.id[:12], "x", root=store_root)
    assert r.returncode == 1 and r.stderr == f"minidocker: No such container: {c.id[:12]}\n"
    r = md("diff", "nosuch", root=store_root)
    assert r.returncode == 1 and "No such container: nosuch" in r.stderr and "Traceback" not in r.stderr


def test_cli_commit_and_diff(store, base, store_root):
    run(store, "rm /etc/motd; echo y > /y", name="cli")
    assert md("diff", "cli", root=store_root, check=True).stdout == "C /etc\nD /etc/motd\nA /y\n"
    out = md("commit", "-m", "msg", "-c", "CMD cat /y", "cli", "cli:v1", root=store_root, check=True).stdout
    image = images.get(store, "cli:v1")
    assert out.strip() == image.id
    assert image.config["config"]["Cmd"] == ["/bin/sh", "-c", "cat /y"]
    assert md("run", "--rm", "--network", "none", "cli:v1", root=store_root, check=True).stdout == "y\n"
    assert json.loads(md("inspect", "cli:v1", root=store_root, check=True).stdout)[0]["Comment"] == "msg"


def test_a_commit_shows_its_progress_where_someone_watches(tmp_path):
    """In a terminal the layer being written is counted on stderr (tqdm), as a pull's layers are."""
    import pty
    import subprocess
    import sys
    root = tmp_path / "store"
    env = dict(os.environ, MINIDOCKER_ROOT=str(root))
    md = [sys.executable, "-m", "minidocker"]
    subprocess.run(md + ["bootstrap"], env=env, check=True, capture_output=True)
    subprocess.run(md + ["run", "--name", "big", "--network", "none", "busybox", "sh", "-c",
                         "head -c 3000000 /dev/urandom > /blob"], env=env, check=True, capture_output=True)
    import fcntl
    import struct
    import termios
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))   # a terminal has a width
    r = subprocess.run(md + ["commit", "big", "big:v1"], env=env, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    try:
        while chunk := os.read(master, 65536):
            shown += chunk
    except OSError:
        pass
    os.close(master)
    assert r.returncode == 0 and r.stdout.startswith(b"sha256:")
    assert b"commit" in shown and b"MB" in shown, shown
    subprocess.run(md + ["rm", "big"], env=env, check=True, capture_output=True)
