"""Users and groups, looked up in the container's own /etc/passwd and /etc/group.

Never through the host's NSS (that would load libraries from the image into a
host process, CVE-2019-14271). The files are opened inside the rootfs with
openat2(RESOLVE_IN_ROOT), must be regular files (a FIFO or /dev/zero would hang
us, CVE-2024-9676) and are read up to a size cap.
"""
import os
import stat

from ..errors import MinidockerError
from . import linux

MAX_SIZE = 1 << 20


def read_in_root(rootfs: str, path: str) -> str:
    """Text of a regular file inside `rootfs`, or "" if it does not exist."""
    root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # O_PATH first: a FIFO or a device is never really opened, only looked at.
        pfd = linux.openat2(root, path, os.O_PATH, linux.RESOLVE_IN_ROOT | linux.RESOLVE_NO_MAGICLINKS)
    except FileNotFoundError:
        return ""
    except OSError as e:
        raise MinidockerError(f"cannot open {path} in the container: {e.strerror}") from None
    finally:
        os.close(root)
    try:
        if not stat.S_ISREG(os.fstat(pfd).st_mode):
            raise MinidockerError(f"{path} in the container is not a regular file")
        fd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(pfd)
    with os.fdopen(fd, "rb") as f:
        data = f.read(MAX_SIZE + 1)
    if len(data) > MAX_SIZE:
        raise MinidockerError(f"{path} in the container is larger than {MAX_SIZE} bytes")
    return data.decode("utf-8", "replace")


def _entries(text: str, fields: int):
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= fields and not line.startswith("#"):
            yield parts


def resolve(rootfs: str, spec: str = "") -> dict:
    """docker's --user ("", "name", "uid", "uid:gid", "name:group") -> uid, gid, groups, home."""
    user, _, group = (spec or "").partition(":")
    passwd = list(_entries(read_in_root(rootfs, "/etc/passwd"), 7))
    entry = None
    if user == "":
        entry = next((p for p in passwd if p[2] == "0"), None)
        uid = 0
    elif user.isdigit():
        uid = int(user)
        entry = next((p for p in passwd if p[2] == user), None)
    else:
        entry = next((p for p in passwd if p[0] == user), None)
        if entry is None:
            raise MinidockerError(f"unable to find user {user}: no matching entries in passwd file", 126)
        uid = int(entry[2])
    gid = int(entry[3]) if entry and entry[3].isdigit() else 0
    home = entry[5] if entry and entry[5] else "/"
    groups = list(_entries(read_in_root(rootfs, "/etc/group"), 4))
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            match = next((g for g in groups if g[0] == group), None)
            if match is None:
                raise MinidockerError(f"unable to find group {group}: no matching entries in group file", 126)
            gid = int(match[2])
    name = entry[0] if entry else None
    extra = [gid]
    if name is not None and not group:  # supplementary groups only for a named passwd user
        extra += [int(g[2]) for g in groups if g[2].isdigit() and name in g[3].split(",")]
    return {"uid": uid, "gid": gid, "additionalGids": list(dict.fromkeys(extra)), "home": home}
