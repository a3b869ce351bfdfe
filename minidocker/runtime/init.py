"""The container's first process, run as `python -m minidocker.runtime.init`.

`create` starts this module as a fresh, single-threaded process (the stage).
The stage unshares the namespaces and forks: the child is PID 1 of the new
PID namespace, the container's init. The stage reports the init's PID, moves
it into the container's cgroup (see stage()) and exits, so the init is
re-parented to the nearest subreaper (the engine's monitor). The init builds
the root filesystem, reports
"ready" (or the error) on the sync pipe, then blocks opening exec.fifo for
writing until `start` opens it for reading. Then it becomes the configured
user and execs the program.

    create ──Popen──► stage ──unshare, fork──► init (PID 1) ──fifo──► execve
      ▲                 │ {"pid": N}, {"joined"} │ {"ready": true} / {"error": ...}
      └─────────────────┴────── sync pipe ───────┘
"""
import json
import os
import signal
import sys

from ..errors import MinidockerError
from . import cgroupfs, dev, linux, mounts, process, terminal
from .process import report


_UNTIL_START = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
                signal.SIGUSR2)


def stage(spec: dict, cg_path, sync: int, console, fifo: str) -> None:
    """Join the namespaces, fork the init, report its PID, put the init in its cgroup.

    Moving a process between cgroups waits for an RCU grace period (~10 ms on
    cgroup v1), so the stage moves the init while the init builds its root
    filesystem: `create` waits for both. A new cgroup namespace is rooted
    where its creator stands, so with one the stage joins first.
    """
    from . import cgroups
    cg = cgroups.open(cg_path) if cg_path else None
    cgroupns = any(ns["type"] == "cgroup" and not ns.get("path")
                   for ns in (spec.get("linux") or {}).get("namespaces") or ())
    if cg and cgroupns:
        cg.add(os.getpid())
    move = cg.mover() if cg and not cgroupns else None
    flags = 0
    for ns in (spec.get("linux") or {}).get("namespaces") or ():
        flag = linux.NAMESPACES[ns["type"]][0]
        if ns.get("path"):
            fd = os.open(ns["path"], os.O_RDONLY | os.O_CLOEXEC)
            try:
                linux.setns(fd, flag)
            finally:
                os.close(fd)
        else:
            flags |= flag
    linux.unshare(flags)
    pid = os.fork()
    if pid:
        report(sync, pid=pid)
        if move:
            move(pid)
        report(sync, joined=True)
        os._exit(0)
    try:
        exe, fifo_fd, flt = setup(spec, flags, console, fifo, cg_path)
    except MinidockerError as e:
        report(sync, error=str(e), code=e.exit_code)
        os._exit(1)
    except OSError as e:
        report(sync, error=f"container init: {e.strerror}" + (f": {e.filename}" if e.filename else ""), code=125)
        os._exit(1)
    except Exception as e:  # a bug, but create must still get an answer
        report(sync, error=f"container init: {type(e).__name__}: {e}", code=125)
        os._exit(1)
    report(sync, ready=True)
    os.close(sync)
    wait_for_start(fifo_fd)
    run(spec["process"], exe, flt)


def setup(spec: dict, new_ns: int, console, fifo: str, cg_path=None):
    """Everything up to "ready": rootfs, pivot_root, hostname, terminal.

    Returns the program's path, an O_PATH fd of exec.fifo and the compiled
    seccomp filter (both made before pivot_root hides the host's files).
    """
    # Until `start`, `kill` must end us: as PID 1 of the namespace we would
    # otherwise ignore every signal but KILL (runc's Go init dies on these too).
    for sig in _UNTIL_START:
        signal.signal(sig, lambda signum, _frame: os._exit(128 + signum))
    os.setsid()
    os.umask(0)
    lx, proc = spec.get("linux") or {}, spec["process"]
    rootfs = spec["root"]["path"]
    mounts.refuse_symlinks(rootfs)
    rootfd = mounts.prepare_root(rootfs, lx.get("rootfsPropagation", ""))
    for m in spec.get("mounts") or ():
        mounts.mount_one(rootfd, m, lambda fd, dest, flags: cgroupfs.mount_cgroups(fd, dest, flags, cg_path))
    dev.create_devices(rootfd, lx.get("devices"))
    dev.create_links(rootfd)
    os.close(rootfd)
    fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
    flt = process.seccomp_filter(lx, proc)  # a bad profile fails create, not start
    mounts.pivot(rootfs)
    if new_ns & linux.CLONE_NEWUTS and spec.get("hostname"):
        linux.sethostname(spec["hostname"])
    if new_ns & linux.CLONE_NEWNET:
        linux.link_up("lo")
    for key, value in (lx.get("sysctl") or {}).items():
        with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
            f.write(str(value))
    if proc.get("terminal"):
        if console is None:
            raise MinidockerError("terminal: true needs a console socket", 125)
        master, slave, name = terminal.open_pty()
        terminal.make_console(slave)
        terminal.send_master(console, master, name)
        os.close(master)
        os.close(slave)
    null = dev.checked_null()
    mounts.readonly(lx.get("readonlyPaths"))
    mounts.mask(lx.get("maskedPaths"), null)
    os.close(null)
    if spec["root"].get("readonly"):
        mounts.readonly_root()
    process.set_oom_score_adj(proc.get("oomScoreAdj"))
    os.makedirs(proc.get("cwd") or "/", exist_ok=True)
    process.enter_cwd(proc.get("cwd"))
    exe = process.lookup(proc.get("args"), proc.get("env"))
    process.set_rlimits(proc.get("rlimits"))
    return exe, fifo_fd, flt


def wait_for_start(fifo_fd: int) -> None:
    """Block until `start` opens the fifo for reading, then tell it we go."""
    fd = os.open(mounts.fd_path(fifo_fd), os.O_WRONLY | os.O_CLOEXEC)
    os.write(fd, b"0")
    os.close(fd)


def run(proc: dict, exe: str, flt=None) -> None:
    """Become the user, check the cwd again as that user, exec."""
    for sig in _UNTIL_START:
        signal.signal(sig, signal.SIG_DFL)
    try:
        process.drop_privileges(proc, flt)
        process.enter_cwd(proc.get("cwd"))
    except (OSError, MinidockerError) as e:
        os.write(2, f"minidocker-runtime: {e}\n".encode())
        os._exit(125)
    process.execve(exe, proc)


def main(argv=None) -> None:
    """Entry point of the stage: init.py SPEC_FILE CGROUP_PATH SYNC_FD CONSOLE_FD FIFO."""
    spec_file, cg_path, sync, console, fifo = (argv or sys.argv[1:])[:5]
    with open(spec_file) as f:
        spec = json.load(f)
    sync = int(sync)
    try:
        stage(spec, cg_path or None, sync, int(console) if console != "-" else None, fifo)
    except Exception as e:
        msg = e.strerror if isinstance(e, OSError) else str(e)
        report(sync, error=f"container stage: {msg}", code=125)
        os._exit(1)


if __name__ == "__main__":
    main()
