"""The Linux system calls a container runtime needs, through ctypes.

Python 3.10/3.11 have no os.unshare or os.setns, and no Python version has
mount, pivot_root, capset or openat2, so we call libc (or the raw syscall)
ourselves. Each wrapper raises OSError with the real errno, like os.* does.
"""
import ctypes
import fcntl
import os
import struct



def _libc():
    try:
        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:  # not glibc: ask the slow way (find_library may run ldconfig)
        from ctypes.util import find_library
        return ctypes.CDLL(find_library("c"), use_errno=True)


libc = _libc()

# clone/unshare/setns flags (linux/sched.h)
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
CLONE_NEWTIME = 0x00000080
NAMESPACES = {  # OCI name -> (flag, name in /proc/PID/ns)
    "mount": (CLONE_NEWNS, "mnt"), "uts": (CLONE_NEWUTS, "uts"),
    "ipc": (CLONE_NEWIPC, "ipc"), "pid": (CLONE_NEWPID, "pid"),
    "network": (CLONE_NEWNET, "net"), "cgroup": (CLONE_NEWCGROUP, "cgroup"),
    "user": (CLONE_NEWUSER, "user"), "time": (CLONE_NEWTIME, "time"),
}

# mount flags (linux/mount.h)
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_SYNCHRONOUS, MS_REMOUNT, MS_MANDLOCK, MS_DIRSYNC = 16, 32, 64, 128
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_MOVE, MS_REC = 1024, 2048, 4096, 8192, 16384
MS_SILENT, MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED = 32768, 1 << 17, 1 << 18, 1 << 19, 1 << 20
MS_RELATIME, MS_STRICTATIME = 1 << 21, 1 << 24
MNT_DETACH = 2

# prctl options (linux/prctl.h)
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_KEEPCAPS, PR_SET_NAME = 1, 4, 8, 15
PR_CAPBSET_DROP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 24, 36, 38
PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, PR_CAP_AMBIENT_CLEAR_ALL = 47, 2, 4

# openat2 resolve flags (linux/openat2.h)
RESOLVE_NO_XDEV, RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS = 0x01, 0x02, 0x04
RESOLVE_BENEATH, RESOLVE_IN_ROOT = 0x08, 0x10

_SYSCALLS = {  # new syscalls share one number on every architecture; old ones do not
    "x86_64": {"pivot_root": 155},
    "aarch64": {"pivot_root": 41},
    "riscv64": {"pivot_root": 41},
    "ppc64le": {"pivot_root": 203},
    "s390x": {"pivot_root": 217},
}
SYS_OPENAT2 = 437


def _check(ret, what=""):
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{os.strerror(err)}{': ' + what if what else ''}")
    return ret


def _b(s):
    return None if s is None else os.fsencode(s)


def mount(source, target, fstype=None, flags=0, data=None) -> None:
    """mount(2)."""
    _check(libc.mount(_b(source), _b(target), _b(fstype), ctypes.c_ulong(flags), _b(data)),
           f"mount {target}")


def umount2(target, flags=0) -> None:
    """umount2(2)."""
    _check(libc.umount2(_b(target), flags), f"umount {target}")


def pivot_root(new_root, put_old) -> None:
    """pivot_root(2): there is no glibc wrapper, so the raw syscall."""
    nr = _SYSCALLS[os.uname().machine]["pivot_root"]
    _check(libc.syscall(ctypes.c_long(nr), _b(new_root), _b(put_old)), "pivot_root")


def unshare(flags) -> None:
    """unshare(2): new namespaces for this process (PID: for its children)."""
    _check(libc.unshare(flags), "unshare")


def setns(fd, nstype=0) -> None:
    """setns(2): join the namespace `fd` refers to."""
    _check(libc.setns(fd, nstype), "setns")


def sethostname(name: str) -> None:
    """sethostname(2), in the current UTS namespace."""
    b = name.encode()
    _check(libc.sethostname(b, len(b)), "sethostname")


def prctl(option, arg2=0, arg3=0, arg4=0, arg5=0) -> int:
    """prctl(2)."""
    args = [ctypes.c_ulong(a) for a in (arg2, arg3, arg4, arg5)]
    return _check(libc.prctl(option, *args), f"prctl {option}")


def set_name(name: bytes) -> None:
    """This process's name, as ps shows it (and the tests' leak check finds it)."""
    title = ctypes.create_string_buffer(name)
    prctl(PR_SET_NAME, ctypes.addressof(title))


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


_CAP_V3 = 0x20080522


def capget():
    """capget(2) for this process: (effective, permitted, inheritable) 64-bit masks."""
    hdr, data = _CapHeader(_CAP_V3, 0), (_CapData * 2)()
    _check(libc.capget(ctypes.byref(hdr), data), "capget")
    return tuple(getattr(data[0], f) | getattr(data[1], f) << 32
                 for f in ("effective", "permitted", "inheritable"))


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """capset(2) for this process, from 64-bit masks."""
    hdr, data = _CapHeader(_CAP_V3, 0), (_CapData * 2)()
    for i in (0, 1):
        data[i].effective = effective >> 32 * i & 0xFFFFFFFF
        data[i].permitted = permitted >> 32 * i & 0xFFFFFFFF
        data[i].inheritable = inheritable >> 32 * i & 0xFFFFFFFF
    _check(libc.capset(ctypes.byref(hdr), data), "capset")


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def openat2(dirfd, path, flags, resolve, mode=0) -> int:
    """openat2(2): open `path` with the kernel enforcing the `resolve` rules."""
    how = _OpenHow(flags | os.O_CLOEXEC, mode, resolve)
    return _check(libc.syscall(ctypes.c_long(SYS_OPENAT2), ctypes.c_int(dirfd), _b(path),
                               ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))), path)


def link_up(name: str = "lo") -> None:
    """Set IFF_UP on an interface of the current network namespace (SIOCSIFFLAGS)."""
    SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
    import socket
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH22x", name.encode(), 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(s, SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH22x", name.encode(), flags | IFF_UP))
