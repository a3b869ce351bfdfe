"""A container's record: what `docker create` writes, from an image and the flags.

    container.json   what was asked, written once: the image ID, the command
                     (image Entrypoint + Cmd, or the user's), the environment
                     (image Env, then -e), the working directory, the user, and
                     HostConfig (network, ports, mounts, limits, security)
    state.json       "created", no process yet
    upper/ work/ rootfs/   an empty writable layer, overlay's work dir, a mount point

Everything a flag can get wrong is checked here, before the directory exists.
"""
import os
import random
import re
import secrets
from pathlib import Path

from . import images, units
from .errors import Conflict, MinidockerError
from .files import write_json
from .store import Store

_NAME = re.compile(r"^/?[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_ADJECTIVES = ("brave", "calm", "clever", "curious", "eager", "gentle", "happy", "jolly", "keen", "lucid",
               "merry", "nimble", "patient", "quiet", "sharp", "steady", "tidy", "witty", "zealous", "bold")
_PIONEERS = ("lovelace", "turing", "hopper", "ritchie", "thompson", "torvalds", "hamilton", "knuth", "dijkstra",
             "liskov", "allen", "backus", "kay", "lamport", "mccarthy", "perlman", "shannon", "wirth", "cerf")


def create(store: Store, image: str, command=None, *, name=None, env=(), workdir=None, hostname=None,
           user=None, entrypoint=None, tty=False, stdin_open=False, auto_remove=False, resources=None,
           network="bridge", ports=(), publish_all=False, mounts=(), security=None, labels=None):
    """docker create: a record, an empty writable layer, nothing running yet.

    `mounts` are volume specs (volumes.parse); `security` holds --cap-add,
    --cap-drop, --privileged, --security-opt and --read-only (security.security).
    """
    from . import netmode
    from . import security as sec
    security = dict(security or {})
    sec.security(security)   # a bad flag fails now, before anything exists
    img = images.get(store, image)
    ic = img.config.get("config") or {}
    ports = netmode.check(store, network, ports, publish_all, ic.get("ExposedPorts"))
    if entrypoint is not None:
        entry, cmd = ([entrypoint] if entrypoint else []), list(command or [])
    else:
        entry, cmd = list(ic.get("Entrypoint") or []), list(command or ic.get("Cmd") or [])
    if not entry + cmd:
        raise MinidockerError("no command specified", 125)
    if name is not None and not _NAME.match(name):
        raise MinidockerError(f"Invalid container name ({name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", 125)
    cid = secrets.token_hex(32)
    config = {"Hostname": hostname or cid[:12], "User": user if user is not None else ic.get("User", ""),
              "Env": merge_env(ic.get("Env") or [], env), "Cmd": cmd, "Entrypoint": entry or None,
              "WorkingDir": workdir or ic.get("WorkingDir") or "/", "Image": image, "Tty": tty,
              "OpenStdin": stdin_open, "Labels": {**(ic.get("Labels") or {}), **(labels or {})},
              "ExposedPorts": ic.get("ExposedPorts") or {}, "StopSignal": ic.get("StopSignal")}
    host = {"AutoRemove": auto_remove, "NetworkMode": network, "PortBindings": list(ports),
            "Mounts": list(mounts), "Resources": resources or {},
            "CapAdd": list(security.get("cap_add") or []), "CapDrop": list(security.get("cap_drop") or []),
            "Privileged": bool(security.get("privileged")), "SecurityOpt": list(security.get("security_opt") or []),
            "ReadonlyRootfs": bool(security.get("read_only"))}
    with store.lock:
        from .containers import all_containers
        taken = {c.name for c in all_containers(store)}
        if name is None:
            name = _random_name(taken)
        elif name.lstrip("/") in taken:
            raise Conflict(f'Conflict. The container name "/{name.lstrip("/")}" is already in use', 125)
        cdir = store.root / "containers" / cid
        cdir.mkdir(mode=0o700)
        for sub in ("upper", "work", "rootfs"):
            (cdir / sub).mkdir(mode=0o755)
        write_json(cdir / "state.json", {"Status": "created", "Running": False, "Paused": False,
                                         "Restarting": False, "OOMKilled": False, "Dead": False, "Pid": 0,
                                         "ExitCode": 0, "Error": "", "StartedAt": "0001-01-01T00:00:00Z",
                                         "FinishedAt": "0001-01-01T00:00:00Z"})
        write_json(cdir / "container.json", {"Id": cid, "Name": "/" + name.lstrip("/"), "Created": units.now_iso(),
                                             "Path": (entry + cmd)[0], "Args": (entry + cmd)[1:],
                                             "Image": img.id, "ImageName": image, "Config": config,
                                             "HostConfig": host, "Driver": "overlay"})
    from .containers import Container
    return Container(store, cid)


def merge_env(base, extra) -> list:
    """Image Env overridden by -e: KEY=VALUE sets, a bare KEY copies the host's value if it has one."""
    env = dict(e.split("=", 1) if "=" in e else (e, "") for e in base)
    for item in extra:
        if "=" in item:
            key, value = item.split("=", 1)
        elif item in os.environ:
            key, value = item, os.environ[item]
        else:
            continue
        if not key:
            raise MinidockerError(f"invalid environment variable: {item}", 125)
        env[key] = value
    return [f"{k}={v}" for k, v in env.items()]


def read_env_file(path) -> list:
    """--env-file: KEY=VALUE lines; # comments and blank lines skipped."""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise MinidockerError(f"open {path}: {e.strerror}", 125) from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _random_name(taken) -> str:
    while True:
        name = f"{random.choice(_ADJECTIVES)}_{random.choice(_PIONEERS)}"
        if name not in taken:
            return name
