"""docker run's security flags as changes to the OCI bundle.

    --cap-add/--cap-drop     the capability sets (names with or without CAP_, or ALL)
    --privileged             every capability, no seccomp, nothing masked, every device
    --security-opt no-new-privileges   setuid binaries no longer raise privileges
    --security-opt seccomp=unconfined|FILE   no filter, or this profile instead of ours
    --read-only              the container's / is mounted read-only

`security(opts)` checks the flags (a mistake is exit 125 before anything
exists) and returns plain data; `apply(config, overrides)` merges it into the
config.json that bundle.spec wrote.
"""
import copy

from . import bundle
from .errors import MinidockerError
from .runtime import capabilities, seccomp, seccomp_profile



def all_caps() -> list:
    """Every capability we can hand out: the ones this kernel knows and our bounding set holds."""
    with open("/proc/self/status") as f:
        bounding = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    return sorted((n for n, b in capabilities.BITS.items() if bounding >> b & 1), key=capabilities.BITS.get)


def _cap_name(name: str, flag: str) -> str:
    key = name.strip().upper()
    if key == "ALL":
        return key
    key = key if key.startswith("CAP_") else "CAP_" + key
    if key not in capabilities.BITS:
        raise MinidockerError(f"invalid {flag}: unknown capability: {name.strip()!r}", 125)
    return key


def capability_set(cap_add=(), cap_drop=(), privileged=False) -> list:
    """Docker's rule: ALL in --cap-add wins, ALL in --cap-drop leaves only the added ones."""
    add = {_cap_name(c, "--cap-add") for c in cap_add or ()}
    drop = {_cap_name(c, "--cap-drop") for c in cap_drop or ()}
    if privileged or "ALL" in add:
        caps = set(all_caps()) - (drop - {"ALL"} if not privileged else set())
    elif "ALL" in drop:
        caps = add
    else:
        caps = (set(bundle.CAPABILITIES) | add) - drop
    return sorted(caps, key=capabilities.BITS.get)


def parse_security_opts(items) -> dict:
    """--security-opt values -> {"no_new_privileges": bool, "seccomp": "default"|"unconfined"|path}."""
    out = {"no_new_privileges": False, "seccomp": "default"}
    for item in items or ():
        key, _, value = item.partition("=" if "=" in item else ":")   # docker takes both
        if key == "no-new-privileges":
            if value not in ("", "true", "false"):
                raise MinidockerError(f"invalid --security-opt {item!r}: want no-new-privileges[=true|false]", 125)
            out["no_new_privileges"] = value != "false"
        elif key == "seccomp" and value:
            out["seccomp"] = value
        elif key in ("apparmor", "label") and value:
            continue   # no such LSM here (security.md 0): accepted and ignored, as docker does without one
        else:
            raise MinidockerError(f"invalid --security-opt: {item!r}", 125)
    return out


def security(opts: dict) -> dict:
    """Overrides for bundle.spec's config from {cap_add, cap_drop, privileged, security_opt, read_only}."""
    privileged = bool(opts.get("privileged"))
    caps = capability_set(opts.get("cap_add"), opts.get("cap_drop"), privileged)
    sec = parse_security_opts(opts.get("security_opt"))
    if privileged or sec["seccomp"] == "unconfined":
        profile = None
    elif sec["seccomp"] == "default":
        profile = seccomp_profile.default_profile(caps)
    else:
        profile = seccomp.from_file(sec["seccomp"], caps)
    out = {"capabilities": caps, "no_new_privileges": sec["no_new_privileges"], "seccomp": profile,
           "read_only": bool(opts.get("read_only")), "privileged": privileged}
    return out


def apply(config: dict, overrides: dict) -> dict:
    """Merge security() overrides into an OCI config (in place; also returned)."""
    proc, lx = config["process"], config.setdefault("linux", {})
    caps = list(overrides["capabilities"])
    root_user = (proc.get("user") or {}).get("uid", 0) == 0
    # A non-root user starts with no effective or permitted capabilities (moby#27689).
    proc["capabilities"] = {"bounding": caps, "effective": caps if root_user else [],
                            "permitted": caps if root_user else [], "inheritable": [], "ambient": []}
    proc["noNewPrivileges"] = bool(overrides["no_new_privileges"])
    if overrides["seccomp"]:
        lx["seccomp"] = copy.deepcopy(overrides["seccomp"])
        proc["seccomp"] = lx["seccomp"]   # the runtime reads it from the process (exec inherits it)
    else:
        lx.pop("seccomp", None)
        proc.pop("seccomp", None)
    if overrides["read_only"]:
        config["root"]["readonly"] = True
    if overrides["privileged"]:
        lx["maskedPaths"], lx["readonlyPaths"] = [], []
        lx.setdefault("resources", {})["devices"] = [{"allow": True, "access": "rwm"}]
        for m in config.get("mounts") or ():
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m.get("options") or () if o != "ro"] + ["rw"]
    return config
