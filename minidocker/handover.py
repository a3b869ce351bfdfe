"""A typed command handing itself over to the resident helper (serve.py).

Every `minidocker` command first looks for the helper's socket; when one
answers, the command sends what it is (arguments, environment, directory,
umask, and its stdin, stdout and stderr themselves, as SCM_RIGHTS), passes on
the signals it gets, and exits with the code the helper's worker reports.

    request   4-byte big-endian length, then NUL-separated words:
              cwd, umask, argument count, arguments, KEY=VALUE...
              (or the single word "stop", from `system serve --stop`)
    replies   "pid N" (the worker), then "exit CODE"; or "stale" (the helper left)

This module imports as little as it can (no json, no socket.py): in a
command that is handed over, its cost is the command's whole cost.
"""
import os

SOCKET = "serve.sock"
_FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGWINCH", "SIGUSR1", "SIGUSR2")


def socket_path(root=None) -> str:
    # store.DEFAULT_ROOT, without importing the store: the client stays cheap
    return os.path.join(str(root or os.environ.get("MINIDOCKER_ROOT") or "/var/lib/minidocker"), SOCKET)


def forward(argv) -> "int | None":
    """Run `minidocker ARGV` in the helper; its exit code, or None if no helper serves us."""
    path = socket_path()
    if not os.path.exists(path):   # the common case costs one stat
        return None
    import _socket
    import struct
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
        fds = struct.pack("3i", 0, 1, 2)   # our stdin, stdout and stderr, as SCM_RIGHTS wants them
        message = frame(encode_request(argv, dict(os.environ), os.getcwd(), _umask()))
        sent = sock.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        sock.sendall(message[sent:])   # a stream: a big environment may take more than one write
        first = _lines(sock)
        kind, _, value = next(first, "").partition(" ")
    except OSError:
        sock.close()
        return None   # a stale socket, or a helper going away: run alone
    if kind != "pid":
        sock.close()
        return None   # "stale": the helper has exited
    return _wait(sock, first, int(value))


def frame(payload: bytes) -> bytes:
    """A request on the stream: its length (4 bytes, big-endian), then itself."""
    return len(payload).to_bytes(4, "big") + payload


def encode_request(argv, env, cwd, umask) -> bytes:
    """NUL-separated: cwd, umask, argument count, arguments, then KEY=VALUE pairs."""
    words = [cwd, str(umask), str(len(argv)), *argv, *(f"{k}={v}" for k, v in env.items())]
    return b"\0".join(map(os.fsencode, words))


def decode_request(data: bytes) -> dict:
    cwd, umask, n, *rest = map(os.fsdecode, data.split(b"\0"))
    argv, env = rest[:int(n)], dict(w.split("=", 1) for w in rest[int(n):])
    return {"cwd": cwd, "umask": int(umask), "argv": argv, "env": env}


def _lines(sock):
    buf = b""
    while True:
        while b"\n" not in buf:
            chunk = sock.recv(4096)
            if not chunk:
                return
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        yield line.decode()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _wait(sock, lines, pid) -> int:
    """Pass our signals on to the worker until it reports its exit code."""
    import _signal   # the C half of `signal`, which would import enum: 3 ms
    last = []
    for name in _FORWARDED:
        _signal.signal(getattr(_signal, name), lambda s, _: (last.append(s), os.kill(pid, s)))
    # A worker dies without a word only when killed: its socket then closes, since
    # the processes it forks (a detached container's monitor) do not keep it.
    for line in lines:
        kind, _, value = line.partition(" ")
        if kind == "exit":
            return int(value)
    return 128 + last[-1] if last else 125
