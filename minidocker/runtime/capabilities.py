"""Linux capabilities: names to bits, and applying an OCI capability set.

Root in a container is root on the host, minus the capabilities we drop.
The five OCI sets map to the kernel's: the bounding set (prctl
PR_CAPBSET_DROP), effective/permitted/inheritable (capset) and ambient
(prctl PR_CAP_AMBIENT).
"""
import errno

from ..errors import MinidockerError
from . import linux

NAMES = [
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID",
    "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST",
    "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO",
    "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
    "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
    "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
]
BITS = {"CAP_" + n: i for i, n in enumerate(NAMES)}


def last_cap() -> int:
    """The highest capability this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return len(NAMES) - 1


def mask(names) -> int:
    """["CAP_CHOWN", ...] -> bit mask; unknown names are an error."""
    bits = 0
    for name in names or ():
        key = name.upper() if name.upper().startswith("CAP_") else "CAP_" + name.upper()
        if key not in BITS:
            raise MinidockerError(f"unknown capability {name!r}")
        bits |= 1 << BITS[key]
    return bits


def drop_bounding(caps: dict) -> None:
    """Shrink the bounding set to caps["bounding"] (needs CAP_SETPCAP: do it before setuid)."""
    keep = mask(caps.get("bounding"))
    for bit in range(last_cap() + 1):
        if not keep & 1 << bit:
            try:
                linux.prctl(linux.PR_CAPBSET_DROP, bit)
            except OSError as e:
                if e.errno != errno.EINVAL:  # EINVAL: this kernel lacks the capability
                    raise


def apply(caps: dict) -> None:
    """Set effective, permitted, inheritable and ambient (after setuid)."""
    linux.capset(mask(caps.get("effective")), mask(caps.get("permitted")),
                 mask(caps.get("inheritable")))
    linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_CLEAR_ALL)
    for bit in range(last_cap() + 1):
        if mask(caps.get("ambient")) & 1 << bit:
            linux.prctl(linux.PR_CAP_AMBIENT, linux.PR_CAP_AMBIENT_RAISE, bit)
