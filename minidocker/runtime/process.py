"""The last steps before a container process becomes the user's program.

Shared by the container's init and by `exec`: find the program in the
container's PATH, set rlimits, become the configured user with exactly the
configured capabilities, close every inherited fd but 0, 1, 2, and execve.
"""
import json
import os
import resource
import signal
import stat

from ..errors import MinidockerError
from . import capabilities, linux, seccomp

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def report(fd: int, **msg) -> None:
    """One JSON line on the sync pipe back to create/exec."""
    os.write(fd, (json.dumps(msg) + "\n").encode())


def env_dict(env) -> dict:
    """["K=V", ...] -> {"K": "V"}."""
    return dict(e.split("=", 1) if "=" in e else (e, "") for e in env or ())


def lookup(args, env) -> str:
    """The path execve will run, or MinidockerError 127 (not found) / 126 (not executable)."""
    if not args:
        raise MinidockerError("process.args must not be empty", 125)
    name = args[0]
    if "/" in name:
        candidates = [name]
    else:
        path = env_dict(env).get("PATH", DEFAULT_PATH)
        candidates = [os.path.join(d or ".", name) for d in path.split(":")]
    found_dir = False
    for cand in candidates:
        try:
            st = os.stat(cand)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o111:
            return cand
        found_dir = found_dir or "/" in name
    if found_dir:
        raise MinidockerError(f'exec: "{name}": permission denied', 126)
    where = "no such file or directory" if "/" in name else "executable file not found in $PATH"
    raise MinidockerError(f'exec: "{name}": {where}', 127)


def set_rlimits(rlimits) -> None:
    """process.rlimits: [{"type": "RLIMIT_NOFILE", "hard": n, "soft": n}, ...]."""
    for r in rlimits or ():
        kind = getattr(resource, r["type"], None)
        if kind is None:
            raise MinidockerError(f"unknown rlimit {r['type']}", 125)
        resource.setrlimit(kind, (r["soft"], r["hard"]))


def set_oom_score_adj(value) -> None:
    if value is not None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write(str(value))


def become_user(proc: dict) -> None:
    """Bounding set, then groups, gid, uid, then the other capability sets."""
    user, caps = proc.get("user") or {}, proc.get("capabilities") or {}
    capabilities.drop_bounding(caps)
    linux.prctl(linux.PR_SET_KEEPCAPS, 1)  # keep permitted caps across setuid
    os.setgroups(user.get("additionalGids") or [])
    os.setgid(user.get("gid", 0))
    os.setuid(user.get("uid", 0))
    linux.prctl(linux.PR_SET_KEEPCAPS, 0)
    capabilities.apply(caps)
    if proc.get("noNewPrivileges"):
        linux.prctl(linux.PR_SET_NO_NEW_PRIVS, 1)
    os.umask(user["umask"] if user.get("umask") is not None else 0o022)


def seccomp_filter(spec_linux: dict, proc: dict):
    """The container's seccomp filter, compiled now (while libseccomp is reachable), or None."""
    profile = (spec_linux or {}).get("seccomp") or proc.get("seccomp")
    return seccomp.Filter(profile) if profile else None


def drop_privileges(proc: dict, flt=None) -> None:
    """Become the user, loading the seccomp filter while we still may.

    Without no_new_privs only a holder of CAP_SYS_ADMIN may load a filter, so
    then it goes in before become_user drops our capabilities; with it, after.
    """
    if flt and not proc.get("noNewPrivileges"):
        flt.load()
    become_user(proc)
    if flt and proc.get("noNewPrivileges"):
        flt.load()


def enter_cwd(cwd: str) -> None:
    """chdir, and make sure we really are inside the root (CVE-2024-21626)."""
    os.chdir(cwd or "/")
    if not os.getcwd().startswith("/"):
        raise MinidockerError(f"working directory {cwd} is outside the container", 125)


def execve(exe: str, proc: dict) -> None:
    """Close fds >= 3 and replace this process with the program; exit 126/127 if it fails."""
    os.closerange(3, 1 << 20)
    # Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored
    # across execve: give the program the defaults every other process starts with.
    for sig in (signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(sig, signal.SIG_DFL)
    try:
        os.execve(exe, proc["args"], env_dict(proc.get("env")))
    except OSError as e:
        os.write(2, f"minidocker-runtime: exec {proc['args'][0]}: {e.strerror}\n".encode())
        os._exit(127 if e.errno == 2 else 126)
