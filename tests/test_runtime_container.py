"""What a process sees inside a container made by our runtime, asked of real containers.

Namespaces, PID 1, hostname, /dev, mounts and their options, users and groups
from the image, capabilities, rlimits, open fds, loopback, no_new_privs, the
cgroup view, a terminal; and images that try to steer mounts out of the root.
The fixtures (a busybox image, a state root that must end up empty) are in
test_runtime.py.
"""
import json
import os
import subprocess
import sys

import pytest

from minidocker import bundle, runtime
from minidocker.errors import MinidockerError
from minidocker.runtime import linux

from test_runtime import env, make_rootfs, ns_inodes, rootfs  # noqa: F401  (fixtures and helpers)

pytestmark = pytest.mark.root


def test_namespaces_differ_from_the_host_and_the_program_is_pid_1(env):
    id, path = env.bundle(["sleep", "60"])
    pid = runtime.create(id, path, root=env.root)
    try:
        host, ours = ns_inodes(os.getpid()), ns_inodes(pid)
        assert all(host[n] != ours[n] for n in host), (host, ours)
    finally:
        runtime.delete(id, root=env.root)
    rc, out, _ = env.run(["sh", "-c", "echo $$; hostname; cat /proc/1/cmdline | tr '\\0' ' '"])
    pid1, hostname, cmd = out.splitlines()
    assert rc == 0 and pid1 == "1" and cmd.startswith("sh -c")
    assert hostname == (env.ids[-1] + "0123456789")[:12]  # first 12 characters of the id


def test_dev_holds_only_the_oci_devices(env):
    rc, out, _ = env.run(["ls", "-lLn", "/dev"])
    devices = {line.split()[-1]: line.split()[4] + line.split()[5] for line in out.splitlines()
               if line[:1] in "cb" and "std" not in line}  # std* follow our own fds
    assert devices == {"null": "1,3", "zero": "1,5", "full": "1,7", "random": "1,8",
                       "urandom": "1,9", "tty": "5,0", "ptmx": "5,2"}


def test_standard_mounts_with_their_options(env):
    rc, out, _ = env.run(["cat", "/proc/self/mountinfo"])
    mounts = {}
    for line in out.splitlines():
        left, right = line.split(" - ")
        mounts[left.split()[4]] = (right.split()[0], left.split()[5], right.split()[2])
    assert mounts["/proc"][0] == "proc" and {"nosuid", "nodev", "noexec"} <= set(mounts["/proc"][1].split(","))
    assert mounts["/dev"][0] == "tmpfs" and "size=65536k" in mounts["/dev"][2]
    assert mounts["/dev/shm"][0] == "tmpfs" and "size=65536k" in mounts["/dev/shm"][2]
    assert mounts["/sys"][1].startswith("ro,")
    assert mounts["/proc/sys"][1].startswith("ro,")  # read-only path
    assert mounts["/dev/mqueue"][0] == "mqueue" and mounts["/dev/pts"][0] == "devpts"
    rc, out, _ = env.run(["sh", "-c", "wc -c < /proc/keys; ls /sys/firmware | wc -l; "
                                      "echo x 2>&1 > /proc/sys/kernel/domainname; "
                                      "umount /proc/keys 2>&1; true"])
    keys, firmware, write, umount = out.splitlines()
    assert (keys, firmware) == ("0", "0") and "Read-only" in write and "ermit" in umount


def test_bind_mount_and_readonly_root(env, tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "hello").write_text("hi")
    mount = {"destination": "/data", "type": "bind", "source": str(src), "options": ["rbind", "ro"]}
    rc, out, _ = env.run(["sh", "-c", "cat /data/hello; echo; touch /data/x 2>&1; touch /y 2>&1; true"],
                         mounts=[mount], extra={"root": {"path": str(env.rootfs), "readonly": True}})
    assert out.splitlines()[0] == "hi" and out.count("Read-only file system") == 2
    assert os.listdir(src) == ["hello"]


