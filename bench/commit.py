"""Commit speed: `minidocker commit` of a container with 10,000 changed files (~100 MB)
against `tar -c` of the same upper directory to the same disk.

The container is created from busybox and its upper directory filled the way a
process inside would leave it (files written through the overlay would land
there exactly so). Each commit is a full one: the previous image is removed
first, so the layer blob is written and unpacked again every time. Best of N,
alternating. The ratio is our time over tar's: the goal is at most 1.5.

    .venv/bin/python bench/commit.py [--files 10000] [--runs 3] [--dir /var/tmp/minidocker-bench-commit]
"""
import argparse
import os
import random
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from minidocker import commit, containers, images  # noqa: E402
from minidocker.changes import write_layer  # noqa: E402
from minidocker.bootstrap import bootstrap  # noqa: E402
from minidocker.store import Store  # noqa: E402


def fill(upper, files, seed=1):
    """`files` files of ~10 KB (half random, half text) in 100 directories, plus a few deletions."""
    rng = random.Random(seed)
    text = b"containers share their image's layers and write only to their own\n" * 160
    for i in range(files):
        d = os.path.join(upper, "data", f"d{i % 100:02d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:05d}"), "wb") as f:
            f.write(rng.randbytes(10240) if i % 2 else text[:10240])
    os.makedirs(os.path.join(upper, "etc"), exist_ok=True)
    os.mknod(os.path.join(upper, "etc", "motd"), 0o600 | 0o020000, os.makedev(0, 0))   # a whiteout


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=10000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--dir", default="/var/tmp/minidocker-bench-commit")
    a = p.parse_args()
    shutil.rmtree(a.dir, ignore_errors=True)
    os.makedirs(a.dir)
    try:
        store = Store(os.path.join(a.dir, "store"))
        bootstrap(store)
        c = containers.create(store, "busybox", ["true"], network="none")
        fill(c.dir / "upper", a.files)
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(c.dir / "upper") for f in fs)
        print(f"upper: {a.files} files, {size / 1e6:.0f} MB")
        subprocess.run(["sync"])
        tar_times, our_times, writer_times = [], [], []
        out = os.path.join(a.dir, "upper.tar")
        for _ in range(a.runs):
            t = time.perf_counter()
            subprocess.run(["tar", "-cf", out, "-C", str(c.dir / "upper"), "."], check=True)
            tar_times.append(time.perf_counter() - t)
            os.unlink(out)
            t = time.perf_counter()
            with open(os.devnull, "wb") as null:
                write_layer(c.dir / "upper", null)   # the tar writer alone, to see where the time goes
            writer_times.append(time.perf_counter() - t)
            t = time.perf_counter()
            image = commit.commit(store, c.id, "bench:commit")
            our_times.append(time.perf_counter() - t)
            images.remove(store, image.id, force=True)   # next run writes and unpacks the layer again
        tar_best, our_best = min(tar_times), min(our_times)
        print(f"tar -c           {tar_best:6.2f} s   (runs: {', '.join(f'{x:.2f}' for x in tar_times)})")
        print(f"minidocker commit {our_best:5.2f} s   (runs: {', '.join(f'{x:.2f}' for x in our_times)})")
        print(f"  of which changes.write_layer to /dev/null: {min(writer_times):.2f} s")
        print(f"ratio commit / tar = {our_best / tar_best:.2f}  (goal: <= 1.5)")
        print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        c.remove()
    finally:
        shutil.rmtree(a.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
