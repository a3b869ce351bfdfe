"""The OCI runtime, run for real on a busybox rootfs built from the host's static busybox.

Each test asks one question of a real container and checks nothing is left
behind: no state directory, no cgroup, no process, no mount on the host.
"""
import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid

import pytest

from minidocker import bundle
from minidocker.errors import Conflict, MinidockerError, NotFound
from minidocker import runtime
from minidocker.runtime import linux, statedir

pytestmark = pytest.mark.root
PASSWD = "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000:Alice:/home/alice:/bin/sh\n"
GROUP = "root:x:0:\nwheel:x:10:root\nalice:x:1000:\nstaff:x:50:alice\n"


def make_rootfs(path):
    """A tiny image: static busybox, one symlink per applet, passwd and group."""
    (path / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", path / "bin" / "busybox")
    copy_libraries("/bin/busybox", path)  # nothing to do for busybox-static
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout
    for name in applets.split():
        if name != "busybox":
            os.symlink("busybox", path / "bin" / name)
    for d in ("etc", "proc", "sys", "dev", "tmp", "root", "home/alice"):
        (path / d).mkdir(parents=True, exist_ok=True)
    (path / "etc" / "passwd").write_text(PASSWD)
    (path / "etc" / "group").write_text(GROUP)
    shutil.copy(os.path.join(os.path.dirname(__file__), "probe.sh"), path / "probe.sh")
    return path


def copy_libraries(binary, root):
    """Copy the shared libraries a dynamic binary needs to the same paths under `root`."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True).stdout
    for line in out.splitlines():
        lib = next((w for w in line.split() if w.startswith("/")), None)
        if lib:
            dest = root / lib.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(lib, dest)


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory):
    return make_rootfs(tmp_path_factory.mktemp("image") / "rootfs")


class Env:
    """A state root and bundles in tmp_path; checks on exit that nothing leaked."""

    def __init__(self, tmp_path, rootfs):
        self.tmp, self.rootfs, self.root = tmp_path, rootfs, str(tmp_path / "state")
        self.ids = []

    def bundle(self, args, **kw):
        id = "t" + uuid.uuid4().hex[:10]
        self.ids.append(id)
        kw.setdefault("cgroups_path", f"/minidocker-rt-{id}")
        config = bundle.spec(self.rootfs, args, id=id + "0123456789", **kw)
        path = self.tmp / id
        bundle.write(path, config)
        return id, path

    def cli(self, *args, input=None, timeout=30):
        return subprocess.run([sys.executable, "-m", "minidocker.runtime", "--root", self.root, *args],
                              capture_output=True, text=True, input=input, timeout=timeout)

    def cli_create(self, *args):
        """create hands its stdio to the container: files, not pipes we would wait on."""
        with open(self.tmp / "create.out", "w+") as out:
            p = subprocess.run([sys.executable, "-m", "minidocker.runtime", "--root", self.root,
                                "create", *args], stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                               timeout=30)
        return p.returncode

    def run(self, args, **kw):
        """`minidocker-runtime run` of a fresh bundle: (exit status, stdout, stderr)."""
        id, path = self.bundle(args, **kw)
        p = self.cli("run", "--bundle", str(path), id)
        return p.returncode, p.stdout, p.stderr

    def check_clean(self):
        """Fail if a container was left behind, but first remove it: a failing test must not leak."""
        left = os.listdir(self.root) if os.path.isdir(self.root) else []
        groups = [id for id in self.ids if cgroup_exists(f"/minidocker-rt-{id}")]
        for id in left:
            try:
                runtime.delete(id, force=True, root=self.root)
            except MinidockerError:
                pass
        for id in groups:
            from minidocker.runtime import cgroups
            try:
                cgroups.open(f"/minidocker-rt-{id}").remove()
            except NotFound:
                pass
        assert left == [], f"state directories left: {left}"
        assert groups == [], f"cgroups left: {groups}"


def cgroup_exists(path) -> bool:
    """Is there a cgroup at `path` in any hierarchy (v1 or v2)?"""
    from minidocker.runtime import cgroups
    try:
        cgroups.open(path)
        return True
    except NotFound:
        return False


@contextlib.contextmanager
def reaping(e):
    """Use runner `e` as the engine's monitor would: the inits we create are re-parented to
    us, and we reap them; afterwards, nothing of theirs may be left."""
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)
    yield e
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 0)
    e.check_clean()


@pytest.fixture
def env(tmp_path, rootfs):
    with reaping(Env(tmp_path, rootfs)) as e:
        yield e


def ns_inodes(pid):
    return {n: os.stat(f"/proc/{pid}/ns/{n}").st_ino for n in ("mnt", "uts", "ipc", "pid", "net")}


def test_lifecycle_create_start_state_kill_delete(env):
    id, path = env.bundle(["sleep", "60"])
    pid = runtime.create(id, path, root=env.root)
    st = runtime.state(id, root=env.root)
    assert st["status"] == "created" and st["pid"] == pid and st["bundle"] == str(path)
    assert st["ociVersion"] and st["id"] == id
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert b"sleep" not in f.read()  # created: the program has not run yet
    runtime.start(id, root=env.root)
    assert runtime.state(id, root=env.root)["status"] == "running"
    with pytest.raises(Conflict):
        runtime.start(id, root=env.root)  # start of a running container
    with pytest.raises(Conflict):
        runtime.delete(id, root=env.root)  # delete of a running one without force
    runtime.kill(id, "SIGKILL", root=env.root)
    statedir.wait_gone(json.loads((env.tmp / "state" / id / "state.json").read_text()))
    assert runtime.state(id, root=env.root)["status"] == "stopped"
    with pytest.raises(Conflict):
        runtime.kill(id, "TERM", root=env.root)  # nothing left to signal
    runtime.delete(id, root=env.root)
    with pytest.raises(NotFound):
        runtime.state(id, root=env.root)
    assert statedir.start_time(pid) is None


def test_unknown_id_and_duplicate_id(env):
    for verb in (runtime.state, runtime.start, runtime.delete):
        with pytest.raises(NotFound):
            verb("nosuch", root=env.root)
    with pytest.raises(NotFound):
        runtime.kill("nosuch", 9, root=env.root)
    id, path = env.bundle(["true"])
    runtime.create(id, path, root=env.root)
    with pytest.raises(Conflict):
        runtime.create(id, path, root=env.root)
    runtime.delete(id, root=env.root)  # a created container may be deleted without force


def test_kill_accepts_names_and_numbers_and_term_stops_a_created_container(env):
    assert statedir.parse_signal("TERM") == statedir.parse_signal("SIGTERM") == statedir.parse_signal("15") == 15
    with pytest.raises(MinidockerError):
        statedir.parse_signal("NOPE")
    for sig in (15, "HUP", "SIGUSR1"):
        id, path = env.bundle(["sleep", "60"])
        pid = runtime.create(id, path, root=env.root)
        runtime.kill(id, sig, root=env.root)
        statedir.wait_gone({"pid": pid, "start_time": statedir.start_time(pid) or -1})
        assert runtime.state(id, root=env.root)["status"] == "stopped"
        runtime.delete(id, root=env.root)
    id, path = env.bundle(["sh", "-c", "trap 'exit 9' USR1; echo ready; while :; do sleep 0.1; done"])
    r, w = os.pipe()
    try:  # after start, the program's own handlers answer, not ours
        pid = runtime.create(id, path, root=env.root, stdio=(0, w, 2))
        os.close(w)
        w = None
        runtime.start(id, root=env.root)
        assert os.read(r, 6) == b"ready\n"
        runtime.kill(id, "USR1", root=env.root)
        _, status = os.waitpid(pid, 0)  # we are its subreaper
        assert os.waitstatus_to_exitcode(status) == 9  # the trap ran: our handlers were gone
        assert runtime.state(id, root=env.root)["status"] == "stopped"
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
        runtime.delete(id, force=True, root=env.root)


def test_force_delete_kills_a_running_container(env):
    id, path = env.bundle(["sleep", "60"])
    pid = runtime.create(id, path, root=env.root)
    runtime.start(id, root=env.root)
    runtime.delete(id, force=True, root=env.root)
    assert statedir.start_time(pid) is None


def test_cli_verbs_and_run_exit_status(env):
    id, path = env.bundle(["sh", "-c", "exit 7"])
    assert env.cli_create("--bundle", str(path), "--pid-file", str(env.tmp / "pid"), id) == 0
    state = json.loads(env.cli("state", id).stdout)
    assert state["status"] == "created" and int((env.tmp / "pid").read_text()) == state["pid"]
    assert env.cli("start", id).returncode == 0
    bad = env.cli("start", id)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert env.cli("delete", "--force", id).returncode == 0
    assert env.cli("state", id).returncode == 1
    assert env.run(["sh", "-c", "exit 32"])[0] == 32
    # pyproject's entry point: the installed script, or (source tree only) what it would run
    script = shutil.which("minidocker-runtime", path=os.path.dirname(sys.executable))
    cmd = [script] if script else [sys.executable, "-c",
                                   "import sys; from minidocker.runtime.cli import main; sys.exit(main())"]
    id, path = env.bundle(["sh", "-c", "exit 4"])
    p = subprocess.run(cmd + ["--root", env.root, "run", "--bundle", str(path), id], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 4, p.stderr
    id, path = env.bundle(["sleep", "60"])
    run = subprocess.Popen([sys.executable, "-m", "minidocker.runtime", "--root", env.root, "run",
                            "--bundle", str(path), id])
    try:
        while env.cli("state", id).stdout.count('"running"') == 0:
            assert run.poll() is None
        assert env.cli("kill", id, "KILL").returncode == 0
        assert run.wait(timeout=10) == 137  # killed by SIGKILL: 128 + 9, like docker
    finally:
        run.kill()
        run.wait()


def test_missing_command_is_127_and_not_executable_is_126(env):
    for args, code in ((["nosuchcommand"], 127), (["/etc"], 126), (["/etc/passwd"], 126)):
        id, path = env.bundle(args)
        with pytest.raises(MinidockerError) as err:
            runtime.create(id, path, root=env.root)
        assert err.value.exit_code == code, err.value
    rc, _out, err = env.run(["nosuchcommand"])
    assert rc == 1 and "executable file not found" in err and "Traceback" not in err


def test_exec_joins_the_container(env):
    id, path = env.bundle(["sleep", "60"])
    pid = runtime.create(id, path, root=env.root)
    runtime.start(id, root=env.root)
    try:
        out = env.cli("exec", id, "sh", "-c", "cat /proc/1/cmdline; echo; hostname")
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0].startswith("sleep") and lines[1] == (id + "0123456789")[:12]
        assert env.cli("exec", id, "sh", "-c", "exit 3").returncode == 3
        ignored = env.cli("exec", id, "grep", "SigIgn", "/proc/self/status").stdout.split()
        assert ignored == ["SigIgn:", "0000000000000000"]  # not Python's SIGPIPE/SIGXFSZ
        assert runtime.exec_process(id, {"args": ["true"]}, root=env.root) == 0
        child = runtime.exec_process(id, {"args": ["sleep", "30"]}, root=env.root, detach=True)
        assert ns_inodes(child) == ns_inodes(pid)
        with open(f"/proc/{child}/cgroup") as a, open(f"/proc/{pid}/cgroup") as b:
            assert a.read() == b.read()  # same cgroup in every hierarchy, seen from the host
        with pytest.raises(MinidockerError) as err:
            runtime.exec_process(id, {"args": ["nosuch"]}, root=env.root)
        assert err.value.exit_code == 127
    finally:
        runtime.delete(id, force=True, root=env.root)
    statedir.reap(child)


def test_failed_create_leaves_nothing(env, tmp_path):
    mount = {"destination": "/data", "type": "bind", "source": str(tmp_path / "missing"),
             "options": ["rbind"]}
    id, path = env.bundle(["true"], mounts=[mount])
    with pytest.raises(MinidockerError, match="does not exist"):
        runtime.create(id, path, root=env.root)


def test_exec_with_a_terminal(env, tmp_path):
    import socket
    import threading
    from minidocker.runtime import terminal
    id, path = env.bundle(["sleep", "60"])
    runtime.create(id, path, root=env.root)
    runtime.start(id, root=env.root)
    sock_path = str(tmp_path / "exec.sock")
    result = {}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as srv:
            srv.bind(sock_path)
            srv.listen(1)
            worker = threading.Thread(target=lambda: result.update(code=runtime.exec_process(
                id, {"args": ["sh", "-c", "tty; exit 5"], "terminal": True}, root=env.root,
                console_socket=sock_path)))
            worker.start()
            master, _name = terminal.receive_master(srv)
        out = b""
        while True:
            try:
                chunk = os.read(master, 1024)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(master)
        worker.join(10)
        assert result == {"code": 5} and out.decode().split() == ["/dev/pts/0"]
    finally:
        runtime.delete(id, force=True, root=env.root)


def test_delete_cleans_up_after_a_create_that_crashed(env):
    id, path = env.bundle(["sleep", "60"])
    runtime.create(id, path, root=env.root)
    state_file = os.path.join(env.root, id, "state.json")
    os.unlink(state_file)  # as if create had died before writing it
    with pytest.raises(NotFound):
        runtime.state(id, root=env.root)
    runtime.delete(id, force=True, root=env.root)  # still finds cgroup and init through config.json


@pytest.mark.parametrize("point", ["after-cgroup-create", "after-clone-before-exec"])
def test_delete_recovers_from_a_crash_inside_create(env, point):
    id, path = env.bundle(["sleep", "60"])
    with open(env.tmp / "out", "w") as out:
        p = subprocess.run([sys.executable, "-m", "minidocker.runtime", "--root", env.root, "create",
                            "--bundle", str(path), id], env=dict(os.environ, MINIDOCKER_CRASH_AT=point),
                           stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=30)
    try:
        assert p.returncode == 137
        assert cgroup_exists(f"/minidocker-rt-{id}")  # something to clean up
    finally:
        runtime.delete(id, force=True, root=env.root)


def test_a_bad_seccomp_profile_fails_create_and_leaves_nothing(env):
    id, path = env.bundle(["true"])
    config = json.loads((path / "config.json").read_text())
    config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                  "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOPE"}]}
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(MinidockerError, match="SCMP_ACT_NOPE"):
        runtime.create(id, path, root=env.root)
