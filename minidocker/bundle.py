"""The OCI bundle the engine hands to the runtime: config.json with Docker's defaults.

What `docker run busybox` asks runc for, written down (security.md section 1):
14 capabilities, the standard mounts with their options, masked and read-only
paths, Docker's device allow-list, hostname = first 12 characters of the id,
the default PATH, HOSTNAME and HOME from the container's own /etc/passwd.
"""
import copy
import os

from .files import write_json
from .runtime import user as users

OCI_VERSION = "1.0.2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CAPABILITIES = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
MOUNTS = [
    {"destination": "/proc", "type": "proc", "source": "proc",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
    {"destination": "/sys", "type": "sysfs", "source": "sysfs",
     "options": ["nosuid", "noexec", "nodev", "ro"]},
    {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
     "options": ["ro", "nosuid", "noexec", "nodev"]},
    {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
     "options": ["nosuid", "noexec", "nodev"]},
    {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
     "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]},
]
# Docker's devices cgroup: deny all, then allow the default nodes, ptys and mknod.
DEVICE_RULES = [{"allow": False, "access": "rwm"}] + [
    {"allow": True, "type": t, "major": ma, "minor": mi, "access": acc}
    for t, ma, mi, acc in [("c", None, None, "m"), ("b", None, None, "m"), ("c", 1, 3, "rwm"),
                           ("c", 1, 8, "rwm"), ("c", 1, 7, "rwm"), ("c", 5, 0, "rwm"),
                           ("c", 1, 5, "rwm"), ("c", 1, 9, "rwm"), ("c", 5, 1, "rwm"),
                           ("c", 136, None, "rwm"), ("c", 5, 2, "rwm"), ("c", 10, 200, "rwm")]]


def default_rlimits() -> list:
    """Docker passes on its own open-files limit (containerd: 1048576); never above ours."""
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    n = 1048576 if hard == resource.RLIM_INFINITY else min(1048576, hard)
    return [{"type": "RLIMIT_NOFILE", "hard": n, "soft": n}]


def _cgroup_v2_only() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def default_namespaces() -> list:
    """Docker's: mount, network, uts, pid, ipc; cgroup only on a v2 host."""
    names = ["pid", "network", "ipc", "uts", "mount"] + (["cgroup"] if _cgroup_v2_only() else [])
    return [{"type": n} for n in names]


def spec(rootfs, args, *, env=(), cwd="/", user="", hostname="", terminal=False, mounts=(),
         cgroups_path=None, resources=None, namespaces=None, extra=None, id="") -> dict:
    """config.json for running `args` in `rootfs`, as Docker would write it."""
    who = users.resolve(str(rootfs), user)
    hostname = hostname or id[:12]
    names = {e.split("=", 1)[0] for e in env}
    base = [f"PATH={DEFAULT_PATH}"] if "PATH" not in names else []
    base += [f"HOSTNAME={hostname}"] if hostname and "HOSTNAME" not in names else []
    tail = [f"HOME={who['home']}"] if "HOME" not in names else []
    caps = list(CAPABILITIES)
    # A non-root user gets no effective/permitted capabilities (moby#27689).
    eff = caps if who["uid"] == 0 else []
    config = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": bool(terminal),
            "user": {"uid": who["uid"], "gid": who["gid"], "additionalGids": who["additionalGids"]},
            "args": list(args),
            "env": base + list(env) + tail,
            "cwd": cwd or "/",
            "capabilities": {"bounding": caps, "effective": eff, "permitted": eff,
                             "inheritable": [], "ambient": []},
            "rlimits": default_rlimits(),
            "noNewPrivileges": False,
            "oomScoreAdj": 0,
        },
        "root": {"path": str(rootfs), "readonly": False},
        "hostname": hostname,
        "mounts": copy.deepcopy(MOUNTS) + [dict(m) for m in mounts],
        "linux": {
            "resources": dict(resources or {}, devices=copy.deepcopy(DEVICE_RULES)),
            "namespaces": namespaces if namespaces is not None else default_namespaces(),
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    if cgroups_path:
        config["linux"]["cgroupsPath"] = cgroups_path
    for key, value in (extra or {}).items():
        config[key] = value
    return config


def write(bundle_dir, config: dict) -> None:
    """Write `config` as bundle_dir/config.json (atomically)."""
    os.makedirs(bundle_dir, mode=0o700, exist_ok=True)
    write_json(os.path.join(bundle_dir, "config.json"), config)
