"""Eight minidocker processes at once on one store: pull, run, commit, rm and rmi.

Every change to the store is guarded by file locks; this test makes them
fight for real and then checks the result: every command succeeded, each blob
is stored once and matches its digest, each image has all its parts, no
container, mount, cgroup or half-written file is left over (security.md Z9).
"""
import json
import os
import subprocess
import sys

import pytest

from registry_server import registry  # noqa: F401
from test_crash import cli, no_cgroups_of, push_busybox, verify
from minidocker.store import Store

pytestmark = pytest.mark.root
WORKERS = 8


@pytest.fixture(scope="module")
def pushed(registry, tmp_path_factory):  # noqa: F811
    return push_busybox(registry, tmp_path_factory, "race/busybox")


def worker_script(n, image):
    md = f"{sys.executable} -m minidocker"
    return " && ".join([
        f"{md} pull -q {image} >/dev/null",
        f"{md} run --name w{n} --network none {image} sh -c 'echo {n} > /mine'",
        f"{md} commit w{n} race/w{n}:latest >/dev/null",
        f"test \"$({md} run --rm --network none race/w{n}:latest cat /mine)\" = {n}",
        f"{md} rm w{n} >/dev/null",
        f"{md} rmi race/w{n}:latest >/dev/null",
    ])


def test_eight_processes_pull_run_commit_rm_rmi_at_once(pushed, tmp_path):
    root = tmp_path / "store"
    Store(root)
    env = dict(os.environ, MINIDOCKER_ROOT=str(root))
    procs = [subprocess.Popen(["sh", "-c", worker_script(n, pushed)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for n in range(WORKERS)]
    results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
    try:
        for n, (out, err, rc) in enumerate(results):
            assert rc == 0, f"worker {n}: {err}"
        verify(root)
        ps = cli("ps", "-a", "-q", root=root)
        assert ps.returncode == 0 and ps.stdout.strip() == ""
        index = json.loads((root / "images" / "index.json").read_text())
        names = [m.get("annotations", {}).get("org.opencontainers.image.ref.name", "") for m in index["manifests"]]
        assert len(index["manifests"]) == 1, names   # only the pulled image; each commit went with its rmi
        assert not list((root / "containers").iterdir())
        no_cgroups_of([])
    finally:
        cli("system", "reset", "-f", root=root)
