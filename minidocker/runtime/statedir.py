"""Where the runtime remembers its containers, and how it tells if one lives.

    <root>/<id>/state.json   id, pid, start time, bundle, cgroups path
    <root>/<id>/exec.fifo    exists while the init waits for `start`

A PID alone proves nothing: once a process dies its number is handed out
again. So we record the process start time (field 22 of /proc/PID/stat) next
to the PID and only trust a PID whose start time still matches. Signals go
through a pidfd taken after that check, so they cannot hit a newcomer.
"""
import os
import re
import select
import signal
import time
from pathlib import Path

from ..errors import Conflict, MinidockerError, NotFound
from ..files import remove_tree, read_json, write_json

DEFAULT_ROOT = "/run/minidocker-runtime"
OCI_VERSION = "1.0.2"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


def root_dir(root=None) -> Path:
    """The state root, created 0700 on first use."""
    path = Path(root or DEFAULT_ROOT)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def container_dir(id, root=None, must_exist=True) -> Path:
    """The state directory of container `id`."""
    if not isinstance(id, str) or not _ID.match(id):
        raise MinidockerError(f"invalid container id {id!r}")
    path = root_dir(root) / id
    if must_exist and not (path / "state.json").exists():
        raise NotFound(f"container {id} does not exist")
    return path


def start_time(pid: int):
    """Start time of `pid` in clock ticks since boot, or None if it is gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    if fields[0] in ("Z", "X"):  # dead, only waiting to be reaped
        return None
    return int(fields[19])


def is_alive(record: dict) -> bool:
    """True if the process recorded in `record` is still the same process."""
    return record.get("pid", 0) > 0 and start_time(record["pid"]) == record.get("start_time")


def status(record: dict, path: Path) -> str:
    """OCI status: created (waits for start), running or stopped."""
    if not is_alive(record):
        return "stopped"
    return "created" if (path / "exec.fifo").exists() else "running"


def load(id, root=None):
    """(record, state directory) of container `id`."""
    path = container_dir(id, root)
    return read_json(path / "state.json"), path


def save(path: Path, record: dict) -> None:
    """Write the record atomically."""
    write_json(path / "state.json", record)


def oci_state(record: dict, path: Path) -> dict:
    """The state document of the OCI runtime spec."""
    st = status(record, path)
    return {"ociVersion": OCI_VERSION, "id": record["id"], "status": st,
            "pid": record["pid"] if st != "stopped" else 0, "bundle": record["bundle"],
            "annotations": record.get("annotations") or {}}


def pidfd(record: dict):
    """A pidfd for the recorded process, or None if it is no longer that process."""
    try:
        fd = os.pidfd_open(record["pid"])
    except ProcessLookupError:
        return None
    if not is_alive(record):  # checked after opening: the fd now pins this very process
        os.close(fd)
        return None
    return fd


def send_signal(record: dict, sig: int) -> bool:
    """Signal the recorded process through a pidfd; False if it is gone."""
    fd = pidfd(record)
    if fd is None:
        return False
    try:
        signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)


def wait_gone(record: dict, timeout: float = 10.0, others=()) -> None:
    """Wait until the recorded process has exited (a pidfd turns readable).

    A PID-namespace init only finishes exiting once every other process of the
    namespace has been reaped; if some are our children (we are a subreaper),
    that is our job: pass their PIDs as `others`.
    """
    fd = pidfd(record)
    if fd is None:
        return reap(record["pid"])
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        while is_alive(record):
            left = deadline - time.monotonic()
            if left <= 0:
                raise MinidockerError(f"process {record['pid']} did not exit within {timeout:.0f}s")
            poller.poll(min(left, 0.05) * 1000)
            for pid in others:
                reap(pid)
    finally:
        os.close(fd)
    reap(record["pid"])


def reap(pid: int) -> None:
    """Collect `pid` if it has become our child (we may be its subreaper)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def remove(path: Path) -> None:
    """Delete a state directory."""
    remove_tree(path)


def parse_signal(sig) -> int:
    """TERM, SIGTERM, 15 or signal.SIGTERM -> 15."""
    if isinstance(sig, int):
        return int(sig)
    text = str(sig).strip().upper()
    if text.isdigit():
        return int(text)
    name = text if text.startswith("SIG") else "SIG" + text
    try:
        return int(getattr(signal.Signals, name))
    except AttributeError:
        raise MinidockerError(f"unknown signal {sig!r}") from None


def require(record: dict, path: Path, *allowed) -> str:
    """The container's status, or Conflict if it is not one of `allowed`."""
    st = status(record, path)
    if st not in allowed:
        raise Conflict(f"container {record['id']} is {st}")
    return st
