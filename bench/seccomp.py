"""What the default confinement costs: runc vs minidocker-runtime on the same seccomp'd bundle.

    sudo .venv/bin/python bench/seccomp.py [N]

Two numbers per runtime, alternating runs so neither gets a warmer cache:
  start    `run` of a container running `true`, Docker's default caps + seccomp profile
  syscalls a container doing 200 000 tiny reads (dd bs=1), with the profile and unconfined:
           the filter's cost per system call is what the two differ by
Ratios are minidocker / runc (start) and confined / unconfined (syscalls).
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from minidocker import bundle, security

RUNC = shutil.which("runc") or "/usr/sbin/runc"
WORK = "dd if=/dev/zero of=/dev/null bs=1 count=200000 2>/dev/null"


def make_rootfs(path: Path) -> None:
    (path / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", path / "bin" / "busybox")
    for name in ("sh", "true", "dd"):
        os.symlink("busybox", path / "bin" / name)
    for d in ("proc", "sys", "dev", "etc"):
        (path / d).mkdir()
    (path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")


def write_bundle(tmp: Path, name: str, args, opts) -> Path:
    config = bundle.spec(tmp / "rootfs", args, id=name + "0123456789", cgroups_path=f"/md-bench-{name}",
                         namespaces=[{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")])
    security.apply(config, security.security(opts))
    path = tmp / name
    bundle.write(path, config)
    return path


def one(runtime: str, path: Path, tmp: Path, i: int) -> float:
    id = f"b{i}{os.urandom(3).hex()}"
    if runtime == "runc":
        cmd = [RUNC, "--root", str(tmp / "runc"), "run", "--bundle", str(path), id]
    else:
        cmd = [sys.executable, "-m", "minidocker.runtime", "--root", str(tmp / "md"), "run", "--bundle", str(path), id]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main(n: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="md-bench-seccomp-"))
    try:
        make_rootfs(tmp / "rootfs")
        bundles = {"start": write_bundle(tmp, "start", ["true"], {}),
                   "confined": write_bundle(tmp, "confined", ["sh", "-c", WORK], {}),
                   "unconfined": write_bundle(tmp, "unconf", ["sh", "-c", WORK],
                                              {"security_opt": ["seccomp=unconfined"]})}
        times = {(rt, kind): [] for rt in ("runc", "minidocker") for kind in bundles}
        for i in range(n):
            for kind, path in bundles.items():
                for rt in ("runc", "minidocker"):
                    times[(rt, kind)].append(one(rt, path, tmp, i))
        med = {k: statistics.median(v) for k, v in times.items()}
        for kind in bundles:
            print(f"{kind:10s}  runc {med[('runc', kind)] * 1000:7.1f} ms   "
                  f"minidocker {med[('minidocker', kind)] * 1000:7.1f} ms   "
                  f"ratio {med[('minidocker', kind)] / med[('runc', kind)]:.2f}")
        for rt in ("runc", "minidocker"):
            print(f"seccomp overhead under {rt}: confined/unconfined = "
                  f"{med[(rt, 'confined')] / med[(rt, 'unconfined')]:.2f}")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
