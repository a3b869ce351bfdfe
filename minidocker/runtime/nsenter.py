"""exec: start another process inside a running container.

Like `nsenter` plus `cgexec`: a fresh single-threaded helper joins the init's
cgroup, opens the init's /proc/PID/ns/* files, checks the init is still the
process we recorded (so a reused PID cannot trick us into another process's
namespaces), joins each namespace (mount last) and forks, because joining a
PID namespace only applies to children. The child finishes like the init does
(process.py) and execs. Run as `python -m minidocker.runtime.nsenter`.
"""
import json
import os
import sys

from ..errors import MinidockerError
from . import linux, process, statedir as st, terminal
from .process import report

_ORDER = ["cgroup", "ipc", "uts", "network", "pid", "time", "mount"]


def exec_process(id, proc: dict, *, root=None, stdio=(0, 1, 2), console_socket=None,
                 detach=False) -> int:
    """Run `proc` (OCI process; missing fields from the container's) in container `id`.

    detach=True returns the new process's PID at once (it is re-parented to the
    caller's nearest subreaper); detach=False waits and returns its exit status.
    """
    record, path = st.load(id, root)
    st.require(record, path, "created", "running")
    spec = json.loads((path / "config.json").read_text())
    full = {**spec["process"], "terminal": False, **proc}
    job = {"record": record, "process": full, "detach": detach, "linux": spec.get("linux") or {},
           "namespaces": [n["type"] for n in (spec.get("linux") or {}).get("namespaces") or ()]}
    console = None
    if full.get("terminal"):
        if not console_socket:
            raise MinidockerError("terminal: true needs a console socket", 125)
        import socket
        console = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        console.connect(str(console_socket))
    r, w = os.pipe()
    fds = [w] + ([console.fileno()] if console else [])
    from .lifecycle import spawn
    helper = spawn("nsenter", [json.dumps(job), str(w), str(console.fileno()) if console else "-"],
                   stdio, fds)
    os.close(w)
    if console:
        console.close()
    msgs = {}
    with os.fdopen(r, "rb") as f:
        for line in f:
            msgs.update(json.loads(line))
            if "ready" in msgs or "error" in msgs:
                break
    if "error" in msgs:
        helper.wait()
        raise MinidockerError(msgs["error"], msgs.get("code", 126))
    if detach:
        helper.wait()
        return msgs["pid"]
    return helper.wait()


def _enter(job: dict, sync: int, console) -> None:
    record = job["record"]
    from . import cgroups
    fds = {}
    for name in _ORDER:
        if name in job["namespaces"]:
            fds[name] = os.open(f"/proc/{record['pid']}/ns/{linux.NAMESPACES[name][1]}", os.O_RDONLY)
    if not st.is_alive(record):  # checked after the opens: the fds pin the right namespaces
        raise MinidockerError(f"container {record['id']} is not running", 125)
    cgroups.open(record["cgroups_path"]).add(os.getpid())
    flt = process.seccomp_filter(job["linux"], job["process"])  # exec'd processes get the same filter
    # Not dumpable: a container process must not reach our memory or our
    # /proc/PID/exe (CVE-2019-5736) while we sit in its namespaces; execve resets it.
    linux.prctl(linux.PR_SET_DUMPABLE, 0)
    for name, fd in fds.items():
        linux.setns(fd, linux.NAMESPACES[name][0])
        os.close(fd)
    proc = job["process"]
    pid = os.fork()
    if pid:
        report(sync, pid=pid)
        if job["detach"]:
            os._exit(0)
        os.close(sync)
        _, status = os.waitpid(pid, 0)
        os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status)
                 else 128 + os.WTERMSIG(status))
    try:
        os.setsid()
        if proc.get("terminal"):
            master, slave, name = terminal.open_pty()
            _stdio(slave)
            os.close(slave)
            terminal.send_master(console, master, name)
            os.close(master)
        process.enter_cwd(proc.get("cwd"))
        exe = process.lookup(proc.get("args"), proc.get("env"))
        process.set_rlimits(proc.get("rlimits"))
        process.drop_privileges(proc, flt)
        process.enter_cwd(proc.get("cwd"))
    except MinidockerError as e:
        report(sync, error=str(e), code=e.exit_code)
        os._exit(1)
    except OSError as e:
        report(sync, error=f"exec: {e.strerror}", code=126)
        os._exit(1)
    report(sync, ready=True)
    os.close(sync)
    process.execve(exe, proc)


def _stdio(slave: int) -> None:
    import fcntl
    import termios
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
    for fd in (0, 1, 2):
        os.dup2(slave, fd)


def main(argv=None) -> None:
    """Entry point of the helper: nsenter.py JOB_JSON SYNC_FD CONSOLE_FD."""
    job, sync, console = (argv or sys.argv[1:])[:3]
    sync = int(sync)
    try:
        _enter(json.loads(job), sync, int(console) if console != "-" else None)
    except MinidockerError as e:
        report(sync, error=str(e), code=e.exit_code)
        os._exit(1)
    except OSError as e:
        report(sync, error=f"exec: {e.strerror}", code=125)
        os._exit(1)


if __name__ == "__main__":
    main()
