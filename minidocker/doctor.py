"""Is this machine ready to run containers? Every check has a one-line fix.

    minidocker doctor          a table; exit 1 when a required check fails
    doctor.check()             the same rows, shown as a coloured table in Jupyter

Checks only read: /proc, /sys, the store's files, `iptables -S`. A required
check is one without which containers cannot start at all; the others limit
one chapter (networking, diagrams, rootless).
"""
import html
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .store import default_root

MIN_KERNEL = (5, 4)   # overlay with index/redirect_dir, cgroup v2 controllers we use
MIN_FREE = 500 * 1000 * 1000


@dataclass
class Row:
    name: str
    ok: bool
    value: str
    fix: str = ""
    required: bool = True

    @property
    def mark(self) -> str:
        return "ok" if self.ok else ("FAIL" if self.required else "warn")


class Report(list):
    """Rows that print as a table and draw as a red/green one in Jupyter."""

    @property
    def ok(self) -> bool:
        return all(r.ok or not r.required for r in self)

    def __str__(self):
        width = max(len(r.name) for r in self)
        lines = []
        for r in self:
            lines.append(f"{r.mark:4}  {r.name:{width}}  {r.value}")
            if not r.ok and r.fix:
                lines.append(f"{'':4}  {'':{width}}  fix: {r.fix}")
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self):
        colour = {"ok": "#d9ead3", "warn": "#fff2cc", "FAIL": "#f4cccc"}
        rows = "".join(f"<tr style='background:{colour[r.mark]}'><td>{r.mark}</td><td>{html.escape(r.name)}</td>"
                       f"<td>{html.escape(r.value)}</td><td><code>{html.escape('' if r.ok else r.fix)}</code></td></tr>"
                       for r in self)
        return f"<table><tr><th></th><th>check</th><th>found</th><th>fix</th></tr>{rows}</table>"


def _read(path, default="") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def mount_of(path) -> tuple:
    """(mount point, filesystem type) of the mount holding `path` (or its nearest existing parent)."""
    path = os.path.realpath(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    best = ("/", "")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            fstype = fields[fields.index("-") + 1]
            inside = path == point or path.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best[0]):
                best = (point, fstype)
    return best


def cgroup_mode() -> str:
    """'v2' (unified), 'hybrid' (v1 controllers + a v2 tree) or 'v1', as systemd names them."""
    top = mount_of("/sys/fs/cgroup")
    if top == ("/sys/fs/cgroup", "cgroup2"):
        return "v2"
    if mount_of("/sys/fs/cgroup/unified") == ("/sys/fs/cgroup/unified", "cgroup2"):
        return "hybrid"
    return "v1"


def kernel_version() -> tuple:
    release = os.uname().release
    numbers = release.split("-")[0].split(".")
    return tuple(int(n) for n in numbers[:2] if n.isdigit()), release


def check(root=None) -> Report:
    """Run every check; the store checked is `root`, $MINIDOCKER_ROOT or /var/lib/minidocker."""
    root = Path(root) if root else default_root()
    rows = Report()
    add = lambda *a, **k: rows.append(Row(*a, **k))   # noqa: E731
    add("root", os.geteuid() == 0, f"euid {os.geteuid()}", "run as root: sudo -E jupyter lab --allow-root")
    (major_minor, release) = kernel_version()
    add("kernel", major_minor >= MIN_KERNEL, release, f"use a Linux kernel >= {'.'.join(map(str, MIN_KERNEL))}")
    filesystems = _read("/proc/filesystems")
    add("overlayfs", "overlay" in filesystems.split(), "overlay in /proc/filesystems"
        if "overlay" in filesystems.split() else "missing", "modprobe overlay")
    point, fstype = mount_of(root)
    add("store filesystem", fstype not in ("overlay", "aufs"), f"{root} on {fstype} ({point})",
        "overlay cannot stack on overlay: MINIDOCKER_ROOT=/path/on/ext4-or-tmpfs (e.g. a tmpfs or volume)")
    missing = [ns for ns in ("mnt", "uts", "ipc", "pid", "net", "cgroup") if not os.path.exists(f"/proc/self/ns/{ns}")]
    add("namespaces", not missing, "missing: " + ", ".join(missing) if missing else "mnt uts ipc pid net cgroup",
        "use a kernel built with CONFIG_NAMESPACES (all distribution kernels are)")
    rows.append(_cgroup_row())
    rows.extend(_userns_rows())
    rows.append(_busybox_row())
    rows.append(_seccomp_row())
    dot = shutil.which("dot")
    add("graphviz dot", bool(dot), dot or "not found", "apt-get install graphviz", required=False)
    forward = _read("/proc/sys/net/ipv4/ip_forward", "?")
    add("ip_forward", forward == "1", forward, "sysctl -w net.ipv4.ip_forward=1", required=False)
    policy = forward_policy()
    add("FORWARD policy", policy != "DROP", policy,
        "containers on a bridge need forwarding: iptables -P FORWARD ACCEPT (or an ACCEPT rule)", required=False)
    free = shutil.disk_usage(_existing(root)).free
    add("free disk", free >= MIN_FREE, f"{free / 1e9:.1f} GB free under {_existing(root)}",
        "free some space or set MINIDOCKER_ROOT to a larger disk")
    rows.append(store_health(root))
    return rows


