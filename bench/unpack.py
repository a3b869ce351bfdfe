"""Unpack speed: minidocker.layers.unpack against GNU tar, same layer, same disk.

Generates (once, then cached) a ~200 MB gzip layer of ~20,000 files shaped like
a distro image (many small files, some big ones, a third compressible text),
then times `tar --xattrs -xpzf` and our unpack, alternately, best of N.
Our speed is tar's time divided by ours: 1.0 is as fast as GNU tar.

    .venv/bin/python bench/unpack.py [--files 20000] [--runs 3] [--dir /var/tmp/minidocker-bench]
"""
import argparse
import io
import os
import random
import shutil
import subprocess
import sys
import tarfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from minidocker import layers  # noqa: E402


def make_layer(path, files, seed=1):
    """A gzip tar with `files` entries in nested directories; about 10 KB per file."""
    rng = random.Random(seed)
    words = b"the quick brown fox jumps over a lazy dog while containers share layers\n"
    tmp = path + ".part"
    with tarfile.open(tmp, "w:gz", format=tarfile.PAX_FORMAT, compresslevel=6) as tar:
        dirs = []
        for d in range(files // 25):
            info = tarfile.TarInfo(f"usr/share/pkg{d // 20}/dir{d}")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1700000000
            tar.addfile(info)
            dirs.append(info.name)
        for i in range(files):
            size = int(rng.lognormvariate(8.8, 1.3)) % (4 << 20)
            if i % 3:
                data = rng.randbytes(size)
            else:
                data = (words * (size // len(words) + 1))[:size]
            info = tarfile.TarInfo(f"{rng.choice(dirs)}/file{i}")
            info.size, info.mode, info.mtime = len(data), 0o644, 1700000000
            tar.addfile(info, io.BytesIO(data))
    os.rename(tmp, path)


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp/minidocker-bench")
    args = ap.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    layer = os.path.join(args.dir, f"layer-{args.files}.tar.gz")
    if not os.path.exists(layer):
        print(f"generating {layer} ...", flush=True)
        make_layer(layer, args.files)
    print(f"layer: {os.path.getsize(layer) / 1e6:.0f} MB gzip, {args.files} files")
    out_tar, out_ours = os.path.join(args.dir, "out-tar"), os.path.join(args.dir, "out-ours")
    best_tar = best_ours = float("inf")
    for _ in range(args.runs):
        fresh(out_tar)
        subprocess.run(["sync"])
        t = time.perf_counter()
        subprocess.run(["tar", "--xattrs", "-xpzf", layer, "-C", out_tar], check=True)
        best_tar = min(best_tar, time.perf_counter() - t)
        fresh(out_ours)
        subprocess.run(["sync"])
        t = time.perf_counter()
        with open(layer, "rb") as f:
            layers.unpack(f, out_ours)
        best_ours = min(best_ours, time.perf_counter() - t)
    for d in (out_tar, out_ours):
        shutil.rmtree(d)
    print(f"GNU tar -xpzf:        {best_tar:6.2f} s")
    print(f"minidocker unpack:    {best_ours:6.2f} s")
    print(f"ours / tar speed:     {best_tar / best_ours:6.2f}x  (target >= 0.5x)")


if __name__ == "__main__":
    main()
