"""A container's output: the monitor copies it into the log, as docker's json-file
log driver does, and to the terminal of an attached `run`.

    <container dir>/log    one JSON object per line: {"log": "hi\\n", "stream": "stdout", "time": "..."}

`logs` reads the same file back (Container.logs).
"""
import json
import os
import select
import signal

from . import units


def pump(c, init_pid, outputs, console, attach):
    """Copy output to the log (and the attached terminal) until the init exits; its wait status."""
    log = open(c.dir / "log", "ab")
    sinks = {"stdout": 1, "stderr": 2} if attach else {}
    open_fds = dict(outputs)
    forward_stdin = attach and console is not None and c.record["Config"]["OpenStdin"]
    if console is not None and attach:
        copy_winsize(0, console)
        signal.signal(signal.SIGWINCH, lambda *_: copy_winsize(0, console))
    pidfd = os.pidfd_open(init_pid)
    status = None
    while open_fds or status is None:
        watch = list(open_fds) + ([pidfd] if status is None else []) + ([0] if forward_stdin else [])
        try:
            ready, _, _ = select.select(watch, [], [], 0.5 if status is not None else None)
        except InterruptedError:
            continue
        if not ready and status is not None:
            break   # exited, and nothing more came: a grandchild holds the pipe open
        for fd in ready:
            if fd == pidfd:
                status = os.waitpid(init_pid, 0)[1]
                continue
            if fd == 0:
                data = os.read(0, 65536)
                if data:
                    os.write(console, data)
                else:
                    forward_stdin = False
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:   # EIO from a pty whose other side is gone
                data = b""
            if not data:
                os.close(fd)
                del open_fds[fd]
                continue
            stream = open_fds[fd]
            _log(log, stream, data)
            if stream in sinks:
                try:
                    os.write(sinks[stream], data)
                except OSError:
                    sinks.clear()   # the attached client is gone; the log still gets everything
    os.close(pidfd)
    log.close()
    return status


def _log(log, stream, data: bytes) -> None:
    now = units.now_iso()
    text = data.decode("utf-8", "surrogateescape")
    for line in text.splitlines(keepends=True):
        log.write((json.dumps({"log": line, "stream": stream, "time": now}) + "\n").encode())
    log.flush()


def copy_winsize(src, dst):
    import fcntl
    import termios
    try:
        fcntl.ioctl(dst, termios.TIOCSWINSZ, fcntl.ioctl(src, termios.TIOCGWINSZ, b"\0" * 8))
    except OSError:
        pass
