"""Images without internet: bootstrap, import, tag, rmi, history, inspect; the
store read by umoci and oci-image-tool as it is."""
import gzip
import io
import json
import os
import subprocess
import tarfile

import pytest

from helpers import md
from minidocker import bootstrap, images
from minidocker.errors import MinidockerError


def _tree(store):
    """The store's files, without its bookkeeping (the lock, and the leases of writers still alive)."""
    return sorted(str(p.relative_to(store.root)) for p in store.root.rglob("*")
                  if "lock" not in p.name and p.parts[len(store.root.parts)] != "leases")


def test_bootstrap_is_deterministic_and_has_two_layers(store, tmp_path):
    first = bootstrap.bootstrap(store)
    other = bootstrap.bootstrap(type(store)(tmp_path / "other"))
    assert first.id == other.id
    assert len(first.layers) == len(first.diff_ids) == 2
    assert first.familiar_tags == ["busybox:latest"]


def test_bootstrap_layers_hold_a_whiteout(store):
    image = bootstrap.bootstrap(store)
    top = image.lower_dirs()[0]
    issue = os.lstat(top / "etc" / "issue")
    assert (issue.st_mode & 0o170000, issue.st_rdev) == (0o020000, 0)   # a 0/0 char device


def test_the_store_validates_with_oci_image_tool_and_unpacks_with_umoci(store, tmp_path):
    bootstrap.bootstrap(store)
    ref = "docker.io/library/busybox:latest"
    v = subprocess.run(["oci-image-tool", "validate", "--type", "image", "--ref", f"name={ref}", str(store.layout)],
                       capture_output=True, text=True)
    assert v.returncode == 0, v.stderr
    u = subprocess.run(["umoci", "unpack", "--image", f"{store.layout}:{ref}", str(tmp_path / "bundle")],
                       capture_output=True, text=True)
    assert u.returncode == 0, u.stderr
    rootfs = tmp_path / "bundle" / "rootfs"
    assert (rootfs / "bin" / "busybox").exists()
    assert not (rootfs / "etc" / "issue").exists()   # layer 2 whited it out
    assert (rootfs / "etc" / "motd").read_text().startswith("Welcome! Layer 2")


def _rootfs_tar(path, compress=False):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"hi\n"))
    data = gzip.compress(buf.getvalue()) if compress else buf.getvalue()
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("compress", [False, True])
def test_import_makes_a_one_layer_image(store, tmp_path, compress):
    image = bootstrap.import_tar(store, _rootfs_tar(tmp_path / "r.tar", compress), "mine:v1", "first")
    assert image.familiar_tags == ["mine:v1"] and len(image.layers) == 1
    assert (image.lower_dirs()[0] / "hello.txt").read_text() == "hi\n"
    assert images.inspect(image)["Comment"] == "first"


def test_import_of_something_that_is_not_a_tar_changes_nothing(store, tmp_path):
    before = _tree(store)
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"this is not a tar archive" * 100)
    r = md("import", junk, "x", root=store.root)
    assert r.returncode != 0 and "not a tar archive" in r.stderr and r.stderr.count("\n") == 1
    assert _tree(store) == before


def test_import_of_a_malicious_tar_is_refused_and_leaves_nothing(store, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    (tmp_path / "evil.tar").write_bytes(buf.getvalue())
    before = _tree(store)
    with pytest.raises(MinidockerError):
        bootstrap.import_tar(store, str(tmp_path / "evil.tar"), "evil")
    assert _tree(store) == before
    assert not (tmp_path / "escape.txt").exists()


def test_tag_rmi_and_collection(store):
    image = bootstrap.bootstrap(store)
    images.tag(store, "busybox", "localhost:5000/me/box:1")
    assert sorted(images.get(store, "busybox").familiar_tags) == ["busybox:latest", "localhost:5000/me/box:1"]
    assert images.remove(store, "busybox") == ["Untagged: busybox:latest"]
    assert images.remove(store, "localhost:5000/me/box:1") == ["Untagged: localhost:5000/me/box:1",
                                                                f"Deleted: {image.id}"]
    assert list(store.blobs.iterdir()) == []
    assert [p for p in store.layers.iterdir()] == []


def test_rmi_refuses_an_image_a_container_uses_unless_forced(store):
    from minidocker import containers
    image = bootstrap.bootstrap(store)
    c = containers.create(store, "busybox", ["true"], name="user")
    with pytest.raises(MinidockerError, match="must force"):
        images.remove(store, "busybox")
    images.remove(store, "busybox", force=True)
    assert images.get(store, image.short_id).tags == []   # kept, untagged, while the container needs it
    c.remove()
    images.remove(store, image.short_id)
    assert list(store.blobs.iterdir()) == []


def test_cli_images_history_inspect(store):
    bootstrap.bootstrap(store)
    out = md("images", root=store.root, check=True).stdout.splitlines()
    assert out[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert out[1].split()[:2] == ["busybox", "latest"]
    hist = md("history", "busybox", root=store.root, check=True).stdout.splitlines()
    assert len(hist) == 3 and hist[2].startswith("<missing>")
    doc = json.loads(md("inspect", "busybox", root=store.root, check=True).stdout)
    assert doc[0]["RepoTags"] == ["busybox:latest"] and len(doc[0]["RootFS"]["Layers"]) == 2
    assert doc[0]["Config"]["Cmd"] == ["sh"]


@pytest.mark.parametrize("args, message", [
    (["rmi", "nope"], "No such image"), (["history", "nope"], "No such image"),
    (["inspect", "nope"], "No such image"), (["tag", "nope", "x"], "No such image"),
    (["tag", "busybox", "Bad:Name"], "invalid reference"),
])
def test_bad_input_is_one_line_and_non_zero(store, args, message):
    bootstrap.bootstrap(store)
    r = md(*args, root=store.root)
    assert r.returncode != 0 and message in r.stderr and "Traceback" not in r.stderr


def test_a_corrupt_blob_is_reported_not_used(store):
    image = bootstrap.bootstrap(store)
    path = store.blob_path(image.id)
    os.chmod(path, 0o600)
    path.write_bytes(path.read_bytes().replace(b'"sh"', b'"xx"'))
    r = md("inspect", "busybox", root=store.root)
    assert r.returncode != 0 and "corrupt" in r.stderr


def test_a_store_root_that_is_not_ours_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    r = md("images", root=tmp_path)
    assert r.returncode != 0 and "not a minidocker store" in r.stderr
    assert os.listdir(tmp_path) == ["notes.txt"]
