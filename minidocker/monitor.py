"""The monitor: one small process per running container, like containerd-shim.

Whoever starts a container (the command line, or a notebook's kernel, which is
multi-threaded and must never unshare or fork) launches `python -m
minidocker.monitor`. That process forks once more and the first one exits at
once, so the monitor is nobody's zombie and outlives `run -d`. The monitor

  1. mounts the overlay and writes the OCI bundle,
  2. asks the runtime to create the container's init and then start it,
     being a *subreaper* so that the init becomes its child,
  3. copies the container's output into the log (and to an attached terminal),
  4. when the init exits, records the exit code, OOM kill and finish time in
     state.json, releases the cgroup, network and mount, and exits.

It reports to its starter through a pipe, one JSON line per event:
{"event": "started"}, {"event": "error", ...}, {"event": "exited", "exit_code": N}.
"""
import json
import os
import subprocess
import sys

from . import logdriver, units
from .errors import MinidockerError
from .files import read_json, write_json, crash_point

PR_SET_CHILD_SUBREAPER = 36
_held = []   # sockets reserving published host ports while the container runs


def spawn(container, attach=False) -> "Channel":
    """Start a monitor for `container`; returns once the container runs (or raises why not).

    A single-threaded caller (the command line) forks the monitor, which saves
    starting a new interpreter; a multi-threaded one (a notebook's kernel) must
    not fork, so it starts `python -m minidocker.monitor` instead.
    """
    import threading
    r, w = os.pipe()
    if threading.active_count() == 1:
        preload()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                if not attach:
                    null = os.open(os.devnull, os.O_RDWR)
                    for fd in (0, 1, 2):
                        os.dup2(null, fd)
                os.environ["MINIDOCKER_MONITOR_FD"] = str(w)
                main(str(container.store.root), container.id, attach)
            finally:
                os._exit(0)
    else:
        pid = None
        env = dict(os.environ, MINIDOCKER_MONITOR_FD=str(w))
        null = subprocess.DEVNULL
        stdio = {} if attach else {"stdin": null, "stdout": null, "stderr": null}
        args = [sys.executable, "-m", "minidocker.monitor", str(container.store.root), container.id]
        if attach:
            args.append("--attach")
        subprocess.run(args, pass_fds=(w,), env=env, check=False, **stdio)
    os.close(w)
    channel = Channel(r)
    event = channel.next()
    if pid:   # the first fork exited at once (the monitor is its child); reaped only now,
        os.waitpid(pid, 0)   # since tearing down a copy of a big interpreter takes a few ms
    if event is None:
        channel.close()
        raise MinidockerError(f"the monitor of {container.short_id} died while starting it", 125)
    if event["event"] == "error":
        channel.close()
        raise MinidockerError(event["message"], event["exit_code"])
    return channel


_started = False   # whether this process has started a container before (preload)


def preload(warm=False):
    """Import what the monitor and the container's init will need, before forking them:
    a warm interpreter (a script calling the API in a loop) then pays for it once.

    A caller that starts a second container (or says it is `warm`, as the resident
    helper does) also compiles Docker's seccomp profile once for all the inits it forks.
    """
    global _started
    from . import bundle, netmode, overlay, security, volumes   # noqa: F401
    from .runtime import cgroups, init, lifecycle, seccomp, statedir, user   # noqa: F401
    cgroups._driver()
    if warm or _started:
        profile = security.security({})["seccomp"]
        if profile:
            seccomp.Filter(profile)
    _started = True


class Channel:
    """The starter's end of the monitor's pipe: JSON events, one per line."""

    def __init__(self, fd):
        self.file = os.fdopen(fd, "rb")

    def next(self):
        line = self.file.readline()
        return json.loads(line) if line else None

    def wait_exit(self):
        """The container's exit code, or None if the monitor vanished without saying."""
        while (event := self.next()) is not None:
            if event["event"] == "exited":
                return event["exit_code"]
        return None

    def close(self):
        self.file.close()


# -- inside the monitor process ------------------------------------------------------

def main(root, cid, attach):
    if os.fork():
        os._exit(0)
    os.setsid()
    from .runtime import linux
    linux.prctl(PR_SET_CHILD_SUBREAPER, 1)
    linux.set_name(b"minidocker-mon")
    channel = int(os.environ.pop("MINIDOCKER_MONITOR_FD"))
    os.set_inheritable(channel, False)
    from .containers import Container
    from .store import Store
    c = Container(Store(root), cid)

    def tell(**event):
        try:
            os.write(channel, (json.dumps(event) + "\n").encode())
        except OSError:
            pass   # the starter went away (a detached run): keep monitoring

    with c.lock:
        try:
            init_pid, outputs, console = _start(c, attach)
        except MinidockerError as e:
            _failed(c, str(e), e.exit_code)
            tell(event="error", message=str(e), exit_code=e.exit_code)
            return
        except Exception as e:  # a bug: still never leave a half-started container
            _log_bug(c)
            _failed(c, f"{type(e).__name__}: {e}", 125)
            tell(event="error", message=f"starting failed: {type(e).__name__}: {e}", exit_code=125)
            return
    tell(event="started")
    try:
        status = logdriver.pump(c, init_pid, outputs, console, attach)
    except Exception:   # a bug while copying output: the exit status still matters more
        _log_bug(c)
        status = os.waitpid(init_pid, 0)[1]
    code = os.waitstatus_to_exitcode(status)
    code = 128 - code if code < 0 else code
    with c.lock:
        oom, error = _oom_killed(c), ""
        try:
            _release(c)
        except Exception as e:   # recorded; the next command's reconcile tries again
            _log_bug(c)
            error = f"releasing the container failed: {e}"
        state = read_json(c.dir / "state.json")
        state.update(Status="exited", Running=False, Pid=0, ExitCode=code, OOMKilled=oom, Error=error,
                     FinishedAt=units.now_iso(), AttachedNetworks=[], Ports=[])
        write_json(c.dir / "state.json", state)
    if c.record["HostConfig"].get("AutoRemove"):
        try:
            c.remove(force=True)
        except MinidockerError:
            pass
    tell(event="exited", exit_code=code)


