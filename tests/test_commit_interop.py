"""Committed and built images checked by other tools: umoci unpacks them to the same tree our
containers see, oci-image-tool validates the store, and podman loads, runs and shows the changes."""
import hashlib
import os
import stat
import subprocess

import pytest

from minidocker import archive, build, commit, containers
from minidocker.bootstrap import bootstrap
from registry_server import podman  # noqa: F401

pytestmark = pytest.mark.root

MUTATE = ("rm /etc/motd && rm -rf /etc/init.d && mkdir /etc/init.d && echo new > /etc/init.d/c && "
          "echo changed >> /etc/passwd && mkdir -p /new/dir && echo hi > /new/dir/f && ln -s /new/dir/f /new/link")
# Our base: busybox installed into an empty image (bootstrap's skeleton layer names root/ twice,
# which podman refuses; see the report), with the files the round trip changes.
BASE = ('FROM scratch\nCOPY --from=busybox /bin/busybox /bin/\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        "RUN mkdir -p /etc/init.d /tmp && echo a > /etc/init.d/a && echo motd > /etc/motd && "
        "echo root:x:0:0:root:/root:/bin/sh > /etc/passwd\n")
DOCKERFILE = ("FROM base:1 AS b\nRUN echo built > /built\nFROM base:1\nCOPY --from=b /built /built\n"
              "COPY data/ /data/\nRUN rm /etc/motd && chmod 4755 /data/x\nCMD [\"cat\", \"/built\"]\n")


@pytest.fixture
def made(store, tmp_path):
    """Two images: a commit of the layer.md round trip (2.7) and a two-stage build."""
    bootstrap(store)
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "Dockerfile").write_text(BASE)
    build.build(store, tmp_path / "base", tags=["base:1"], out=lambda line: None, network="none")
    c = containers.create(store, "base:1", ["sh", "-c", MUTATE], network="none")
    c.start().close()
    assert c.wait() == 0
    commit.commit(store, c.id, "committed:1")
    c.remove()
    ctx = tmp_path / "ctx"
    (ctx / "data").mkdir(parents=True)
    (ctx / "data" / "x").write_text("x\n")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    build.build(store, ctx, tags=["built:1"], out=lambda line: None, network="none")
    return store


def tree(root) -> dict:
    """path -> (type, mode, uid, gid, content hash or link target), for comparing two root filesystems."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            what = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    what = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            out[os.path.relpath(path, root)] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode),
                                                st.st_uid, st.st_gid, what)
    return out


@pytest.mark.parametrize("ref", ["committed:1", "built:1"])
def test_umoci_unpack_equals_what_our_containers_see(made, ref, tmp_path):
    from minidocker import images
    image = images.get(made, ref)
    bundle = tmp_path / "bundle"
    r = subprocess.run(["umoci", "unpack", "--image", f"{made.layout}:{image.tags[0]}", str(bundle)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    with build.mounted(made, image) as (rootfs, _):
        ours = tree(rootfs)
    theirs = tree(bundle / "rootfs")
    assert theirs == ours
    if ref == "committed:1":
        assert "etc/motd" not in ours and sorted(p for p in ours if p.startswith("etc/init.d/")) == ["etc/init.d/c"]
        assert ours["new/link"][4] == "/new/dir/f"
    else:
        assert ours["data/x"][1] == 0o4755 and "etc/motd" not in ours and "built" in ours


def test_oci_image_tool_validates_committed_and_built_images(made, tmp_path):
    # oci-image-tool 1.0 finds a --ref only in an index of one image: give each its own layout
    from minidocker import images, oci
    for ref in ("committed:1", "built:1"):
        image = images.get(made, ref)
        layout = tmp_path / ref.replace(":", "_")
        (layout / "blobs" / "sha256").mkdir(parents=True)
        (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        entry = {**image.manifest_desc, "annotations": {oci.REF_NAME: "v1"}}
        (layout / "index.json").write_text(oci.dumps({"schemaVersion": 2, "manifests": [entry]}).decode())
        for desc in [image.manifest_desc, image.manifest["config"]] + image.layers:
            os.link(made.blob_path(desc["digest"]), layout / "blobs" / "sha256" / desc["digest"][7:])
        r = subprocess.run(["oci-image-tool", "validate", "--type", "image", "--ref", "name=v1", str(layout)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def test_podman_loads_and_runs_them_with_the_changes(made, podman, tmp_path):
    from minidocker import images
    saved = tmp_path / "images.tar"
    archive.save(made, ["committed:1", "built:1"], str(saved))
    loaded = podman("load", "-i", str(saved)).stdout
    assert "Loaded image" in loaded, loaded
    for ref in ("committed:1", "built:1"):
        got = podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip()
        assert got == images.get(made, ref).id[7:]
    run = ["--runtime", "runc", "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
           "--ulimit", "nproc=1024:1024"]
    out = podman(*run, "committed:1", "sh", "-c",
                 "ls /etc/init.d; cat /new/dir/f; test -e /etc/motd || echo motd gone; tail -1 /etc/passwd").stdout
    assert out == "c\nhi\nmotd gone\nchanged\n"
    assert podman(*run, "built:1").stdout == "built\n"
