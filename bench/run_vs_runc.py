"""How long `run` of a tiny container takes: runc vs minidocker-runtime, same bundle.

    sudo .venv/bin/python bench/run_vs_runc.py [N]

Builds a busybox rootfs from the host's static busybox, writes one bundle
(bundle.py, Docker's defaults) running `true`, then times N runs of each
runtime, alternating so neither gets a warmer cache, and prints the ratio.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from minidocker import bundle


def make_rootfs(path: Path) -> None:
    (path / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", path / "bin" / "busybox")
    for name in ("sh", "true"):
        os.symlink("busybox", path / "bin" / name)
    for d in ("proc", "sys", "dev", "etc"):
        (path / d).mkdir()
    (path / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")


def time_runs(cmd_for, n: int) -> list:
    times = []
    for i in range(n):
        cmd = cmd_for(i)
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return times


def main(n: int = 20) -> None:
    runc = shutil.which("runc") or "/usr/sbin/runc"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_rootfs(tmp / "rootfs")
        config = bundle.spec(tmp / "rootfs", ["true"], id="bench0123456789",
                             cgroups_path="/minidocker-bench/c")
        bundle.write(tmp / "bundle", config)
        ours = [sys.executable, "-m", "minidocker.runtime", "--root", str(tmp / "md")]
        runs = {"runc": lambda i: [runc, "--root", str(tmp / "runc"), "run", "--bundle",
                                   str(tmp / "bundle"), f"r{i}"],
                "minidocker-runtime": lambda i: ours + ["run", "--bundle", str(tmp / "bundle"), f"m{i}"]}
        results = {name: [] for name in runs}
        for i in range(n):  # alternate, one run each per round
            for name, cmd_for in runs.items():
                results[name] += time_runs(lambda _j, c=cmd_for, k=i: c(k), 1)
        for name, times in results.items():
            print(f"{name:20s} median {statistics.median(times) * 1000:7.1f} ms   "
                  f"min {min(times) * 1000:7.1f} ms   ({n} runs)")
        ratio = statistics.median(results["minidocker-runtime"]) / statistics.median(results["runc"])
        print(f"ratio minidocker-runtime / runc: {ratio:.2f}x")
    for top in os.listdir("/sys/fs/cgroup"):  # runc leaves the parent of its cgroup
        parent = f"/sys/fs/cgroup/{top}/minidocker-bench"
        if os.path.isdir(parent):
            os.rmdir(parent)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