def _seccomp_row() -> Row:
    """Docker's default syscall filter needs the kernel's seccomp and libseccomp to build it."""
    import ctypes.util
    kernel = "Seccomp:" in _read("/proc/self/status")
    lib = ctypes.util.find_library("seccomp")
    ok = kernel and bool(lib)
    value = "filter available (libseccomp)" if ok else ("no seccomp in this kernel" if not kernel else "no libseccomp")
    return Row("seccomp", ok, value, "apt-get install libseccomp2" if kernel else "use a kernel with CONFIG_SECCOMP")


def _cgroup_row() -> Row:
    """The controllers minidocker limits (memory, pids, cpu) must be available in the mode found."""
    mode, wanted = cgroup_mode(), {"memory", "pids", "cpu"}
    if mode == "v2":
        have = set(_read("/sys/fs/cgroup/cgroup.controllers").split())
        fix = "enable them at the root: echo '+memory +pids +cpu' > /sys/fs/cgroup/cgroup.subtree_control"
    else:
        have = {c for c in wanted if mount_of(f"/sys/fs/cgroup/{c}")[1] == "cgroup"}
        fix = "mount the v1 hierarchies (systemd does), or boot with systemd.unified_cgroup_hierarchy=1"
    missing = sorted(wanted - have)
    return Row("cgroups", not missing, f"{mode}; " + (f"missing {', '.join(missing)}" if missing
                                                      else "memory, pids, cpu available"), fix)


def _existing(path) -> str:
    path = str(path)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return path


def _userns_rows() -> list:
    rows = []
    max_ns = _read("/proc/sys/user/max_user_namespaces", "0")
    rows.append(Row("user namespaces", max_ns not in ("", "0"), f"user.max_user_namespaces={max_ns}",
                    "sysctl -w user.max_user_namespaces=15000 (only rootless needs them)", required=False))
    for name, path in (("unprivileged userns (Debian)", "/proc/sys/kernel/unprivileged_userns_clone"),
                       ("AppArmor userns (Ubuntu)", "/proc/sys/kernel/apparmor_restrict_unprivileged_userns")):
        if os.path.exists(path):
            value = _read(path)
            good = value == ("1" if "clone" in path else "0")
            key = path.split("/proc/sys/")[1].replace("/", ".")
            rows.append(Row(name, good, f"{key}={value}",
                            f"sysctl -w {key}={'1' if 'clone' in path else '0'} (only rootless needs it)",
                            required=False))
    return rows


def _busybox_row() -> Row:
    from .bootstrap import find_busybox
    from .errors import MinidockerError
    try:
        return Row("static busybox", True, str(find_busybox()))
    except MinidockerError:
        return Row("static busybox", False, "not found", "apt-get install busybox-static")


def forward_policy() -> str:
    """The default policy of iptables' FORWARD chain ('ACCEPT', 'DROP', or why it is unknown)."""
    if not shutil.which("iptables"):
        return "unknown (no iptables)"
    try:
        out = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    for line in out.splitlines():
        if line.startswith("-P FORWARD"):
            return line.split()[-1]
    return "unknown"


def store_health(root) -> Row:
    """The store is an OCI layout whose index.json parses and whose manifests are present."""
    root = Path(root)
    layout = root / "images"
    if not root.exists():
        return Row("store", True, f"{root} (created on first use)")
    if not (layout / "oci-layout").exists():
        return Row("store", not any(root.iterdir()), f"{root}: no images/oci-layout",
                   "point MINIDOCKER_ROOT at an empty directory or a minidocker store")
    try:
        index = json.loads((layout / "index.json").read_text())
    except (OSError, ValueError):
        return Row("store", False, f"{layout}/index.json unreadable", "minidocker bootstrap (re-creates busybox)")
    missing = [m["digest"] for m in index.get("manifests", [])
               if not (layout / "blobs" / "sha256" / m["digest"].split(":")[-1]).exists()]
    if missing:
        return Row("store", False, f"{len(missing)} manifest blob(s) missing", "minidocker rmi the broken tags")
    return Row("store", True, f"{root}: {len(index.get('manifests', []))} manifest(s)")
