"""system df, prune and reset, on a real store with real containers."""
import os
import secrets
from pathlib import Path

import pytest

from helpers import md

pytestmark = pytest.mark.root


@pytest.fixture
def root(tmp_path, monkeypatch):
    # a bridge of our own, so that reset can remove it without touching anyone else's
    monkeypatch.setenv("MINIDOCKER_BRIDGE", "minidocker" + secrets.token_hex(2))
    r = tmp_path / "store"
    md("bootstrap", root=r, check=True)
    yield r
    if r.exists():   # the test failed half way: still leave the host clean
        md("system", "reset", "-f", root=r)


def df_rows(root):
    out = md("system", "df", root=root, check=True).stdout.splitlines()
    assert out[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    return {line.split()[0]: line.split() for line in out[1:]}


def test_df_prune_keep_running_and_reset_leaves_the_host_as_before(root):
    bridge = os.environ["MINIDOCKER_BRIDGE"]
    md("run", "--name", "done", "busybox", "sh", "-c", "head -c 100000 /dev/zero > /big", root=root, check=True)
    md("run", "-d", "--name", "up", "busybox", "sleep", "300", root=root, check=True)
    md("volume", "create", "keepme", root=root, check=True)
    ids = md("ps", "-a", "-q", "--no-trunc", root=root).stdout.split() or \
        [p.name for p in (root / "containers").iterdir()]
    rows = df_rows(root)
    assert rows["Images"][1:3] == ["1", "1"]
    assert rows["Containers"][1:3] == ["2", "1"]
    assert rows["Local"][2:4] == ["1", "0"]          # "Local Volumes": 1 total, 0 in use
    assert os.path.exists(f"/sys/class/net/{bridge}")
    r = md("system", "prune", root=root)
    assert r.returncode == 1 and "not confirmed" in r.stderr   # never without -f when not asked
    out = md("system", "prune", "-f", root=root, check=True).stdout
    assert "Deleted containers" in out and "Total reclaimed space" in out
    names = md("ps", "-a", "--format", "{{.Names}}", root=root).stdout.split() or \
        [line.split()[-1] for line in md("ps", "-a", root=root, check=True).stdout.splitlines()[1:]]
    assert names == ["up"]
    out = md("system", "reset", "-f", root=root, check=True).stdout
    assert not root.exists()
    assert not os.path.exists(f"/sys/class/net/{bridge}")
    assert not [line for line in open("/proc/self/mountinfo") if str(root) in line]
    for top in Path("/sys/fs/cgroup").iterdir():
        assert not [p for p in top.glob("minidocker/*") if p.name in ids], top   # our containers' cgroups
    # The shared parents go when empty; other stores' tests on this host may hold or remake them.
    parents = [line for line in out.splitlines() if line.startswith("Removed /sys/fs/cgroup/")]
    busy = [p for p in Path("/sys/fs/cgroup").glob("*/minidocker") if any(c.is_dir() for c in p.iterdir())]
    assert parents or busy
    assert "Removed store" in out


def test_prune_all_images_and_volumes(root):
    md("volume", "create", "named", root=root, check=True)
    from minidocker import volumes
    from minidocker.store import Store
    volumes.create(Store(root), anonymous=True)   # what `run -v /anon` makes (once the lead wires -v)
    out = md("system", "prune", "-f", "-a", "--volumes", root=root, check=True).stdout
    assert "Deleted images" in out
    vols = md("volume", "ls", "-q", root=root, check=True).stdout.split()
    assert vols == ["named"]
    assert md("images", "-q", root=root, check=True).stdout.strip() == ""
    md("system", "reset", "-f", root=root, check=True)
