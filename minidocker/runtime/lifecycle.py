"""The OCI runtime operations: create, start, state, kill, delete.

Each call is short-lived and keeps nothing in memory: what a later call needs
is in the state directory (state.py). `create` leaves nothing behind when it
fails: the init is killed, the cgroup and the state directory removed (the
mounts lived only in the container's mount namespace and die with it).
"""
import json
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

from ..errors import Conflict, MinidockerError, NotFound
from ..files import crash_point, write_json
from . import statedir as st


def load_spec(bundle) -> dict:
    """The bundle's config.json, with root.path made absolute."""
    path = Path(bundle) / "config.json"
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise MinidockerError(f"{path} not found: not an OCI bundle", 125) from None
    except json.JSONDecodeError as e:
        raise MinidockerError(f"{path} is not valid JSON: {e.msg}", 125) from None
    if not isinstance(spec.get("process"), dict) or not spec["process"].get("args"):
        raise MinidockerError(f"{path}: process.args is required", 125)
    rootfs = (Path(bundle) / (spec.get("root") or {}).get("path", "rootfs")).resolve()
    if not rootfs.is_dir():
        raise MinidockerError(f"rootfs {rootfs} does not exist", 125)
    spec.setdefault("root", {})["path"] = str(rootfs)
    return spec


def cgroups_path(spec: dict, id: str):
    return (spec.get("linux") or {}).get("cgroupsPath") or f"/minidocker-runtime/{id}"


def create(id, bundle, *, root=None, stdio=(0, 1, 2), console_socket=None, pid_file=None,
           fork=False) -> int:
    """Set up container `id` from `bundle`; its init waits for start(). Returns the init's PID.

    The namespaces are made in a fresh Python process, so a multi-threaded
    caller (a Jupyter kernel) is safe. fork=True forks the caller instead:
    faster, for single-threaded callers only (the runtime's own command line).
    """
    bundle = os.path.abspath(bundle)
    spec = load_spec(bundle)
    path = st.container_dir(id, root, must_exist=False)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        raise Conflict(f"container with id {id} already exists") from None
    record = {"id": id, "pid": 0, "bundle": bundle, "cgroups_path": cgroups_path(spec, id),
              "annotations": spec.get("annotations") or {}, "rootfs": spec["root"]["path"]}
    try:
        return _create(spec, path, record, stdio, console_socket, pid_file, fork)
    except BaseException:
        _destroy(record, path)
        raise


