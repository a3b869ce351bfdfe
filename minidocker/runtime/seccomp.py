"""seccomp: a filter in the kernel that every system call of the container passes.

The container's init loads it just before execve, and it can never be
removed: the program and all its children make only the calls the profile
allows; the others fail with EPERM (or what the profile says) before the
kernel looks at them. We compile the OCI `linux.seccomp` description into BPF
with libseccomp (Debian's libseccomp2, through ctypes), as runc does.
"""
import ctypes
import ctypes.util
import json
import os

from ..errors import MinidockerError

ACTIONS = {"SCMP_ACT_KILL": 0x00000000, "SCMP_ACT_KILL_THREAD": 0x00000000,
           "SCMP_ACT_KILL_PROCESS": 0x80000000, "SCMP_ACT_TRAP": 0x00030000,
           "SCMP_ACT_ERRNO": 0x00050000, "SCMP_ACT_TRACE": 0x7FF00000,
           "SCMP_ACT_LOG": 0x7FFC0000, "SCMP_ACT_ALLOW": 0x7FFF0000}
COMPARE = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4,
           "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6, "SCMP_CMP_MASKED_EQ": 7}
ARCH_TOKENS = {"SCMP_ARCH_X86": 0x40000003, "SCMP_ARCH_X86_64": 0xC000003E,
               "SCMP_ARCH_X32": 0x4000003E, "SCMP_ARCH_ARM": 0x40000028,
               "SCMP_ARCH_AARCH64": 0xC00000B7, "SCMP_ARCH_PPC64LE": 0xC0000015,
               "SCMP_ARCH_S390": 0x16, "SCMP_ARCH_S390X": 0x80000016,
               "SCMP_ARCH_RISCV64": 0xC00000F3}
_FLTATR_CTL_NNP = 3   # libseccomp would otherwise turn no_new_privs on for us
_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 22, 2
_DOCKER_ARCHES = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le",
                  "s390x": "s390x", "riscv64": "riscv64"}


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


