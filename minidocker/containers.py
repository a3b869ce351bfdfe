"""Containers: their records on disk and the lifecycle docker users know.

    created --start--> running --exit / stop / kill--> exited --rm--> (removed)
       |                  ^                               |
       |                  '------------ start ------------'
       '-------------------------- rm --------------------------------> (removed)

    containers/<id>/container.json   what was asked: image, command, options (written once)
    containers/<id>/state.json       what is: status, PIDs, exit code, times (the monitor's)
    containers/<id>/config.json      the OCI bundle handed to the runtime, rewritten at each start
    containers/<id>/upper work rootfs   the writable layer, overlay's work dir, the mount point
    containers/<id>/log              stdout and stderr, one JSON line per chunk (docker's json-file)

A running container has a monitor (monitor.py) that holds its init as a child
and writes state.json when it exits. Nothing here trusts a PID alone: a PID is
believed only if the process start time recorded beside it still matches.
"""
import json
import os
import re
import time

from . import units
from .errors import Conflict, MinidockerError, NotFound
from .files import Lock, read_json, remove_tree, write_json, crash_point
from .store import Store

def runtime_root(store: Store) -> str:
    """The runtime's state directory for this store (tests get their own)."""
    return str(store.root / "runtime")


class Container:
    """One container: its record, its state, and the verbs that change them."""

    def __init__(self, store: Store, id: str):
        self.store, self.id = store, id
        self.dir = store.root / "containers" / id
        self.lock = Lock(self.dir / "lock")
        self.reload()

    def reload(self) -> "Container":
        try:
            self.record = read_json(self.dir / "container.json")
            self.state = read_json(self.dir / "state.json")
        except FileNotFoundError:
            raise NotFound(f"No such container: {self.id[:12]}") from None
        self.state = reconcile(self)
        return self

    @property
    def name(self) -> str:
        return self.record["Name"].lstrip("/")

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def status(self) -> str:
        return self.state["Status"]

    def __repr__(self):
        return f"<Container {self.short_id} {self.name} {self.status}>"

    # -- lifecycle ---------------------------------------------------------

    def start(self, attach: bool = False):
        """Start the container through a new monitor; returns the monitor's message channel."""
        from . import monitor
        self.reload()
        if self.status == "running":
            raise Conflict(f"container {self.name} is already running", 1)
        return monitor.spawn(self, attach=attach)

    def kill(self, sig="KILL") -> None:
        from . import runtime
        self.reload()
        if self.status != "running":
            raise Conflict(f"Cannot kill container {self.name}: container is not running", 1)
        runtime.kill(self.id, sig, root=runtime_root(self.store))

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (or the image's StopSignal), then SIGKILL after `timeout` seconds, as docker stop."""
        self.reload()
        if self.status != "running":
            return
        stop_signal = (self.record["Config"].get("StopSignal") or "TERM")
        try:
            self.kill(stop_signal)
        except Conflict:
            return
        if not self.wait_exit(timeout):
            try:
                self.kill("KILL")
            except Conflict:
                pass
            self.wait_exit(10)

    def wait_exit(self, timeout=None) -> bool:
        """Wait until the monitor has recorded the exit; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.reload()
            if self.status != "running":
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            _wait_pid(self.state.get("MonitorPid", 0), self.state.get("MonitorStart"), 0.05)

    def wait(self) -> int:
        """Block until the container exits; its exit code (docker wait)."""
        self.wait_exit()
        return self.state["ExitCode"]

    def security_options(self) -> dict:
        """The security flags it was created with, as security.security() takes them."""
        h = self.record["HostConfig"]
        return {"cap_add": h.get("CapAdd"), "cap_drop": h.get("CapDrop"), "privileged": h.get("Privileged"),
                "security_opt": h.get("SecurityOpt"), "read_only": h.get("ReadonlyRootfs")}

    def remove(self, force: bool = False, volumes: bool = False) -> None:
        """docker rm: refused while running unless forced; releases everything the container holds.

        Anonymous volumes go with the container when asked (rm -v) or when it was run with --rm.
        """
        self.reload()
        if self.status == "running":
            if not force:
                raise Conflict(f"cannot remove container {self.name}: container is running: "
                               "stop the container before removing or force remove", 1)
            self.kill("KILL")
            self.wait_exit(10)
        release(self)
        crash_point("rm-after-release")
        with self.store.lock:
            remove_tree(self.dir)
        if volumes or self.record["HostConfig"].get("AutoRemove"):
            from . import volumes as vols
            for spec in self.record["HostConfig"].get("Mounts") or []:
                if spec.get("Anonymous"):
                    try:
                        vols.remove(self.store, spec["Source"], force=True)
                    except NotFound:
                        pass

    def logs(self, tail=None, timestamps=False, stdout=True, stderr=True) -> str:
        """The container's output so far, both streams interleaved as they came."""
        return "".join(text for _, text in self.log_lines(tail, timestamps, stdout, stderr))

    def log_lines(self, tail=None, timestamps=False, stdout=True, stderr=True, offset=0):
        """(stream, text) pairs from the log file, optionally only the last `tail` ones."""
        path = self.dir / "log"
        if not path.exists():
            return []
        with open(path, "rb") as f:
            f.seek(offset)
            lines = f.read().splitlines()
        out = []
        for raw in lines:
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            if (entry["stream"] == "stdout" and stdout) or (entry["stream"] == "stderr" and stderr):
                out.append((entry["stream"], (entry["time"] + " " if timestamps else "") + entry["log"]))
        return out[-tail:] if tail is not None and tail >= 0 else out

    def inspect(self) -> dict:
        """The container as docker inspect shows it."""
        private = ("MonitorPid", "MonitorStart", "InitStart", "AttachedNetworks", "Ports", "NetworkSettings")
        state = {k: v for k, v in self.state.items() if k not in private}
        state["Running"] = self.status == "running"
        network = self.state.get("NetworkSettings") or {"Networks": {}, "Ports": {}}
        return {**self.record, "State": state, "NetworkSettings": network, "LogPath": str(self.dir / "log"),
                "ResolvConfPath": str(self.dir / "resolv.conf"), "HostnamePath": str(self.dir / "hostname"),
                "HostsPath": str(self.dir / "hosts"),
                "GraphDriver": {"Name": "overlay", "Data": {"UpperDir": str(self.dir / "upper"),
                                                           "WorkDir": str(self.dir / "work"),
                                                           "MergedDir": str(self.dir / "rootfs")}}}

    def status_text(self) -> str:
        """The STATUS column of docker ps: Up 3 seconds, Exited (0) 2 minutes ago, Created."""
        s = self.state
        if s["Status"] == "running":
            started = units.parse_time(s.get("StartedAt")) or time.time()
            return "Up " + units.human_duration(time.time() - started)
        if s["Status"] == "exited":
            return f"Exited ({s['ExitCode']}) {units.ago(s.get('FinishedAt'))}"
        return s["Status"].capitalize()


# -- finding containers -------------------------------------------------------------

def all_containers(store: Store) -> list:
    out = []
    for path in (store.root / "containers").iterdir():
        if (path / "container.json").exists():
            try:
                out.append(Container(store, path.name))
            except NotFound:
                continue   # removed while we looked
    return sorted(out, key=lambda c: c.record["Created"], reverse=True)


def get(store: Store, name: str) -> Container:
    """By full ID, by name, or by a unique ID prefix, as docker resolves them."""
    if re.fullmatch(r"[0-9a-f]{64}", name) and (store.root / "containers" / name / "container.json").exists():
        return Container(store, name)
    everyone = all_containers(store)
    for c in everyone:
        if c.name == name.lstrip("/"):
            return c
    found = [c for c in everyone if name and c.id.startswith(name)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise MinidockerError(f"multiple containers match {name!r}: use more of the ID")
    raise NotFound(f"No such container: {name}")


# -- the truth about running containers -------------------------------------------------

def _alive(pid, start) -> bool:
    from .runtime.statedir import start_time
    return bool(pid) and start is not None and start_time(pid) == start


def _wait_pid(pid, start, timeout) -> None:
    """Sleep until process `pid` exits or `timeout` passes (a pidfd, so no busy loop)."""
    if not _alive(pid, start):
        return
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        import select
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def reconcile(c: Container) -> dict:
    """The recorded state, corrected when the monitor died without recording the exit."""
    s = c.state
    if s["Status"] != "running" or _alive(s.get("MonitorPid"), s.get("MonitorStart")):
        return s
    if _alive(s.get("Pid"), s.get("InitStart")):
        return s   # the monitor is gone but the container still runs: it is running
    try:
        with c.lock:
            s = read_json(c.dir / "state.json")
            if s["Status"] == "running" and not _alive(s.get("MonitorPid"), s.get("MonitorStart")):
                release(c)
                s.update(Status="exited", Running=False, Pid=0, ExitCode=255, FinishedAt=units.now_iso(),
                         Error="the container's monitor died; its exit status is unknown")
                write_json(c.dir / "state.json", s)
    except FileNotFoundError:
        # We read "running" just before its monitor exited and removed it (run --rm).
        raise NotFound(f"No such container: {c.short_id}") from None
    return s


def release(c: Container) -> None:
    """Give back what a stopped container holds: runtime state, cgroup, network, the overlay mount."""
    from . import overlay, runtime
    try:
        runtime.delete(c.id, force=True, root=runtime_root(c.store))
    except NotFound:
        pass
    if read_json(c.dir / "state.json").get("AttachedNetworks"):   # pyroute2 is slow to import
        from . import netmode
        netmode.release(c)
    if overlay.is_mounted(c.dir / "rootfs"):
        overlay.unmount(c.dir / "rootfs")


# `docker create` writes a container's record: records.py. Kept reachable from here.
from .records import create, merge_env, read_env_file  # noqa: E402,F401
