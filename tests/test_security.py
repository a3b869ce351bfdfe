"""Docker's default confinement, for real: capabilities, no_new_privs, seccomp, masked paths.

Each test starts a real container with minidocker's runtime on a busybox
rootfs (the runtime tests' image) and asks the kernel, from inside, what the
container may do. The bundles come from bundle.spec + security.apply, exactly
what the engine hands the runtime. security.md section 1 rows A1-A8 and
section 2.2 rows R1, R7, R8.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest

from minidocker import bundle, security
from minidocker.errors import MinidockerError
from minidocker.runtime import seccomp, seccomp_profile

from test_runtime import Env, make_rootfs, reaping  # noqa: F401  (the image and the runner we share)
from test_runtime import rootfs  # noqa: F401  fixture

pytestmark = pytest.mark.root


class SecEnv(Env):
    def bundle_with(self, args, opts=None, rootfs=None, **kw):
        """A bundle as the engine writes it, with docker-style security options: (id, path)."""
        id = "t" + os.urandom(5).hex()
        self.ids.append(id)
        config = bundle.spec(rootfs or self.rootfs, args, id=id + "0123456789",
                             cgroups_path=f"/minidocker-rt-{id}", **kw)
        security.apply(config, security.security(opts or {}))
        path = self.tmp / id
        bundle.write(path, config)
        return id, path

    def run_with(self, args, opts=None, pass_fds=(), **kw):
        """Run `args` with docker-style security options; (rc, stdout, stderr)."""
        id, path = self.bundle_with(args, opts, **kw)
        p = subprocess.run([sys.executable, "-m", "minidocker.runtime", "--root", self.root, "run",
                            "--bundle", str(path), id], capture_output=True, text=True, timeout=60,
                           pass_fds=pass_fds)
        return p.returncode, p.stdout, p.stderr


@pytest.fixture
def env(tmp_path, rootfs):  # noqa: F811
    with reaping(SecEnv(tmp_path, rootfs)) as e:
        yield e


def status(out):
    return dict(line.split(":\t", 1) for line in out.splitlines() if ":\t" in line)


STATUS = "grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status"


# -- A1 capabilities -------------------------------------------------------------

def test_default_capabilities_seccomp_and_no_new_privs_off(env):
    rc, out, err = env.run_with(["sh", "-c", STATUS])
    s = status(out)
    assert rc == 0, err
    assert s["CapEff"] == s["CapPrm"] == s["CapBnd"] == "00000000a80425fb"
    assert s["CapInh"] == s["CapAmb"] == "0000000000000000"
    assert s["NoNewPrivs"] == "0" and s["Seccomp"] == "2"


def test_cap_drop_all_and_cap_add(env):
    s = status(env.run_with(["sh", "-c", STATUS], {"cap_drop": ["ALL"]})[1])
    assert s["CapEff"] == s["CapBnd"] == "0000000000000000"
    s = status(env.run_with(["sh", "-c", STATUS], {"cap_drop": ["ALL"], "cap_add": ["net_admin"]})[1])
    assert s["CapEff"] == f"{1 << 12:016x}"
    s = status(env.run_with(["sh", "-c", STATUS], {"cap_drop": ["CAP_MKNOD", "chown"]})[1])
    assert int(s["CapEff"], 16) == 0xa80425fb & ~(1 << 27) & ~1


def test_non_root_user_has_no_effective_capabilities(env):
    s = status(env.run_with(["sh", "-c", STATUS], {"cap_add": ["SYS_ADMIN"]}, user="1000")[1])
    assert s["CapEff"] == s["CapPrm"] == "0000000000000000"
    assert int(s["CapBnd"], 16) & 1 << 21


@pytest.mark.parametrize("opts,message", [
    ({"cap_add": ["CAP_FLY"]}, "unknown capability"),
    ({"cap_drop": ["nonsense"]}, "unknown capability"),
    ({"security_opt": ["no-new-privileges=maybe"]}, "no-new-privileges"),
    ({"security_opt": ["frobnicate=1"]}, "invalid --security-opt"),
])
def test_bad_security_flags_are_exit_125(opts, message):
    with pytest.raises(MinidockerError) as e:
        security.security(opts)
    assert e.value.exit_code == 125 and message in str(e.value)


def test_privileged_has_every_capability_no_seccomp_no_masks(env):
    rc, out, _ = env.run_with(["sh", "-c", STATUS + "; wc -c < /proc/timer_list; grep -c ' /sys ' /proc/self/mountinfo"],
                              {"privileged": True})
    s = status(out)
    host = status(open("/proc/self/status").read())
    assert s["CapEff"] == s["CapBnd"] == host["CapBnd"]   # all we have (the host may hold back some)
    assert s["Seccomp"] == "0"
    assert out.splitlines()[-2].strip() != "0"   # /proc/timer_list is not masked


# -- A2 no_new_privs ---------------------------------------------------------------

def test_no_new_privileges_keeps_file_capabilities_from_raising_privileges(env, tmp_path):
    """A binary with file capabilities (like a setuid one) raises uid 1000's privileges, unless NNP.

    busybox drops a setuid bit itself, so the elevation we watch is file
    capabilities: CAP_NET_RAW, permitted and effective, in security.capability.
    """
    import shutil
    import struct
    src = tmp_path / "fcaps"
    src.mkdir()
    shutil.copy("/bin/busybox", src / "busybox")
    os.setxattr(src / "busybox", "security.capability", struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0))
    mount = [{"destination": "/fcaps", "type": "bind", "source": str(src), "options": ["rbind"]}]
    probe = ["/fcaps/busybox", "grep", "-E", "^(CapEff|NoNewPrivs)", "/proc/self/status"]
    s = status(env.run_with(probe, {}, user="1000", mounts=mount)[1])
    assert s == {"CapEff": f"{1 << 13:016x}", "NoNewPrivs": "0"}
    s = status(env.run_with(probe, {"security_opt": ["no-new-privileges"]}, user="1000", mounts=mount)[1])
    assert s == {"CapEff": "0000000000000000", "NoNewPrivs": "1"}


# -- A3 seccomp --------------------------------------------------------------------

def test_seccomp_refuses_namespaces_and_mounts_and_unconfined_allows_them(env):
    script = ("exec 2>&1; unshare -U -r true; echo unshare=$?; mkdir -p /m; mount -t tmpfs t /m; echo mount=$?; "
              "grep Seccomp: /proc/self/status")
    out = env.run_with(["sh", "-c", script + " 2>&1"], {"cap_add": ["SYS_ADMIN"], "security_opt": []})[1]
    assert "mount=0" in out   # with CAP_SYS_ADMIN the profile lets mount through
    out = env.run_with(["sh", "-c", script + " 2>&1"])[1]
    assert "unshare=1" in out and "mount=1" in out and "unshare=0" not in out
    assert "Operation not permitted" in out   # unshare's EPERM from the filter
    out = env.run_with(["sh", "-c", script + " 2>&1"], {"security_opt": ["seccomp=unconfined"]})[1]
    assert "unshare=0" in out and "Seccomp:\t0" in out


def test_clone3_is_enosys_and_clone_with_namespace_flags_is_eperm(env, tmp_path):
    # a tiny static probe is overkill: python is not in the image, so ask the filter directly
    profile = seccomp_profile.default_profile(bundle.CAPABILITIES)
    rules = {n: r for r in profile["syscalls"] for n in r["names"] if "args" in r or r["action"] != "SCMP_ACT_ALLOW"}
    assert rules["clone3"]["errnoRet"] == 38
    assert rules["clone"]["args"][0]["value"] == 0x7E020000
    for name in ("mount", "umount2", "unshare", "setns", "bpf", "perf_event_open", "fsopen", "keyctl",
                 "add_key", "kexec_load", "init_module", "pivot_root", "swapon", "userfaultfd",
                 "io_uring_setup", "open_tree", "move_mount"):
        assert name not in profile["syscalls"][0]["names"], name


def test_seccomp_in_a_child_process_of_ours(tmp_path):
    """The filter itself, without a container: clone3 ENOSYS, unshare EPERM, ordinary calls fine."""
    import subprocess
    import sys
    code = ("import ctypes, os, json; from minidocker.runtime import seccomp, seccomp_profile as p;"
            "seccomp.load(p.default_profile([]));"
            "libc = ctypes.CDLL(None, use_errno=True);"
            "r1 = libc.syscall(435, 0, 0); e1 = ctypes.get_errno();"
            "r2 = libc.unshare(0x10000000); e2 = ctypes.get_errno();"
            "print(json.dumps([r1, e1, r2, e2, os.listdir('/')[:1] != [], seccomp.mode()]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == [-1, 38, -1, 1, True, 2]


def test_seccomp_profile_file_and_bad_files(env, tmp_path):
    deny_mkdir = dict(seccomp_profile.default_profile(bundle.CAPABILITIES))
    deny_mkdir["syscalls"] = [dict(r, names=[n for n in r["names"] if n not in ("mkdir", "mkdirat")])
                              for r in deny_mkdir["syscalls"]]
    good = tmp_path / "p.json"
    good.write_text(json.dumps(deny_mkdir))
    rc, out, _ = env.run_with(["sh", "-c", "mkdir /x 2>&1; echo rc=$?"], {"security_opt": [f"seccomp={good}"]})
    assert "Operation not permitted" in out and "rc=1" in out
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    for path, message in ((bad, "decoding seccomp profile"), (tmp_path / "none.json", "opening seccomp profile")):
        with pytest.raises(MinidockerError) as e:
            security.security({"security_opt": [f"seccomp={path}"]})
        assert e.value.exit_code == 125 and message in str(e.value)
    (tmp_path / "odd.json").write_text('{"defaultAction": "SCMP_ACT_EXPLODE"}')
    with pytest.raises(MinidockerError):
        security.security({"security_opt": [f"seccomp={tmp_path / 'odd.json'}"]})


def test_a_profile_is_compiled_once_per_process_and_differs_by_content():
    profile = seccomp_profile.default_profile(bundle.CAPABILITIES)
    first, again = seccomp.Filter(profile), seccomp.Filter(json.loads(json.dumps(profile)))
    assert first.bpf is again.bpf and len(first.bpf) % 8 == 0   # whole BPF instructions
    other = seccomp_profile.default_profile(bundle.CAPABILITIES + ["CAP_SYS_ADMIN"])   # mount, unshare...
    assert seccomp.Filter(other).bpf != first.bpf


def test_docker_format_profile_with_includes_by_capability(tmp_path):
    docker_style = {"defaultAction": "SCMP_ACT_ERRNO",
                    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
                    "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"},
                                 {"names": ["mount"], "action": "SCMP_ACT_ALLOW",
                                  "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                                 {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
                                  "excludes": {"caps": ["CAP_SYS_ADMIN"]}}]}
    f = tmp_path / "d.json"
    f.write_text(json.dumps(docker_style))
    plain = seccomp.from_file(f, bundle.CAPABILITIES)
    admin = seccomp.from_file(f, ["CAP_SYS_ADMIN"])
    assert [r["names"] for r in plain["syscalls"]] == [["read"], ["clone3"]]
    assert [r["names"] for r in admin["syscalls"]] == [["read"], ["mount"]]


# -- A4, A5, A7, A8: masked and read-only paths, devices --------------------------

def test_masked_readonly_paths_and_devices(env):
    script = ("exec 2>&1; wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; touch /sys/firmware/x 2>&1; "
              "echo 1 > /proc/sys/kernel/domainname 2>&1; echo x > /proc/sysrq-trigger 2>&1; "
              "umount /proc/kcore 2>&1; echo umount=$?; "
              "mknod /tmp/blk b 8 0 && head -c1 /tmp/blk 2>&1; ls /dev")
    rc, out, err = env.run_with(["sh", "-c", script])
    lines = out.splitlines()
    assert lines[0].strip() == "0" and lines[1].strip() == "0"
    assert out.count("Read-only file system") >= 2   # sysrq-trigger is missing on some kernels
    assert "umount=1" in out or "umount=255" in out
    assert "Operation not permitted" in out   # the devices cgroup refuses the block device
    assert not any(name in out.split() for name in ("sda", "mem", "kmsg"))


# -- R1: fds and the working directory --------------------------------------------

def test_no_inherited_fds_and_workdir_through_proc_fd_fails(env):
    # fds to the host's / and cgroupfs, handed to the runtime as a leaky caller would (CVE-2024-21626)
    keep = [os.open("/", os.O_RDONLY), os.open("/sys/fs/cgroup", os.O_RDONLY)]
    try:
        rc, out, _ = env.run_with(["sh", "-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '"], pass_fds=keep)
        assert out.split() == ["0", "1", "2", "3"]   # 3 is ls's own directory fd
        for n in range(3, 12):
            rc, out, err = env.run_with(["cat", "../../../etc/shadow"], cwd=f"/proc/self/fd/{n}", pass_fds=keep)
            assert rc != 0 and "root:" not in out
    finally:
        for fd in keep:
            os.close(fd)


# -- R7 --------------------------------------------------------------------------

def test_cgroup_release_agent_and_cgroup_mount_are_refused(env):
    script = ("for f in /sys/fs/cgroup/*/release_agent; do echo x > $f 2>&1; done; mkdir -p /cg; "
              "mount -t cgroup -o rdma cgroup /cg 2>&1; echo mount=$?; unshare -Urm true 2>&1; echo u=$?; "
              "for d in /sys/fs/cgroup/*/; do touch $d/x 2>&1; done")
    rc, out, _ = env.run_with(["sh", "-c", script])
    assert "mount=1" in out and "u=1" in out
    assert "Read-only file system" in out


def test_sys_fs_cgroup_holds_only_read_only_hierarchies(env):
    """As under runc 1.1 on a v1 host: the tmpfs at /sys/fs/cgroup is writable (it holds only mount
    points), every hierarchy bound into it is read-only, so no cgroup file can be changed."""
    out = env.run_with(["sh", "-c", "exec 2>&1; for d in /sys/fs/cgroup/*/; do mkdir $d/x; echo rc=$?; done"])[1]
    assert "rc=0" not in out and "Read-only file system" in out


# -- the oracle: runc applies the same bundle ---------------------------------------------

RUNC = shutil.which("runc") or "/usr/sbin/runc"
ORACLE = ("exec 2>&1; grep -E '^(Cap(Prm|Eff|Bnd)|NoNewPrivs|Seccomp):' /proc/self/status; "
          "unshare -U -r true; echo unshare=$?; mkdir -p /m; mount -t tmpfs t /m; echo mount=$?; "
          "chown 1000 /tmp; echo chown=$?; chown 0 /tmp; mknod /tmp/n.$$ c 1 3; echo mknod=$?; rm -f /tmp/n.$$")


@pytest.mark.parametrize("opts", [{}, {"cap_add": ["SYS_ADMIN"]}, {"cap_drop": ["ALL"]},
                                  {"security_opt": ["no-new-privileges"]},
                                  {"security_opt": ["seccomp=unconfined"]}], ids=str)
def test_runc_enforces_our_bundle_the_same_way(env, opts):
    """Differential: runc reads our linux.seccomp and capability sets; the probe must see the same."""
    id, path = env.bundle_with(["sh", "-c", ORACLE], opts)
    theirs = subprocess.run([RUNC, "--root", str(env.tmp / "runc-state"), "run", "--bundle", str(path), id],
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert theirs.returncode == 0, theirs.stderr
    ours = env.cli("run", "--bundle", str(path), id + "m")
    assert ours.returncode == 0, ours.stderr
    assert "Seccomp:" in ours.stdout and ours.stdout == theirs.stdout


def test_read_only_root_keeps_volumes_and_dev_shm_writable(env, tmp_path):
    data = tmp_path / "rw"
    data.mkdir()
    mount = [{"destination": "/data", "type": "bind", "source": str(data), "options": ["rbind"]}]
    out = env.run_with(["sh", "-c", "exec 2>&1; touch /x; touch /data/y && touch /dev/shm/z && echo writable"],
                       {"read_only": True}, mounts=mount)[1]
    assert "Read-only file system" in out and "writable" in out and os.listdir(data) == ["y"]