def test_user_and_groups_come_from_the_containers_passwd(env):
    assert env.run(["id"])[1].strip() == "uid=0(root) gid=0(root) groups=0(root),10(wheel)"
    assert env.run(["id"], user="alice")[1].strip() == \
        "uid=1000(alice) gid=1000(alice) groups=50(staff),1000(alice)"
    assert env.run(["id"], user="1000:1000")[1].strip() == "uid=1000(alice) gid=1000(alice) groups=1000(alice)"
    rc, out, _ = env.run(["sh", "-c", "echo $HOME; grep -E '^Cap(Prm|Eff)' /proc/self/status"], user="alice")
    assert out.split() == ["/home/alice", "CapPrm:", "0000000000000000", "CapEff:", "0000000000000000"]
    with pytest.raises(MinidockerError):
        bundle.spec(env.rootfs, ["id"], user="nobody-here")


def test_capabilities_are_dockers_fourteen(env):
    rc, out, _ = env.run(["grep", "^Cap", "/proc/self/status"])
    caps = dict(line.split(":\t") for line in out.splitlines())
    assert caps == {"CapInh": "0000000000000000", "CapPrm": "00000000a80425fb",
                    "CapEff": "00000000a80425fb", "CapBnd": "00000000a80425fb",
                    "CapAmb": "0000000000000000"}


