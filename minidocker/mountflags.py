"""docker's three ways of asking for a mount, parsed into one kind of spec.

    -v /host/dir:/data[:ro]              bind
    -v name:/data, -v /data              volume (named, or anonymous)
    --mount type=bind|volume|tmpfs,...   any of the three, spelled out
    --tmpfs /run[:size=64m]              tmpfs

A spec is {"Type", "Source", "Target", "ReadOnly", ...}, stored in the
container's record; volumes.oci_mounts turns it into OCI mounts at each start.
Every mistake is a one-line error with docker's exit code 125, before anything
exists.
"""
import os
import posixpath
import re
import secrets

from .errors import MinidockerError

NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_BIND_OPTIONS = {"ro", "rw", "z", "Z", "nocopy", "private", "rprivate", "shared", "rshared",
                 "slave", "rslave"}
_TMPFS_KEYS = {"size", "mode", "uid", "gid", "nr_inodes", "nr_blocks"}
_TMPFS_FLAGS = {"rw", "ro", "exec", "noexec", "suid", "nosuid", "dev", "nodev", "sync", "async",
                "atime", "noatime", "diratime", "nodiratime", "relatime", "strictatime"}
_FORBIDDEN = ("/proc",)   # the kernel's view of the container must stay the kernel's


def _target(path, flag) -> str:
    if not path:
        raise MinidockerError(f"invalid {flag}: the container path is missing", 125)
    if not path.startswith("/"):
        raise MinidockerError(f"invalid {flag}: invalid mount path: '{path}' mount path must be absolute", 125)
    target = posixpath.normpath(path)
    target = "/" + target.lstrip("/")
    check_target(target, flag)
    return target


def check_target(target, flag):
    """Not / and not under /proc: asked for here, and again once resolved in the rootfs (volumes.py)."""
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
