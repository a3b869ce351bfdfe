"""Volumes: data that lives outside a container's writable layer.

Three kinds, as in docker:

    -v /host/dir:/data[:ro]     bind: a host directory appears in the container
    -v name:/data, -v /data     volume: a directory minidocker owns, under volumes/<name>/_data,
                                filled from the image's /data the first time it is empty
    --tmpfs /run                tmpfs: memory, gone when the container stops

`parse` (mountflags.py) turns the flags into mount specs (checked: exit 125
before anything exists); `oci_mounts` turns the specs into OCI `mounts[]` at
each start. A container path is resolved *inside* the container's root, so an
image whose /data is a symlink to / or to ../../../etc can only ever point
into itself.
"""
import os
import secrets
import subprocess

from . import units
from .errors import Conflict, MinidockerError, NotFound
from .files import read_json, remove_tree, write_json
from .mountflags import NAME, check_target, parse   # noqa: F401 - volumes.parse: where callers look
from .runtime import linux


# -- named volumes ------------------------------------------------------------------

def _dir(store, name):
    if not NAME.match(name or ""):
        raise MinidockerError(f'"{name}" includes invalid characters for a local volume name, only '
                              '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                              "directory, use absolute path", 125)
    return store.root / "volumes" / name


def create(store, name=None, labels=None, anonymous=False) -> dict:
    """docker volume create: an empty directory; creating an existing name returns it."""
    name = name or secrets.token_hex(32)
    vdir = _dir(store, name)
    with store.lock:
        if (vdir / "volume.json").exists():
            return inspect(store, name)
        (vdir / "_data").mkdir(mode=0o755, parents=True, exist_ok=True)
        os.chmod(vdir.parent, 0o700)
        write_json(vdir / "volume.json", {"Name": name, "Driver": "local", "Scope": "local",
                                          "CreatedAt": units.now_iso(), "Labels": dict(labels or {}),
                                          "Options": {}, "Anonymous": anonymous})
    return inspect(store, name)


def inspect(store, name) -> dict:
    """docker volume inspect NAME."""
    vdir = _dir(store, name)
    try:
        meta = read_json(vdir / "volume.json")
    except FileNotFoundError:
        raise NotFound(f"No such volume: {name}") from None
    return {**meta, "Mountpoint": str(vdir / "_data")}


def list_volumes(store) -> list:
    """docker volume ls, sorted by name."""
    root = store.root / "volumes"
    names = sorted(p.name for p in root.iterdir() if (p / "volume.json").exists()) if root.exists() else []
    return [inspect(store, n) for n in names]


def users(store, name) -> list:
    """IDs of the containers (running or not) that mount volume `name`."""
    found = []
    cdir = store.root / "containers"
    for path in cdir.iterdir() if cdir.exists() else ():
        try:
            record = read_json(path / "container.json")
        except (FileNotFoundError, MinidockerError):
            continue
        if any(m.get("Type") == "volume" and m.get("Source") == name
               for m in record.get("HostConfig", {}).get("Mounts") or ()):
            found.append(path.name)
    return found


def remove(store, name, force=False) -> None:
    """docker volume rm: refused while any container uses it (even with force, as docker)."""
    vdir = _dir(store, name)
    with store.lock:
        if not (vdir / "volume.json").exists():
            if force:
                return
            raise NotFound(f"No such volume: {name}")
        used = users(store, name)
        if used:
            raise Conflict(f"remove {name}: volume is in use - [{', '.join(used)}]")
        remove_tree(vdir)


def prune(store, all=False) -> list:
    """Remove unused volumes: anonymous ones only, unless all=True (docker volume prune -a)."""
    gone = []
    for v in list_volumes(store):
        if (all or v.get("Anonymous")) and not users(store, v["Name"]):
            try:
                remove(store, v["Name"], force=True)
                gone.append(v["Name"])
            except Conflict:
                continue
    return gone


# -- at start: specs to OCI mounts ----------------------------------------------------

def resolve_in_root(rootfs, path) -> str:
    """`path` with the image's symlinks followed as if `rootfs` were /, dangling ones too.

    A link is read through a descriptor of its directory opened inside the root
    (openat2 RESOLVE_IN_ROOT), and ".." never climbs above /: whatever the
    image holds, the answer is a path inside the container.
    """
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    todo, done, hops = path.split("/"), [], 0
    try:
        while todo:
            part = todo.pop(0)
            if part in ("", "."):
                continue
            if part == "..":
                done = done[:-1]
                continue
            try:
                pfd = linux.openat2(rootfd, "/".join(done) or ".", os.O_PATH | os.O_DIRECTORY,
                                    linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_SYMLINKS)
            except (FileNotFoundError, NotADirectoryError):
                done.append(part)   # below a missing directory nothing can be a link
                continue
            try:
                link = os.readlink(part, dir_fd=pfd)
            except OSError:
                done.append(part)   # not a link (EINVAL) or not there (ENOENT)
                continue
            finally:
                os.close(pfd)
            hops += 1
            if hops > 40:
                raise MinidockerError(f"{path}: too many levels of symbolic links in the image", 125)
            if link.startswith("/"):
                done = []
            todo = link.split("/") + todo
    finally:
        os.close(rootfd)
    return "/" + "/".join(done)


def _fill(rootfs, target, data) -> None:
    """Copy the image's content at `target` into an empty volume, as docker does on first use."""
    if any(os.scandir(data)):
        return
    rootfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fd = linux.openat2(rootfd, target, os.O_PATH | os.O_DIRECTORY,
                           linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS)
    except (FileNotFoundError, NotADirectoryError):
        return
    finally:
        os.close(rootfd)
    try:   # cp -a copies symlinks as symlinks, so the walk below the resolved directory stays in it
        subprocess.run(["cp", "-a", "--", f"/proc/self/fd/{fd}/.", str(data)], check=True, pass_fds=(fd,),
                       capture_output=True)
    except subprocess.CalledProcessError as e:
        raise MinidockerError(f"copying the image's {target} into its volume failed: "
                              f"{e.stderr.decode(errors='replace').strip()}") from None
    finally:
        os.close(fd)


def oci_mounts(store, specs, rootfs) -> list:
    """OCI mounts[] for the specs; creates (and fills) named volumes on first use."""
    out = []
    for s in specs or ():
        target = resolve_in_root(str(rootfs), s["Target"])
        check_target(target, "mount")
        flags = ["ro"] if s.get("ReadOnly") else []
        if s["Type"] == "tmpfs":
            out.append({"destination": target, "type": "tmpfs", "source": "tmpfs",
                        "options": ["nosuid", "nodev", "noexec"] + list(s.get("TmpfsOptions") or [])})
            continue
        if s["Type"] == "volume":
            v = create(store, s["Source"], anonymous=s.get("Anonymous", False))
            if not s.get("NoCopy"):
                with store.lock:
                    _fill(str(rootfs), target, v["Mountpoint"])
            source = v["Mountpoint"]
        else:
            if not os.path.exists(s["Source"]):
                raise MinidockerError(f"bind source path does not exist: {s['Source']}", 125)
            source = s["Source"]
        out.append({"destination": target, "type": "bind", "source": source,
                    "options": ["rbind", s.get("Propagation") or "rprivate"] + flags})
    return out
