"""doctor reports what the system's own tools report, and fails only on what blocks containers."""
import json
import os
import subprocess

import pytest

from helpers import md
from minidocker import doctor


def _findmnt(path):
    out = subprocess.run(["findmnt", "-n", "-o", "TARGET,FSTYPE", "-T", str(path)], capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0], out[1]


@pytest.mark.parametrize("path", ["/", "/proc/self", "/sys/fs/cgroup", "/tmp", "/nonexistent/below/root"])
def test_mount_of_agrees_with_findmnt(path):
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    assert doctor.mount_of(path) == _findmnt(existing)


def test_cgroup_mode_agrees_with_stat():
    kind = subprocess.run(["stat", "-fc", "%T", "/sys/fs/cgroup"], capture_output=True, text=True).stdout.strip()
    unified = os.path.ismount("/sys/fs/cgroup/unified")
    expected = "v2" if kind == "cgroup2fs" else ("hybrid" if unified else "v1")
    assert doctor.cgroup_mode() == expected


def test_kernel_version_is_unames():
    numbers, release = doctor.kernel_version()
    assert release == subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip()
    assert ".".join(map(str, numbers)) in release


def test_every_failing_row_has_a_fix_and_this_machine_passes(store_root):
    report = doctor.check()
    names = [r.name for r in report]
    for expected in ("root", "kernel", "overlayfs", "store filesystem", "namespaces", "cgroups",
                     "static busybox", "graphviz dot", "ip_forward", "FORWARD policy", "free disk", "store"):
        assert expected in names
    assert all(r.fix for r in report if not r.ok)
    assert report.ok, str(report)   # CI and this machine are set up by script/bootstrap
    assert "<table>" in report._repr_html_()


def test_forward_policy_is_iptables():
    out = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True).stdout
    assert f"-P FORWARD {doctor.forward_policy()}" in out


@pytest.mark.root
def test_a_store_on_overlayfs_is_a_failed_required_check(tmp_path):
    for d in ("lower", "upper", "work", "merged"):
        (tmp_path / d).mkdir()
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={tmp_path}/lower,upperdir={tmp_path}/upper,"
                    f"workdir={tmp_path}/work", str(tmp_path / "merged")], check=True)
    try:
        root = tmp_path / "merged" / "store"
        row = next(r for r in doctor.check(root) if r.name == "store filesystem")
        assert (row.ok, row.mark) == (False, "FAIL") and "overlay" in row.value and "MINIDOCKER_ROOT" in row.fix
        r = md("doctor", root=root)
        assert r.returncode == 1 and "FAIL  store filesystem" in r.stdout and "required check failed" in r.stderr
        assert not root.exists()   # doctor only looks
    finally:
        subprocess.run(["umount", str(tmp_path / "merged")], check=True)


def test_a_broken_store_index_is_reported(store):
    (store.layout / "index.json").write_text("{not json")
    row = doctor.store_health(store.root)
    assert not row.ok and "index.json" in row.value


def test_a_missing_manifest_blob_is_reported(store):
    from minidocker.bootstrap import bootstrap
    img = bootstrap(store)
    assert doctor.store_health(store.root).ok
    os.unlink(store.blob_path(img.manifest_desc["digest"]))
    assert "missing" in doctor.store_health(store.root).value


def test_the_cli_prints_the_table_and_json(store_root):
    r = md("doctor", root=store_root)
    assert r.returncode == 0 and r.stdout.splitlines()[0].startswith("ok    root")
    rows = json.loads(md("doctor", "--json", root=store_root, check=True).stdout)
    assert {row["mark"] for row in rows} <= {"ok", "warn", "FAIL"} and rows[0]["name"] == "root"


def test_the_cgroup_row_names_the_controllers_the_kernel_lists():
    row = next(r for r in doctor.check() if r.name == "cgroups")
    listed = set()
    with open("/proc/cgroups") as f:   # subsys_name hierarchy num_cgroups enabled
        for line in f:
            fields = line.split()
            if fields[0] != "#subsys_name" and fields[3] == "1":
                listed.add(fields[0])
    assert row.ok == ({"memory", "pids", "cpu"} <= listed)
    assert row.value.startswith(doctor.cgroup_mode())
