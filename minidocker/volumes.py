"""Volumes: data that lives outside a container's writable layer.

Three kinds, as in docker:

    -v /host/dir:/data[:ro]     bind: a host directory appears in the container
    -v name:/data, -v /data     volume: a directory minidocker owns, under volumes/<name>/_data,
                                filled from the image's /data the first time it is empty
    --tmpfs /run                tmpfs: memory, gone when the container stops

`parse` turns the flags into mount specs (checked: exit 125 before anything
exists); `oci_mounts` turns the specs into OCI `mounts[]` at each start. A
container path is resolved *inside* the container's root, so an image whose
/data is a symlink to / or to ../../../etc can only ever point into itself.
"""
import os
import posixpath
import re
import secrets
import subprocess

from . import units
from .errors import Conflict, MinidockerError, NotFound
from .files import read_json, remove_tree, write_json
from .runtime import linux

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_BIND_OPTIONS = {"ro", "rw", "z", "Z", "nocopy", "private", "rprivate", "shared", "rshared",
                 "slave", "rslave"}
_TMPFS_KEYS = {"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks"}
_TMPFS_FLAGS = {"rw", "ro", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "sync", "async",
                "atime", "noatime", "diratime", "nodiratime", "relatime", "strictatime"}
_FORBIDDEN = ("/proc",)   # the kernel's view of the container must stay the kernel's


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


# -- the flags --------------------------------------------------------------------

def _target(path, flag) -> str:
    if not path:
        raise MinidockerError(f"invalid {flag}: the container path is missing", 125)
    if not path.startswith("/"):
        raise MinidockerError(f"invalid {flag}: invalid mount path: '{path}' mount path must be absolute", 125)
    target = posixpath.normpath(path)
    target = "/" + target.lstrip("/")
    _check_target(target, flag)
    return target


def _check_target(target, flag):
    if target == "/":
        raise MinidockerError(f"invalid {flag}: destination can't be '/'", 125)
    if any(target == f or target.startswith(f + "/") for f in _FORBIDDEN):
        raise MinidockerError(f"invalid {flag}: cannot mount over {target}: /proc belongs to the kernel", 125)


def _source(kind, source, flag) -> str:
    if kind == "bind":
        if not source.startswith("/"):
            raise MinidockerError(f"invalid {flag}: bind source {source!r} must be an absolute path", 125)
        if not os.path.exists(source):
            raise MinidockerError(f"invalid {flag}: bind source path does not exist: {source}", 125)
        return posixpath.normpath(source)
    if kind == "volume" and source:
        if "/" in source or source.startswith("."):
            raise MinidockerError(f"invalid {flag}: {source!r} is a relative path: a host directory "
                                  "must be given as an absolute path", 125)
        if not NAME.match(source):
            raise MinidockerError(f"invalid {flag}: {source!r} includes invalid characters for a local "
                                  'volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed', 125)
    return source


def _spec(kind, source, target, read_only=False, propagation="", nocopy=False, tmpfs=()) -> dict:
    if kind == "volume" and not source:
        source = secrets.token_hex(32)   # anonymous: named now, so every start finds the same one
        anonymous = True
    else:
        anonymous = False
    return {"Type": kind, "Source": source, "Target": target, "ReadOnly": read_only,
            "Propagation": propagation, "NoCopy": nocopy, "Anonymous": anonymous,
            "TmpfsOptions": list(tmpfs)}


def parse_volume(text: str) -> dict:
    """-v SRC:DST[:OPTS] or -v DST (an anonymous volume)."""
    parts = text.split(":")
    if len(parts) == 1:
        return _spec("volume", "", _target(parts[0], "-v"))
    if len(parts) > 3 or not parts[0]:
        raise MinidockerError(f"invalid -v {text!r}: want SOURCE:DESTINATION[:OPTIONS]", 125)
    opts = [o for o in (parts[2].split(",") if len(parts) == 3 else []) if o]
    bad = [o for o in opts if o not in _BIND_OPTIONS]
    if bad:
        raise MinidockerError(f"invalid -v {text!r}: unknown option {bad[0]!r}", 125)
    kind = "bind" if parts[0].startswith("/") else "volume"
    propagation = next((o for o in opts if "private" in o or "shared" in o or "slave" in o), "")
    return _spec(kind, _source(kind, parts[0], "-v"), _target(parts[1], "-v"), "ro" in opts,
                 propagation, "nocopy" in opts)


