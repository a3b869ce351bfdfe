"""exec and top: more processes in a running container, and a look at them.

`exec` asks the runtime for a new process in the container's namespaces and
cgroup. The process is described like the container's own (same capabilities,
rlimits, environment), with the command, user, directory and extra variables
of the exec. Its user name is looked up in the container's /etc/passwd.
"""
import os
import socket
import tempfile

from .containers import Container, merge_env, runtime_root
from .errors import Conflict, MinidockerError


def process_for(c: Container, command, env=(), workdir=None, user=None, tty=False) -> dict:
    """The OCI process of an exec; fields it leaves out come from the container's."""
    from .runtime import user as users
    cfg = c.record["Config"]
    proc = {"args": list(command), "env": merge_env(cfg["Env"], env), "cwd": workdir or cfg["WorkingDir"],
            "terminal": tty}
    name = user if user is not None else cfg["User"]
    who = users.resolve(str(c.dir / "rootfs"), name or "")
    proc["user"] = {k: who[k] for k in ("uid", "gid", "additionalGids")}
    return proc


def run(c: Container, command, env=(), workdir=None, user=None, tty=False, interactive=False,
        detach=False) -> int:
    """docker exec from the command line: attached to our terminal; returns the exit code."""
    from . import runtime
    c.reload()
    if c.status != "running":
        raise Conflict(f"container {c.name} is not running", 1)
    tty = tty and os.isatty(0)
    proc = process_for(c, command, env, workdir, user, tty)
    null = os.open(os.devnull, os.O_RDWR)
    try:
        stdio = (0 if interactive else null, 1, 2) if not detach else (null, null, null)
        if not tty:
            result = runtime.exec_process(c.id, proc, root=runtime_root(c.store), stdio=stdio, detach=detach)
            return 0 if detach else result
        return _with_terminal(c, proc, stdio, interactive)
    finally:
        os.close(null)


def _with_terminal(c, proc, stdio, interactive) -> int:
    """-t: the runtime sends us the pty master; we copy our terminal to it until the process ends."""
    import select
    import termios
    import threading
    import tty as ttymod
    from . import logdriver, runtime
    tmp = tempfile.mkdtemp(prefix="md-exec-")
    path = os.path.join(tmp, "sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    result = {}

    def execute():
        try:
            result["code"] = runtime.exec_process(c.id, proc, root=runtime_root(c.store), stdio=stdio,
                                                  console_socket=path)
        except MinidockerError as e:
            result["error"] = e
    worker = threading.Thread(target=execute, daemon=True)
    worker.start()
    server.settimeout(10)
    try:
        conn, _ = server.accept()
    except socket.timeout:
        worker.join()
        raise result.get("error") or MinidockerError("exec: no terminal came back", 126)
    finally:
        server.close()
        os.unlink(path)
        os.rmdir(tmp)
    with conn:
        _, fds, _, _ = socket.recv_fds(conn, 1024, 1)
    master = fds[0]
    saved = termios.tcgetattr(0)
    ttymod.setraw(0)
    logdriver.copy_winsize(0, master)
    try:
        while worker.is_alive():
            ready, _, _ = select.select([master] + ([0] if interactive else []), [], [], 0.2)
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    data = b""
                if not data:
                    break
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    interactive = False
    finally:
        termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)
    worker.join()
    if "error" in result:
        raise result["error"]
    return result["code"]


def top(c: Container) -> list:
    """Rows (UID, PID, PPID, CMD) for every process in the container's cgroup."""
    from .runtime import cgroups
    c.reload()
    if c.status != "running":
        raise Conflict(f"container {c.name} is not running", 1)
    rows = []
    for pid in sorted(cgroups.open(f"/minidocker/{c.id}").procs()):
        try:
            with open(f"/proc/{pid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue   # it exited while we looked
        rows.append([status["Uid"].split()[0], pid, status["PPid"].strip(), cmd or status["Name"].strip()])
    return rows
