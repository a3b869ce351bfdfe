"""Benchmark: our pull against skopeo (and umoci) from a local docker-registry.

    .venv/bin/python bench/pull.py [--mb 200] [--layers 5] [--runs 3]

Builds a ~200 MB image of 5 gzip layers (random file contents, so compression
cannot flatter anyone), pushes it to docker-registry on 127.0.0.1, then times:

    download   our pull.fetch (download + verify, no unpack)  vs  skopeo copy docker:// oci:DIR
    unpack     our pull.pull (+ unpack every layer)           vs  skopeo copy + umoci unpack

Each side starts from an empty store every run; the best of --runs counts.
ratio = reference time / our time: above 1 we are faster, the goal is >= 0.7.
"""
import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from minidocker import images, pull, push  # noqa: E402
from minidocker.store import Store  # noqa: E402
from registry_server import Registry, skopeo  # noqa: E402


def build(store: Store, total_mb: int, n_layers: int, tag: str):
    """n_layers gzip layers of random files adding up to about total_mb."""
    layers, diff_ids = [], []
    per_layer = total_mb * 1000 * 1000 // n_layers
    for i in range(n_layers):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            info = tarfile.TarInfo(f"layer{i}")
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
            remaining, n = per_layer, 0
            while remaining > 0:
                size = min(remaining, 4 << 20)
                info = tarfile.TarInfo(f"layer{i}/file{n}")
                info.size, info.mode = size, 0o644
                tar.addfile(info, io.BytesIO(os.urandom(size)))
                remaining -= size
                n += 1
        buf.seek(0)
        desc, diff_id = images.add_layer(store, buf)
        layers.append(desc)
        diff_ids.append(diff_id)
    config = images.new_config(diff_ids=diff_ids, created_by="bench", created="2024-01-01T00:00:00Z")
    return images.add(store, config, layers, tag)


def timed(func) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mb", type=int, default=200)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="md-bench-pull-"))
    reg = Registry(work / "registry").start()
    try:
        name = f"{reg.host}/bench/big:v1"
        source = Store(work / "source")
        image = build(source, a.mb, a.layers, name)
        size = sum(l["size"] for l in image.layers)
        push.push(source, name, progress=False)
        print(f"image: {len(image.layers)} layers, {size / 1e6:.0f} MB compressed, in docker-registry at {reg.host}")

        def ours(unpack):
            root = work / "ours"
            shutil.rmtree(root, ignore_errors=True)
            store = Store(root)
            if unpack:
                pull.pull(store, name, progress=False)
            else:
                pull.fetch(store, name, progress=False)

        def theirs(unpack):
            for d in ("oci", "bundle"):
                shutil.rmtree(work / d, ignore_errors=True)
            skopeo("copy", "--src-tls-verify=false", f"docker://{name}", f"oci:{work}/oci:v1")
            if unpack:
                subprocess.run(["umoci", "unpack", "--image", f"{work}/oci:v1", str(work / "bundle")],
                               check=True, capture_output=True)

        results = {}
        for unpack, label, ref in ((False, "download", "skopeo copy"), (True, "unpack", "skopeo copy + umoci unpack")):
            mine = min(timed(lambda: ours(unpack)) for _ in range(a.runs))
            ref_time = min(timed(lambda: theirs(unpack)) for _ in range(a.runs))
            results[label] = ref_time / mine
            print(f"{label:9} minidocker {mine:6.2f} s   {ref:27} {ref_time:6.2f} s   "
                  f"ratio {ref_time / mine:.2f} ({size / 1e6 / mine:.0f} MB/s)")
        ok = all(r >= 0.7 for r in results.values())
        print("PASS" if ok else "FAIL", "(goal: ratio >= 0.7 for both)")
        return 0 if ok else 1
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