def _true(value, key) -> bool:
    if value in ("", "true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise MinidockerError(f"invalid --mount: {key}={value!r} is not a boolean", 125)


def parse_mount(text: str) -> dict:
    """--mount type=bind|volume|tmpfs,source=...,target=...[,readonly][,...]."""
    fields = {}
    for item in text.split(","):
        key, _, value = item.partition("=")
        fields[key.strip().lower()] = value.strip()
    kind = fields.pop("type", "volume")
    if kind not in ("bind", "volume", "tmpfs"):
        raise MinidockerError(f"invalid --mount: unknown type {kind!r}", 125)
    source = fields.pop("source", fields.pop("src", ""))
    target = fields.pop("target", fields.pop("destination", fields.pop("dst", "")))
    read_only = any(_true(fields.pop(k), k) for k in ("readonly", "ro") if k in fields)
    propagation = fields.pop("bind-propagation", "")
    nocopy = _true(fields.pop("volume-nocopy"), "volume-nocopy") if "volume-nocopy" in fields else False
    tmpfs = [f"size={fields.pop('tmpfs-size')}"] if "tmpfs-size" in fields else []
    tmpfs += [f"mode={fields.pop('tmpfs-mode')}"] if "tmpfs-mode" in fields else []
    fields.pop("consistency", None)
    if fields:
        key = next(iter(fields))
        raise MinidockerError(f"invalid --mount: unexpected key {key!r} in {text!r}", 125)
    if kind == "bind" and not source:
        raise MinidockerError("invalid --mount: type=bind needs a source", 125)
    if kind == "tmpfs" and source:
        raise MinidockerError("invalid --mount: type=tmpfs takes no source", 125)
    if propagation and propagation not in _BIND_OPTIONS - {"ro", "rw", "z", "Z", "nocopy"}:
        raise MinidockerError(f"invalid --mount: bind-propagation={propagation!r}", 125)
    return _spec(kind, _source(kind, source, "--mount"), _target(target, "--mount"), read_only,
                 propagation, nocopy, _tmpfs_options(tmpfs, "--mount"))


def _tmpfs_options(opts, flag) -> list:
    for o in opts:
        key = o.split("=", 1)[0]
        if not (o in _TMPFS_FLAGS or ("=" in o and key in _TMPFS_KEYS)):
            raise MinidockerError(f"invalid {flag}: unknown tmpfs option {o!r}", 125)
    return list(opts)


def parse_tmpfs(text: str) -> dict:
    """--tmpfs /run[:size=64m,mode=1777,...]."""
    target, _, opts = text.partition(":")
    return _spec("tmpfs", "", _target(target, "--tmpfs"), "ro" in opts.split(","),
                 tmpfs=_tmpfs_options([o for o in opts.split(",") if o], "--tmpfs"))


def parse(volume_flags=(), mount_flags=(), tmpfs_flags=(), store=None) -> list:
    """All of -v, --mount and --tmpfs as mount specs; exit 125 on the first mistake."""
    specs = ([parse_volume(v) for v in volume_flags or ()] + [parse_mount(m) for m in mount_flags or ()]
             + [parse_tmpfs(t) for t in tmpfs_flags or ()])
    seen = set()
    for s in specs:
        if s["Target"] in seen:
            raise MinidockerError(f"Duplicate mount point: {s['Target']}", 125)
        seen.add(s["Target"])
        if store is not None and s["Type"] == "bind":
            _refuse_store(store, s["Source"])
    return specs


def _refuse_store(store, source) -> None:
    """The store holds every image's setuid files and every container: never hand it out (R14)."""
    real, root = os.path.realpath(source), os.path.realpath(store.root)
    if real == root or real.startswith(root.rstrip("/") + "/"):
        raise MinidockerError(f"invalid -v: {source} is inside minidocker's store", 125)


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
        _check_target(target, "mount")
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