def _create(spec, path, record, stdio, console_socket, pid_file, fork) -> int:
    from . import cgroups
    write_json(path / "config.json", spec)
    os.mkfifo(path / "exec.fifo", 0o600)
    cgroups.create(record["cgroups_path"], (spec.get("linux") or {}).get("resources"))
    crash_point("after-cgroup-create")
    console = None
    if console_socket:
        console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        console.connect(str(console_socket))
    r, w = os.pipe()
    try:
        args = [str(path / "config.json"), record["cgroups_path"], str(w),
                str(console.fileno()) if console else "-", str(path / "exec.fifo")]
        stage = (_fork_stage if fork else _spawn_stage)(args, stdio, [w] + ([console.fileno()] if console else []))
        os.close(w)
        w = None
        if console:
            console.close()
        msgs = _read_sync(r, record)
        crash_point("after-clone-before-exec")  # the init waits: a crash here leaves it behind
        stage.wait()
    finally:
        os.close(r)
        if w is not None:
            os.close(w)
    if "error" in msgs:
        raise MinidockerError(msgs["error"], msgs.get("code", 125))
    if not (msgs.get("ready") and msgs.get("joined")):
        raise MinidockerError("container init exited during setup", 125)
    record["start_time"] = st.start_time(record["pid"])
    record["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    st.save(path, record)
    if pid_file:
        Path(pid_file).write_text(str(record["pid"]))
    return record["pid"]


def spawn(module: str, args, stdio, fds) -> subprocess.Popen:
    """Run minidocker.runtime.<module>.main(args) in a fresh, single-threaded interpreter."""
    # -S: no site.py, no editable-install finder (half the start-up time); we
    # point sys.path at our package instead.
    top = str(Path(__file__).resolve().parents[2])
    code = f"import sys; sys.path.insert(0, {top!r}); from minidocker.runtime.{module} import main; main()"
    return subprocess.Popen([sys.executable, "-S", "-c", code, *args], stdin=stdio[0],
                            stdout=stdio[1], stderr=stdio[2], pass_fds=fds, close_fds=True)


def _spawn_stage(args, stdio, fds):
    return spawn("init", args, stdio, fds)


class _Forked:
    def __init__(self, pid):
        self.pid = pid

    def wait(self):
        return os.waitpid(self.pid, 0)[1]


def _fork_stage(args, stdio, fds):
    pid = os.fork()
    if pid == 0:
        for i, fd in enumerate(stdio):
            if fd is not None and fd != i:
                os.dup2(fd, i)
        # A fork inherits every descriptor of the caller (the monitor's pipe to its
        # starter, its lock files): the init, which may wait for `start` forever,
        # must hold none of them, as after subprocess's close_fds.
        keep = {0, 1, 2, *fds}
        for name in os.listdir("/proc/self/fd"):
            if int(name) not in keep:
                try:
                    os.close(int(name))
                except OSError:
                    pass   # the directory's own descriptor, already gone
        from . import init
        init.main(args)  # never returns
        os._exit(1)
    return _Forked(pid)


def _read_sync(fd: int, record: dict) -> dict:
    """Messages from the stage and the init, until an error, EOF, or both the init's
    "ready" and the stage's "joined" (the init is in its cgroup)."""
    msgs, buf = {}, b""
    while True:
        chunk = os.read(fd, 65536)
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            msg = json.loads(line)
            msgs.update(msg)
            if "pid" in msg:  # record it at once: a failure from here on must kill it
                record["pid"] = msg["pid"]
                record["start_time"] = st.start_time(msg["pid"])
            if "error" in msgs or ("ready" in msgs and "joined" in msgs):
                return msgs
        if not chunk:
            return msgs


def _destroy(record: dict, path: Path) -> None:
    """Kill the init if it is alive, remove cgroup and state directory."""
    from . import cgroups
    try:
        cg = cgroups.open(record["cgroups_path"])
    except NotFound:
        cg = None
    if record.get("pid") and record.get("start_time"):
        others = cg.all_procs() if cg else []
        if st.send_signal(record, 9):
            st.wait_gone(record, others=others)
    if cg:
        cg.remove()
    st.remove(path)


def _delete_half_created(id, path: Path) -> None:
    """A create that died before writing state.json: the cgroup holds whatever it started."""
    try:
        spec = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        spec = {}
    _destroy({"id": id, "pid": 0, "cgroups_path": cgroups_path(spec, id)}, path)


def start(id, *, root=None) -> None:
    """Let the waiting init exec the container's program."""
    record, path = st.load(id, root)
    st.require(record, path, "created")
    fd = os.open(path / "exec.fifo", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while not poller.poll(100):  # the init may die instead of writing
            if not st.is_alive(record):
                raise Conflict(f"container {id} stopped before it was started")
        if os.read(fd, 1) != b"0":
            raise MinidockerError(f"container {id} did not start")
    finally:
        os.close(fd)
    os.unlink(path / "exec.fifo")


def state(id, *, root=None) -> dict:
    """The OCI state of container `id`."""
    record, path = st.load(id, root)
    return st.oci_state(record, path)


def kill(id, sig="TERM", *, root=None) -> None:
    """Send a signal (TERM, SIGTERM, 15) to the container's init."""
    record, path = st.load(id, root)
    signum = st.parse_signal(sig)
    st.require(record, path, "created", "running")
    if not st.send_signal(record, signum):
        raise Conflict(f"container {id} is not running")


def delete(id, *, force=False, root=None) -> None:
    """Remove a stopped (or created) container; force kills a running one first."""
    path = st.container_dir(id, root, must_exist=False)
    if path.is_dir() and not (path / "state.json").exists():
        return _delete_half_created(id, path)
    record, path = st.load(id, root)
    if st.status(record, path) == "running" and not force:
        raise Conflict(f"cannot delete container {id} that is not stopped: running")
    _destroy(record, path)