def _start(c, attach):
    """Mount, write the bundle, create and start the init; returns (pid, output fds, console fd)."""
    from . import bundle, netmode, overlay, runtime, security, volumes
    from .containers import runtime_root
    from .images import get
    from .runtime.statedir import start_time
    rootfs = c.dir / "rootfs"
    if not overlay.is_mounted(rootfs):
        overlay.mount(get(c.store, c.record["Image"]).lower_dirs(), c.dir / "upper", c.dir / "work", rootfs)
    crash_point("after-mount-before-state")   # mounted, but state.json does not say running
    cfg, host = c.record["Config"], c.record["HostConfig"]
    namespaces, mounts = netmode.bundle_parts(c)
    mounts += volumes.oci_mounts(c.store, host.get("Mounts"), rootfs)
    spec = bundle.spec(str(rootfs), (cfg.get("Entrypoint") or []) + cfg["Cmd"], env=cfg["Env"],
                       cwd=cfg["WorkingDir"], user=cfg["User"], hostname=cfg["Hostname"], terminal=cfg["Tty"],
                       cgroups_path=f"/minidocker/{c.id}", resources=host.get("Resources"),
                       namespaces=namespaces, mounts=mounts)
    security.apply(spec, security.security(c.security_options()))   # capabilities, seccomp, --read-only
    bundle.write(c.dir, spec)
    console = None
    if cfg["Tty"]:
        pid, console = _create_with_terminal(c, runtime, runtime_root(c.store))
        outputs = [(console, "stdout")]
    else:
        stdin = os.dup(0) if (attach and cfg["OpenStdin"]) else os.open(os.devnull, os.O_RDONLY)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            pid = runtime.create(c.id, str(c.dir), root=runtime_root(c.store), stdio=(stdin, out_w, err_w),
                                 fork=True)   # the monitor is single-threaded: no new interpreter needed
        finally:
            for fd in (stdin, out_w, err_w):
                os.close(fd)
        outputs = [(out_r, "stdout"), (err_r, "stderr")]
    state = read_json(c.dir / "state.json")
    if netmode.needs_endpoint(c):   # recorded first, so that release() undoes a half-made connection
        state["AttachedNetworks"] = [c.record["HostConfig"]["NetworkMode"]]
        write_json(c.dir / "state.json", state)
    state.update(netmode.connect(c, pid))
    _held.extend(netmode.reserve_ports(state["NetworkSettings"]))   # kept open until we exit
    state.update(Status="running", Running=True, Pid=pid, InitStart=start_time(pid), ExitCode=0, Error="",
                 OOMKilled=False, MonitorPid=os.getpid(), MonitorStart=start_time(os.getpid()),
                 StartedAt=units.now_iso(), FinishedAt="0001-01-01T00:00:00Z")
    write_json(c.dir / "state.json", state)
    runtime.start(c.id, root=runtime_root(c.store))
    return pid, outputs, console


def _create_with_terminal(c, runtime, root):
    """runc's console-socket protocol: the runtime sends us the pty master over a unix socket."""
    import socket
    import tempfile
    tmp = tempfile.mkdtemp(prefix="md-console-")
    path = os.path.join(tmp, "sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(path)
        server.listen(1)
        null = os.open(os.devnull, os.O_RDWR)
        try:
            pid = runtime.create(c.id, str(c.dir), root=root, console_socket=path, stdio=(null, null, null),
                                 fork=True)
        finally:
            os.close(null)
        server.settimeout(10)
        conn, _ = server.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
        return pid, fds[0]
    finally:
        server.close()
        os.unlink(path) if os.path.exists(path) else None
        os.rmdir(tmp)


def _log_bug(c) -> None:
    """Keep the traceback of something that should not happen, for the bug report."""
    import traceback
    with open(c.dir / "monitor-error.txt", "a") as f:
        f.write(traceback.format_exc())


def _oom_killed(c) -> bool:
    from .runtime import cgroups
    try:
        return cgroups.open(f"/minidocker/{c.id}").oom_killed()
    except (MinidockerError, OSError):   # no cgroup left to ask: nothing says it was an OOM kill
        return False


def _release(c):
    from .containers import release
    release(c)


def _failed(c, message, code):
    """A start that failed leaves the container as it was, with the reason recorded."""
    try:
        _release(c)
    except MinidockerError:
        pass
    state = read_json(c.dir / "state.json")
    state.update(ExitCode=code, Error=message, Running=False, Pid=0, AttachedNetworks=[], Ports=[])
    if state["Status"] == "running":
        state["Status"] = "exited"
    write_json(c.dir / "state.json", state)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--attach" in sys.argv[3:])
