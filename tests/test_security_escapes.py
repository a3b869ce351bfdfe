"""The known container escapes of security.md 2.2, tried for real against minidocker's runtime.

Each test sets a trap the way the CVE did (a symlink in the image, a racing
swap, a process reaching for the runtime's executable) and then checks the
host: the victim files, the host's mount table, the runtime's binaries.
"""
import hashlib
import os
import shutil
import sys
import threading

import pytest

from minidocker import runtime, volumes

from minidocker.store import Store

from test_runtime import make_rootfs, reaping
from test_security import SecEnv

pytestmark = pytest.mark.root


@pytest.fixture
def env(tmp_path):
    with reaping(SecEnv(tmp_path, make_rootfs(tmp_path / "image"))) as e:
        yield e


def sha(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# Other tests on this host mount their own stores and network namespaces meanwhile: only the
# host's own tree counts, plus (checked by each test) anything under its victim directory.
_BUSY = ("/tmp/", "/var/lib/minidocker/", "/run/netns/", "/run/minidocker")


def mountinfo() -> list:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    return sorted(p for p in points if not p.startswith(_BUSY))


def mounted_under(path) -> list:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


# -- R4, R5, R6: /proc, /sys, /dev and /dev/null as symlinks in the image ----------------

@pytest.mark.parametrize("name", ["proc", "sys", "dev"])
@pytest.mark.parametrize("how", ["absolute", "relative"])
def test_proc_sys_dev_symlinked_in_the_image_fail_cleanly(env, tmp_path, name, how):
    victim = tmp_path / "hostvictim"
    victim.mkdir()
    (victim / "keep").write_text("k")
    shutil.rmtree(env.rootfs / name)
    os.symlink(str(victim) if how == "absolute" else "../../../../../../" + str(victim).lstrip("/"),
               env.rootfs / name)
    before = mountinfo()
    rc, out, err = env.run_with(["true"])
    assert rc != 0 and "ordinary directory" in err
    assert os.listdir(victim) == ["keep"] and mountinfo() == before and not mounted_under(victim)


def test_dev_null_symlinked_to_core_pattern_never_touches_the_host(env):
    """CVE-2025-31133: masking binds "/dev/null" over files; the image's /dev/null must not be used."""
    before = open("/proc/sys/kernel/core_pattern").read()
    os.symlink("/proc/sys/kernel/core_pattern", env.rootfs / "dev" / "null")
    rc, out, err = env.run_with(["sh", "-c", "wc -c < /proc/timer_list; ls -l /dev/null"])
    assert rc == 0, err
    assert out.split()[0] == "0" and out.split()[1].startswith("crw")   # the real, empty char device
    assert open("/proc/sys/kernel/core_pattern").read() == before


# -- R3, R11: volume targets through symlinks, and racing swaps -------------------------

def test_volume_target_with_dot_dots_stays_inside(env, tmp_path):
    """CVE-2022-23648: `Volumes: {"/../../../../etc": {}}` is the container's /etc."""
    specs = volumes.parse(["/../../../../etc"])
    assert specs[0]["Target"] == "/etc"
    host_etc = sorted(os.listdir("/etc"))
    store = Store(tmp_path / "store")
    rc, out, err = env.run_with(["sh", "-c", "touch /etc/written && ls /etc"],
                                mounts=volumes.oci_mounts(store, specs, env.rootfs))
    assert rc == 0 and "written" in out and "passwd" in out   # filled from the image's /etc
    assert sorted(os.listdir("/etc")) == host_etc


@pytest.mark.slow
def test_racing_dir_symlink_swap_of_a_mount_target(env, tmp_path):
    """CVE-2021-30465: swap /data between a directory and a symlink to / while containers start."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "payload").write_text("p")
    victim = tmp_path / "victim"
    victim.mkdir()
    before = mountinfo()
    stop = threading.Event()
    data, tmp = env.rootfs / "data", env.rootfs / "data.tmp"

    def swap():
        while not stop.is_set():
            try:
                os.symlink("/" if os.urandom(1)[0] & 1 else str(victim), tmp)
                os.replace(tmp, data) if not data.is_dir() or data.is_symlink() else None
                if data.is_symlink():
                    os.unlink(data)
                    os.mkdir(data)
            except OSError:
                pass
    mount = [{"destination": "/data", "type": "bind", "source": str(src), "options": ["rbind", "ro"]}]
    t = threading.Thread(target=swap)
    t.start()
    try:
        for _ in range(40):
            env.run_with(["true"], mounts=mount)
    finally:
        stop.set()
        t.join()
    assert mountinfo() == before and not mounted_under(victim)
    assert os.listdir(victim) == []
    assert sorted(os.listdir(src)) == ["payload"]


# -- R2: the runtime's own executable ---------------------------------------------------

def test_a_container_cannot_reach_the_runtime_executable_during_exec(env):
    """CVE-2019-5736: while `exec` enters the container, its processes hunt for our /proc/PID/exe."""
    python = os.path.realpath(sys.executable)
    libs = [python] + [line.split()[-1] for line in open("/proc/self/maps")
                       if "libpython" in line or "libseccomp" in line]
    before = {p: sha(p) for p in set(libs)}
    hunter = ("while :; do for p in /proc/[0-9]*; do "
              "if cat $p/exe > /dev/null 2>&1; then readlink $p/exe >> /tmp/seen; fi; "
              "echo pwned 2>/dev/null >> $p/exe; done; done")
    id, path = env.bundle_with(["sh", "-c", hunter])
    runtime.create(id, path, root=env.root)
    runtime.start(id, root=env.root)
    try:
        for _ in range(15):
            assert env.cli("exec", id, "true").returncode == 0
        seen = env.cli("exec", id, "sh", "-c", "sort -u /tmp/seen").stdout.split()
    finally:
        runtime.delete(id, force=True, root=env.root)
    assert {p: sha(p) for p in before} == before
    assert not [s for s in seen if "python" in s], seen   # our interpreter was never readable inside


# -- exec gets the same seccomp filter and capabilities ----------------------------------

def test_exec_inherits_seccomp_and_capabilities(env):
    id, path = env.bundle_with(["sleep", "60"])
    runtime.create(id, path, root=env.root)
    runtime.start(id, root=env.root)
    try:
        out = env.cli("exec", id, "sh", "-c", "grep -E '^(CapEff|Seccomp):' /proc/self/status; "
                      "unshare -U -r true 2>&1").stdout
    finally:
        runtime.delete(id, force=True, root=env.root)
    assert "Seccomp:\t2" in out and "CapEff:\t00000000a80425fb" in out and "Operation not permitted" in out


# -- A18: volumes are closed to host users -------------------------------------------------

def test_volume_data_is_closed_to_host_users(tmp_path):
    store = Store(tmp_path / "store")
    v = volumes.create(store, "private")
    os.chmod(tmp_path, 0o755)
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(1000)
            os.setuid(1000)
            os.listdir(v["Mountpoint"])
            os._exit(1)
        except PermissionError:
            os._exit(0)
        except BaseException:
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert oct(os.stat(store.root / "volumes").st_mode & 0o777) == "0o700"