def _open():
    """libseccomp, opened when this module is imported: after pivot_root the host's copy is gone."""
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        name = ctypes.util.find_library("seccomp")
        if not name:
            return None
        lib = ctypes.CDLL(name, use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    return lib


_LIB = _open()


def _lib():
    if _LIB is None:
        raise MinidockerError("seccomp needs libseccomp (Debian: apt-get install libseccomp2)", 125)
    return _LIB


def action(name: str, errno_ret=None) -> int:
    """An OCI action name (and errnoRet) as libseccomp's number."""
    if name not in ACTIONS:
        raise MinidockerError(f"seccomp: unknown action {name!r}", 125)
    value = ACTIONS[name]
    if name == "SCMP_ACT_ERRNO":
        value |= (1 if errno_ret is None else errno_ret) & 0xFFFF
    return value


def check(profile: dict) -> None:
    """Refuse a malformed profile before any container is started with it."""
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise MinidockerError("seccomp profile must be a JSON object with a defaultAction", 125)
    action(profile["defaultAction"])
    for rule in profile.get("syscalls") or ():
        if not isinstance(rule, dict) or not isinstance(rule.get("names"), list):
            raise MinidockerError("seccomp profile: each rule needs a list of names", 125)
        action(rule.get("action", ""), rule.get("errnoRet"))
        for a in rule.get("args") or ():
            if a.get("op") not in COMPARE:
                raise MinidockerError(f"seccomp profile: unknown comparison {a.get('op')!r}", 125)


# Profiles compiled by this process, by their JSON. A warm caller (monitor.preload)
# compiles the default profile once; the inits it forks then find it here.
_COMPILED = {}


class _SockFprog(ctypes.Structure):   # struct sock_fprog: the BPF program prctl installs
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Filter:
    """A seccomp filter compiled from OCI linux.seccomp into BPF, not loaded yet.

    Build it while libseccomp is still reachable (before pivot_root), so that a
    bad profile fails `create`; load() it just before execve. Without
    no_new_privs only a holder of CAP_SYS_ADMIN may load a filter, so the
    runtime loads it before dropping capabilities.
    """

    def __init__(self, profile: dict):
        check(profile)
        key = json.dumps(profile, sort_keys=True)
        if key not in _COMPILED:
            _COMPILED[key] = _compile(profile)
        self.bpf = _COMPILED[key]

    def load(self) -> None:
        """Install the filter on this process; fork and execve keep it, nothing removes it."""
        from .linux import prctl
        program = ctypes.create_string_buffer(self.bpf, len(self.bpf))
        fprog = _SockFprog(len(self.bpf) // 8, ctypes.addressof(program))   # 8 bytes per instruction
        prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.addressof(fprog))


def _compile(profile: dict) -> bytes:
    """The profile as a BPF program, through libseccomp."""
    lib = _lib()
    ctx = lib.seccomp_init(action(profile["defaultAction"], profile.get("defaultErrnoRet")))
    if not ctx:
        raise MinidockerError("seccomp_init failed", 125)
    try:
        _must(lib.seccomp_attr_set(ctx, _FLTATR_CTL_NNP, 0), "seccomp_attr_set")
        for arch in profile.get("architectures") or ():
            if arch in ARCH_TOKENS:
                lib.seccomp_arch_add(ctx, ARCH_TOKENS[arch])  # -EEXIST for the native one
        for rule in profile.get("syscalls") or ():
            _add(lib, ctx, rule)
        # libseccomp generates the BPF only when asked for it, which takes a few ms for
        # Docker's profile: we ask during create, so that start does not wait for it.
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            _must(lib.seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")
            return os.pread(fd, os.fstat(fd).st_size, 0)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)


def load(profile) -> None:
    """Compile and install `profile` (OCI linux.seccomp) on this process; None does nothing."""
    if profile:
        Filter(profile).load()


def _add(lib, ctx, rule) -> None:
    act = action(rule["action"], rule.get("errnoRet"))
    args = rule.get("args") or []
    cmps = (_ArgCmp * max(1, len(args)))()
    for i, a in enumerate(args):
        cmps[i] = _ArgCmp(a["index"], COMPARE[a["op"]], a.get("value", 0), a.get("valueTwo", 0))
    for name in rule["names"]:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            continue   # a call this architecture or libseccomp does not know
        ret = lib.seccomp_rule_add_array(ctx, act, nr, len(args), cmps)
        if ret == -13:  # EACCES: the rule's action is already the default one
            continue
        _must(ret, f"seccomp rule for {name}")


def _must(ret: int, what: str) -> None:
    if ret < 0:
        raise MinidockerError(f"{what}: {os.strerror(-ret)}", 125)


def from_file(path, capabilities=()) -> dict:
    """A profile file (OCI, or Docker's format with archMap/includes) as OCI linux.seccomp."""
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise MinidockerError(f"opening seccomp profile ({path}) failed: {e.strerror}", 125) from None
    except ValueError as e:
        raise MinidockerError(f"decoding seccomp profile ({path}) failed: {e}", 125) from None
    if not isinstance(data, dict):
        raise MinidockerError(f"seccomp profile ({path}) must be a JSON object", 125)
    caps = {c if c.startswith("CAP_") else "CAP_" + c for c in capabilities}
    out = {k: data[k] for k in ("defaultAction", "defaultErrnoRet") if k in data}
    out["architectures"] = list(data.get("architectures") or [])
    for entry in data.get("archMap") or ():
        if os.uname().machine.startswith(entry.get("architecture", "").lower().replace("scmp_arch_", "")):
            out["architectures"] += [entry["architecture"]] + list(entry.get("subArchitectures") or [])
    out["syscalls"] = []
    for rule in data.get("syscalls") or ():
        if _applies(rule, caps):
            names = rule.get("names") or ([rule["name"]] if rule.get("name") else [])
            out["syscalls"].append({k: v for k, v in dict(rule, names=names).items()
                                    if k in ("names", "action", "errnoRet", "args")})
    check(out)
    return out


def _applies(rule, caps) -> bool:
    """Docker's includes/excludes: by capability, architecture and kernel version."""
    inc, exc = rule.get("includes") or {}, rule.get("excludes") or {}
    arch = _DOCKER_ARCHES.get(os.uname().machine, os.uname().machine)
    if inc.get("caps") and not set(inc["caps"]) <= caps:
        return False
    if exc.get("caps") and set(exc["caps"]) & caps:
        return False
    if inc.get("arches") and arch not in inc["arches"]:
        return False
    if exc.get("arches") and arch in exc["arches"]:
        return False
    if inc.get("minKernel"):
        have = tuple(int(x) for x in os.uname().release.split("-")[0].split(".")[:2])
        want = tuple(int(x) for x in inc["minKernel"].split(".")[:2])
        return have >= want
    return True


def mode(pid="self") -> int:
    """The Seccomp: line of /proc/PID/status: 0 none, 1 strict, 2 filter."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Seccomp:"):
                return int(line.split()[1])
    return 0
