"""A resident helper that runs commands in an interpreter which has already
imported minidocker: `minidocker system serve`.

A command started on its own spends about half of a `run --rm busybox true`
starting Python and importing the engine. Docker keeps dockerd resident for
the same reason. The helper is optional: the command line uses it when its
socket answers and works alone when it does not.

    minidocker run ...  ──connect──►  <root>/serve.sock (root only)
        │  argv, environment, cwd, umask; fds 0 1 2 (SCM_RIGHTS)   │ fork
        │◄────────────── "pid N" ─────────────────── worker N: cli.main(argv)
        │  signals we get are passed on to N                        │
        │◄────────────── "exit CODE" ───────────────────────────────┘

A worker is the command as it would have run alone: the same arguments,
environment, directory and standard streams, and its exit code becomes ours.
The helper refuses to serve once minidocker's source files change under it
(a learner editing a chapter's module) and exits; the command then runs alone.
The command's side, and what goes over the socket, is handover.py.
"""
import os
import sys

from .handover import decode_request, frame, socket_path


def stop(root=None) -> bool:
    """Ask the helper serving `root` to exit; whether one was there. Returns once it is gone."""
    import select
    import socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.connect(socket_path(root))
            pidfd = os.pidfd_open(_peer(sock)[0])
        except OSError:
            return False
        try:
            sock.sendall(frame(b"stop"))
            sock.recv(1)   # EOF once it has removed its socket
            select.select([pidfd], [], [], 10)   # readable once the process has exited
        except OSError:
            pass
        finally:
            os.close(pidfd)
    return True


def answering(path) -> bool:
    import socket
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            return probe.connect_ex(path) == 0
        except OSError:   # a path no socket can have (too long): nobody answers there
            return False


def bind(root):
    """The helper's socket, bound; a clear error if that cannot be."""
    import socket
    from .errors import MinidockerError
    path = socket_path(root)
    if answering(path):
        raise MinidockerError(f"a helper already serves {root} ({path})", 1)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tmp = f"{path}.{os.getpid()}"
    try:
        listener.bind(tmp)
        os.chmod(tmp, 0o600)
        os.rename(tmp, path)   # atomically replaces a stale socket left by a killed helper
    except OSError as e:
        listener.close()
        raise MinidockerError(f"cannot serve at {path}: {e.strerror or e}", 1) from None
    return listener


def serve(root, listener=None, ready_fd=None) -> None:
    """Serve commands for the store at `root` until stopped (SIGTERM, or stop())."""
    import signal
    from . import cli, monitor
    from .runtime import linux
    listener = listener or bind(root)
    listener.listen(64)   # here: the listener's PID is what stop() reads from SO_PEERCRED
    path = socket_path(root)
    ours = os.stat(path).st_ino
    last = None
    try:
        cli.warm()
        monitor.preload(warm=True)
        import traceback  # noqa: F401 - warm for the workers
        from . import api, containers, images, records, system   # noqa: F401
        import gc
        gc.freeze()   # the collector of a worker then leaves these objects (and their pages) alone
        if os.getpid() != os.getsid(0):
            os.setsid()   # no controlling terminal: a worker's `-t` must not meet job control
        linux.set_name(b"minidocker-srv")
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        if ready_fd is not None:
            os.write(ready_fd, b"1")
            os.close(ready_fd)
        last = _loop(listener, _source_stamp())
    finally:
        listener.close()
        try:
            if os.stat(path).st_ino == ours:
                os.unlink(path)
        except FileNotFoundError:
            pass
        if last is not None:
            last.close()   # the stopper's EOF: we are gone


def _loop(listener, stamp):
    """Accept and fork until stopped; returns the stopper's connection."""
    import select
    import signal
    while True:
        ready, _, _ = select.select([listener], [], [], 1.0)
        _reap()
        if not ready:
            continue
        conn, _ = listener.accept()
        request, fds = _receive(conn)
        if request == "stop":
            return conn
        if request is None:
            conn.close()
            continue
        if _source_stamp() != stamp:
            conn.sendall(b"stale\n")
            return conn
        if os.fork() == 0:
            listener.close()
            for sig in (signal.SIGTERM, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            try:
                _work(conn, request, fds)
            finally:
                os._exit(0)
        conn.close()
        _closed(fds)


def _receive(conn):
    """What a client sent: (request, its three fds), ("stop", []), or (None, []) for anything else."""
    import socket
    fds = []
    try:
        conn.settimeout(5)   # a client that sends half a request does not hold us up for long
        data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
        while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
            data += chunk
        conn.settimeout(None)
        whole = len(data) >= 4 and len(data) == 4 + int.from_bytes(data[:4], "big")
        if whole and _peer(conn)[1] == os.getuid():
            if data[4:] == b"stop":
                return "stop", _closed(fds)
            if len(fds) == 3:
                return decode_request(data[4:]), fds
    except (OSError, ValueError):
        pass
    return None, _closed(fds)


def _closed(fds) -> list:
    for fd in fds:
        os.close(fd)
    return []


def _work(conn, request, fds) -> None:
    """In the worker: become the caller's command, run it, report its exit code."""
    import traceback
    from . import cli
    from .runtime import linux
    linux.set_name(b"minidocker-cmd")
    os.register_at_fork(after_in_child=conn.close)   # a detached container's monitor must not hold it
    for i, fd in enumerate(fds):
        os.dup2(fd, i)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.umask(request["umask"])
    sys.stdout.reconfigure(line_buffering=os.isatty(1) or bool(os.environ.get("PYTHONUNBUFFERED")))
    sys.argv = ["minidocker", *request["argv"]]
    conn.sendall(f"pid {os.getpid()}\n".encode())
    try:
        code = cli.main(request["argv"])
    except SystemExit as e:
        code = e.code
    except BaseException:   # what Python would print, had the command run alone
        traceback.print_exc()
        code = 1
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    conn.sendall(f"exit {code or 0}\n".encode())


def _peer(sock) -> tuple:
    """(pid, uid, gid) of the process at the other end of a unix socket."""
    import socket
    import struct
    return struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))


def _reap() -> None:
    try:
        while os.waitpid(-1, os.WNOHANG)[0]:
            pass
    except ChildProcessError:
        pass


def _source_stamp() -> list:
    top = os.path.dirname(os.path.abspath(__file__))
    out = []
    for d in (top, os.path.join(top, "runtime")):
        for name in sorted(os.listdir(d)):
            if name.endswith(".py"):
                st = os.stat(os.path.join(d, name))
                out.append((d, name, st.st_mtime_ns, st.st_size))
    return out


def detach(root) -> None:
    """Start the helper in the background; return once it answers."""
    from .errors import MinidockerError
    listener = bind(root)   # here, so that a failure is reported to whoever asked
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setsid()
        if os.fork():
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        try:
            serve(root, listener, ready_fd=w)
        finally:
            os._exit(0)
    listener.close()
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r, "rb") as f:
        if not f.read(1):
            raise MinidockerError(f"the helper for {root} did not start", 1)