def test_rlimits_and_only_fds_0_1_2(env):
    limits = [{"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654}]
    id, path = env.bundle(["sh", "-c", "ulimit -n; ulimit -Hn; ls /proc/self/fd"])
    config = json.loads((path / "config.json").read_text())
    config["process"]["rlimits"] = limits
    (path / "config.json").write_text(json.dumps(config))
    extra = os.open("/", os.O_RDONLY)  # an fd the caller holds must not enter (CVE-2024-21626)
    try:
        p = subprocess.run([sys.executable, "-m", "minidocker.runtime", "--root", env.root, "run",
                            "--bundle", str(path), id], capture_output=True, text=True,
                           pass_fds=(extra,), timeout=30)
    finally:
        os.close(extra)
    soft, hard, *fds = p.stdout.split()
    assert (soft, hard) == ("321", "654")
    assert fds == ["0", "1", "2", "3"]  # 3 is ls's own directory fd


def test_loopback_is_up(env):
    out = env.run(["cat", "/sys/class/net/lo/operstate", "/proc/net/dev"])[1]
    assert out.split()[0] in ("unknown", "up") and "eth0" not in out
    assert env.run(["sh", "-c", "ping -c1 -W1 127.0.0.1 >/dev/null && echo ok"])[1].strip() == "ok"


def test_refuses_proc_as_a_symlink(env, tmp_path):
    bad = make_rootfs(tmp_path / "badroot")
    os.rmdir(bad / "proc")
    os.symlink("/tmp", bad / "proc")
    id, path = env.bundle(["true"], extra={"root": {"path": str(bad), "readonly": False}})
    with pytest.raises(MinidockerError, match="/proc .*ordinary directory"):
        runtime.create(id, path, root=env.root)


def test_dev_symlink_in_the_image_cannot_reach_the_host(env, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    bad = make_rootfs(tmp_path / "badroot")
    os.symlink(str(victim), bad / "mnt")  # absolute symlink: must resolve inside the root
    mount = {"destination": "/mnt/sub", "type": "tmpfs", "source": "tmpfs", "options": []}
    extra = {"root": {"path": str(bad), "readonly": False}}
    rc, out, err = env.run(["true"], mounts=[mount], extra=extra)
    assert rc == 1 and "/mnt" in err  # the link dangles inside the root: refused
    inside = bad / str(victim).lstrip("/")
    inside.mkdir(parents=True)
    rc, out, err = env.run(["sh", "-c", "grep -c ' /mnt/sub ' /proc/self/mountinfo; ls -d " + str(victim) + "/sub"],
                           mounts=[mount], extra=extra)
    assert (rc, out.split()) == (0, ["0", str(victim) + "/sub"]), err  # mounted at the link's target
    assert os.listdir(victim) == [] and os.listdir(inside) == ["sub"]


def test_works_when_the_host_root_has_shared_propagation(env):
    id, path = env.bundle(["sh", "-c", "echo inside"])
    cmd = ["unshare", "-m", "--propagation", "shared", sys.executable, "-m", "minidocker.runtime",
           "--root", env.root, "run", "--bundle", str(path), id]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert (p.returncode, p.stdout) == (0, "inside\n"), p.stderr


def test_terminal_over_a_console_socket(env, tmp_path):
    import socket
    from minidocker.runtime import terminal
    id, path = env.bundle(["sh", "-c", "tty; echo $((6*7))"], terminal=True)
    sock_path = str(tmp_path / "console.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
        srv.bind(sock_path)
        srv.listen(1)
        runtime.create(id, path, root=env.root, console_socket=sock_path)
        master, name = terminal.receive_master(srv)
    try:
        assert name.startswith("/dev/pts/")
        runtime.start(id, root=env.root)
        out = b""
        while True:
            try:
                chunk = os.read(master, 1024)
            except OSError:  # EIO: the other side has closed
                break
            if not chunk:
                break
            out += chunk
        assert out.decode().split() == ["/dev/pts/0", "42"]
    finally:
        os.close(master)
        runtime.delete(id, force=True, root=env.root)


def test_no_new_privileges_when_asked(env):
    assert env.run(["grep", "NoNewPrivs", "/proc/self/status"])[1].split() == ["NoNewPrivs:", "0"]
    id, path = env.bundle(["grep", "NoNewPrivs", "/proc/self/status"])
    config = json.loads((path / "config.json").read_text())
    config["process"]["noNewPrivileges"] = True
    (path / "config.json").write_text(json.dumps(config))
    p = env.cli("run", "--bundle", str(path), id)
    assert p.stdout.split() == ["NoNewPrivs:", "1"], p.stderr


def test_joins_a_network_namespace_given_by_path(env, tmp_path):
    nsfile = tmp_path / "netns"
    nsfile.touch()
    subprocess.run(["unshare", f"--net={nsfile}", "true"], check=True)
    try:
        id, path = env.bundle(["sleep", "60"], namespaces=[
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
            {"type": "network", "path": str(nsfile)}])
        pid = runtime.create(id, path, root=env.root)
        try:
            assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(nsfile).st_ino
        finally:
            runtime.delete(id, root=env.root)
    finally:
        linux.umount2(str(nsfile), linux.MNT_DETACH)


def test_cgroup_view_matches_the_host_cgroup_version(env):
    from minidocker.runtime import cgroups
    rc, out, err = env.run(["sh", "-c", "cat /proc/self/cgroup; ls /sys/fs/cgroup; echo procs; "
                                   "cat /sys/fs/cgroup/pids/cgroup.procs 2>/dev/null"])
    assert rc == 0, err
    if cgroups.mode() == "v2":  # private cgroup namespace: the container's group is its root
        assert out.splitlines()[0] == "0::/" and "cgroup.procs" in out
    else:  # v1: no cgroup namespace (as Docker on v1), one read-only directory per hierarchy
        pids = next(line for line in out.splitlines() if ":pids:" in line)
        assert pids.endswith(f"/minidocker-rt-{env.ids[-1]}") and "memory" in out.split()
        # and that directory is the container's own group (PID 1 is in it), though the init
        # built this view before the stage had moved it there (init.stage)
        assert "1" in out.split("procs", 1)[1].split()


def test_sysctls_apply_to_the_containers_namespaces_only(env):
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host_before = f.read()
    id, path = env.bundle(["cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/msgmax"])
    config = json.loads((path / "config.json").read_text())
    config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.msgmax": "4242"}
    (path / "config.json").write_text(json.dumps(config))
    p = subprocess.run([sys.executable, "-m", "minidocker.runtime", "--root", env.root, "run",
                        "--bundle", str(path), id], capture_output=True, text=True, timeout=30)
    assert p.stdout.split() == ["1", "4242"], p.stderr
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read() == host_before  # the host's own value is untouched


def test_cwd_through_a_leaked_fd_is_refused(env):
    # CVE-2024-21626: a cwd of /proc/self/fd/N, N a host directory the runtime still held.
    host_dir = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
    try:
        id, path = env.bundle(["pwd"], cwd=f"/proc/self/fd/{host_dir}")
        p = subprocess.run([sys.executable, "-m", "minidocker.runtime", "--root", env.root, "run",
                            "--bundle", str(path), id], capture_output=True, text=True, timeout=30,
                           pass_fds=(host_dir,))
    finally:
        os.close(host_dir)
    assert p.returncode == 1 and p.stdout == "" and "Traceback" not in p.stderr, (p.stdout, p.stderr)
