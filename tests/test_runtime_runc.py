"""Differential proof: runc and minidocker-runtime run the same bundle, the container sees the same.

tests/probe.sh prints what a process can observe of its confinement
(capabilities, mounts and their options, /dev, user, hostname, cwd, limits,
open fds, masked paths, network devices). Any difference between runc's
answer and ours fails the test, with the diff as the message.
"""
import difflib
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from minidocker import bundle

from test_runtime import cgroup_exists, rootfs  # noqa: F401  (rootfs: the session busybox image)

pytestmark = pytest.mark.root
RUNC = shutil.which("runc") or "/usr/sbin/runc"


def run_both(tmp_path, rootfs, **kw):  # noqa: F811
    """(runc's stdout, ours) for the probe in one bundle config."""
    outputs = []
    for runtime in ("runc", "minidocker"):
        id = f"{runtime[:4]}{uuid.uuid4().hex[:8]}"
        config = bundle.spec(rootfs, ["/bin/sh", "/probe.sh"], id="probe0123456789",
                             cgroups_path=f"/minidocker-rt-{id}", **kw)
        path = tmp_path / id
        bundle.write(path, config)
        if runtime == "runc":
            cmd = [RUNC, "--root", str(tmp_path / "runc-state"), "run", "--bundle", str(path), id]
        else:
            cmd = [sys.executable, "-m", "minidocker.runtime", "--root", str(tmp_path / "md-state"),
                   "run", "--bundle", str(path), id]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, f"{runtime}: {p.stderr}"
        outputs.append(p.stdout)
        assert not cgroup_exists(f"/minidocker-rt-{id}"), runtime
    assert os.listdir(tmp_path / "md-state") == []
    return outputs


def assert_same(theirs, ours):
    diff = "\n".join(difflib.unified_diff(theirs.splitlines(), ours.splitlines(), "runc", "minidocker",
                                          lineterm=""))
    assert theirs == ours, diff


@pytest.mark.skipif(not os.path.exists(RUNC), reason="runc is installed by script/bootstrap")
def test_probe_sees_the_same_under_runc_and_minidocker(tmp_path, rootfs):  # noqa: F811
    theirs, ours = run_both(tmp_path, rootfs)
    assert "== mounts" in ours and "/dev/shm" in ours  # the probe really ran
    assert_same(theirs, ours)


@pytest.mark.skipif(not os.path.exists(RUNC), reason="runc is installed by script/bootstrap")
def test_probe_same_for_a_user_with_a_workdir(tmp_path, rootfs):  # noqa: F811
    theirs, ours = run_both(tmp_path, rootfs, user="alice", cwd="/home/alice")
    assert "uid=1000(alice)" in ours
    assert_same(theirs, ours)


@pytest.mark.skipif(not os.path.exists(RUNC), reason="runc is installed by script/bootstrap")
def test_probe_same_with_config_mounts_and_a_readonly_root(tmp_path, rootfs):  # noqa: F811
    data = tmp_path / "data"
    data.mkdir()
    mounts = [{"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind", "ro", "nosuid"]},
              {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "nodev", "size=1m", "mode=700"]}]
    theirs, ours = run_both(tmp_path, rootfs, mounts=mounts,
                            extra={"root": {"path": str(rootfs), "readonly": True}})
    assert "/data ro,nosuid" in ours and "/scratch rw,nosuid,nodev" in ours and "\n/ ro," in ours
    assert_same(theirs, ours)
    assert os.listdir(data) == []
