"""How long `run` of a tiny container takes, end to end, against runc and podman.

    sudo .venv/bin/python bench/run.py [N]

In one run, on this machine, N times each, alternating:
  runc        `runc run` of a bundle of the busybox image (umoci unpack of our store)
  cli         `minidocker run --rm --network none busybox true`   (runc's bundle has no veth either)
  cli-bridge  `minidocker run --rm busybox true`                  (docker's default: a veth on a bridge)
  cli-served  cli, with `minidocker system serve` running (the resident helper, as dockerd is for docker)
  api         `api.run("busybox", ["true"], remove=True, network="none")` from a warm interpreter
  podman      `podman --runtime runc run --rm --network none busybox true`
and whether start time grows with image size: a 500 MB image against the 2 MB one.
Targets (issue 3): cli <= 2x runc, cli < podman, api <= 1x runc, 500 MB within 10% of 2 MB.
runc's own time depends on how recently any process moved between cgroups (an RCU grace
period): every kind runs in turn, so each meets the same conditions.
"""
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N = int(sys.argv[1]) if len(sys.argv) > 1 else 20
MD = [os.path.join(os.path.dirname(sys.executable), "minidocker")]   # the command a user types


def timed(cmd, env=None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def main():
    tmp = Path(tempfile.mkdtemp(prefix="md-bench-run-"))
    env = dict(os.environ, MINIDOCKER_ROOT=str(tmp / "store"), MINIDOCKER_BRIDGE="minidockerb")
    os.environ.update(env)
    subprocess.run(MD + ["bootstrap"], env=env, check=True, stdout=subprocess.DEVNULL)
    served = dict(env, MINIDOCKER_ROOT=str(tmp / "served"), MINIDOCKER_BRIDGE="minidockerbs")   # the helper's own
    subprocess.run(MD + ["bootstrap"], env=served, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(MD + ["system", "serve", "-d"], env=served, check=True, stdout=subprocess.DEVNULL)
    podman_root = tmp / "podman"
    podman = ["podman", "--root", str(podman_root / "store"), "--runroot", str(podman_root / "run"),
              "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]
    try:
        bundle = tmp / "bundle"
        subprocess.run(["umoci", "unpack", "--image", f"{tmp}/store/images:docker.io/library/busybox:latest",
                        str(bundle)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"].update(terminal=False, args=["true"])
        (bundle / "config.json").write_text(json.dumps(spec))

        # A 500 MB image: busybox plus one layer of incompressible data.
        big = tmp / "big.tar"
        data = tmp / "data"
        data.mkdir()
        for i in range(5):
            (data / f"blob{i}").write_bytes(os.urandom(100 * 1024 * 1024))
        subprocess.run(["tar", "-cf", str(big), "-C", str(data), "."], check=True)
        shutil.rmtree(data)
        from minidocker import api, images
        store = api.store()
        base = images.get(store, "busybox")
        desc, diff_id = images.add_layer(store, open(big, "rb"), compress=False)
        config = images.new_config(base.config, diff_ids=[diff_id], created_by="bench: 500 MB of data")
        images.add(store, config, base.layers + [desc], "big:latest")
        big.unlink()

        archive = tmp / "busybox.tar"
        subprocess.run(["skopeo", "copy", f"oci:{tmp}/store/images:docker.io/library/busybox:latest",
                        f"docker-archive:{archive}:busybox:latest"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(podman + ["load", "-i", str(archive)], check=True, stdout=subprocess.DEVNULL)

        kinds = {
            "runc": lambda i: timed(["runc", "--root", str(tmp / "runc"), "run", "-b", str(bundle), f"b{i}"]),
            "cli": lambda i: timed(MD + ["run", "--rm", "--network", "none", "busybox", "true"], env),
            "cli-bridge": lambda i: timed(MD + ["run", "--rm", "busybox", "true"], env),
            "cli-served": lambda i: timed(MD + ["run", "--rm", "--network", "none", "busybox", "true"], served),
            "api": lambda i: _api_run("busybox"),
            "cli-500MB": lambda i: timed(MD + ["run", "--rm", "--network", "none", "big", "true"], env),
            "podman": lambda i: timed(podman + ["--runtime", "runc", "run", "--rm", "--network", "none",
                                                "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
                                                "busybox", "true"]),
        }
        for k in kinds.values():   # warm every cache once
            k(0)
        times = {k: [] for k in kinds}
        for i in range(1, N + 1):
            for name, run in kinds.items():
                times[name].append(run(i))
        med = {k: statistics.median(v) for k, v in times.items()}
        for k, v in med.items():
            print(f"{k:>11}: median {v * 1000:7.1f} ms over {N} runs")
        print(f"cli / runc        = {med['cli'] / med['runc']:.2f}  (target <= 2)")
        print(f"cli-bridge / runc = {med['cli-bridge'] / med['runc']:.2f}")
        print(f"cli-served / runc = {med['cli-served'] / med['runc']:.2f}  (target for cli <= 2)")
        print(f"cli / podman      = {med['cli'] / med['podman']:.2f}  (target < 1)")
        print(f"cli-served / podman = {med['cli-served'] / med['podman']:.2f}")
        print(f"api / runc        = {med['api'] / med['runc']:.2f}  (target <= 1)")
        print(f"500 MB / 2 MB     = {med['cli-500MB'] / med['cli']:.2f}  (target <= 1.10)")
    finally:   # the helper, the bridges and 500 MB must not outlive a failed run
        subprocess.run(MD + ["system", "serve", "--stop"], env=served, stdout=subprocess.DEVNULL)
        subprocess.run(podman + ["rmi", "-a", "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        subprocess.run(["umount", "-R", str(podman_root / "store" / "overlay")], stderr=subprocess.DEVNULL)
        from minidocker import endpoints
        for root in (tmp / "store", tmp / "served"):   # the bridges: a later run would find them taken
            endpoints.remove_all(root=root)
        shutil.rmtree(tmp, ignore_errors=True)


def _api_run(image) -> float:
    from minidocker import api
    t = time.perf_counter()
    api.run(image, ["true"], remove=True, network="none")
    return time.perf_counter() - t


if __name__ == "__main__":
    main()
