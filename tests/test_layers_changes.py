"""Upper dir -> layer tar (commit) and docker diff, on real overlay mounts; umoci as oracle."""
import hashlib
import io
import os
import shutil
import subprocess
import tarfile

import pytest

from minidocker import changes, layers, overlay
from minidocker.files import mounts_under
from tarcorpus import dir_, oci_layout, reg, sym, tar_bytes, tree, whiteout

pytestmark = pytest.mark.root

BASE = [
    tar_bytes(dir_("etc"), reg("etc/hello", b"hi\n"), reg("etc/keep", b"k"), dir_("opt"), dir_("opt/old"),
              reg("opt/old/a", b"a"), reg("opt/old/b", b"b"), dir_("bin"), reg("bin/sh", b"sh", mode=0o755),
              sym("bin/link", "sh")),
    tar_bytes(dir_("etc"), whiteout("etc/keep"), reg("etc/second", b"2"), dir_("var"), dir_("var/gone"),
              reg("var/gone/x", b"x")),
]


@pytest.fixture
def container(tmp_path):
    """Unpacked BASE layers and a mounted overlay; yields (tmp_path, lowers, merged)."""
    lowers = []
    for i, tar in enumerate(BASE):
        layers.unpack(io.BytesIO(tar), tmp_path / f"layer{i}")
        lowers.insert(0, str(tmp_path / f"layer{i}"))
    for d in ("upper", "work", "merged"):
        (tmp_path / d).mkdir()
    overlay.mount(lowers, tmp_path / "upper", tmp_path / "work", tmp_path / "merged")
    try:
        yield tmp_path, lowers, tmp_path / "merged"
    finally:
        if overlay.is_mounted(tmp_path / "merged"):
            overlay.unmount(tmp_path / "merged")
        assert mounts_under(tmp_path) == []


def mutate(merged):
    """The round trip of oci-interop.md 2.7, and a few more kinds of change."""
    os.unlink(merged / "etc/hello")                          # delete a lower file
    shutil.rmtree(merged / "opt/old")                        # rm -rf + recreate a lower dir
    os.mkdir(merged / "opt/old")
    (merged / "opt/old/c").write_bytes(b"c")
    (merged / "etc/layer2").write_bytes(b"new")              # add a file
    os.makedirs(merged / "new/dir")                          # add a dir
    with open(merged / "bin/sh", "ab") as f:                 # modify a lower file
        f.write(b"!")
    os.chmod(merged / "etc/second", 0o600)                   # metadata-only change
    os.link(merged / "new/dir/../../etc/layer2", merged / "new/hard")
    os.setxattr(merged / "etc/layer2", "user.note", b"\x00\xffbinary")
    os.symlink("/etc/layer2", merged / "new/abs")
    shutil.rmtree(merged / "var/gone")                       # delete a lower dir


def committed(container):
    """Change the container, then write its upper dir as a layer: (what it saw, diff_id, the tar)."""
    tmp_path, lowers, merged = container
    mutate(merged)
    view = tree(merged, times="seconds")
    overlay.unmount(merged)
    out = io.BytesIO()
    diff_id = changes.write_layer(tmp_path / "upper", out)
    return view, diff_id, out.getvalue()


def test_commit_tar_is_the_changeset_and_round_trips(container):
    tmp_path, lowers, merged = container
    view, diff_id, tar = committed(container)
    assert diff_id == "sha256:" + hashlib.sha256(tar).hexdigest()
    names = [m.name for m in tarfile.open(fileobj=io.BytesIO(tar))]
    assert names == ["bin", "bin/sh", "etc", "etc/.wh.hello", "etc/layer2", "etc/second", "new", "new/abs",
                     "new/dir", "new/hard", "opt", "opt/old", "opt/old/.wh..wh..opq", "opt/old/c",
                     "var", "var/.wh.gone"]
    members = {m.name: m for m in tarfile.open(fileobj=io.BytesIO(tar))}
    assert members["new/hard"].islnk() and members["new/hard"].linkname == "etc/layer2"
    assert members["etc/.wh.hello"].size == 0 and members["etc/layer2"].pax_headers
    # the new layer applied onto the old ones gives what the container saw
    flat = tmp_path / "flat"
    for t in BASE + [tar]:
        layers.unpack(io.BytesIO(t), flat, flatten=True)
    assert tree(flat, times="seconds") == view
    # and as one more overlay layer, too
    layers.unpack(io.BytesIO(tar), tmp_path / "layer-new")
    (tmp_path / "upper2").mkdir(), (tmp_path / "work2").mkdir()
    overlay.mount([str(tmp_path / "layer-new")] + lowers, tmp_path / "upper2", tmp_path / "work2", merged)
    try:
        assert tree(merged, times="seconds") == view
    finally:
        overlay.unmount(merged)


def test_commit_is_deterministic(container):
    tmp_path, lowers, merged = container
    mutate(merged)
    overlay.unmount(merged)
    first, second = io.BytesIO(), io.BytesIO()
    assert changes.write_layer(tmp_path / "upper", first) == changes.write_layer(tmp_path / "upper", second)
    assert first.getvalue() == second.getvalue()
    copy = tmp_path / "upper-copy"      # same files elsewhere: same bytes
    subprocess.run(["cp", "-a", tmp_path / "upper", copy], check=True)
    assert changes.write_layer(copy, io.BytesIO()) == changes.write_layer(tmp_path / "upper", io.BytesIO())


def test_diff_reports_added_changed_deleted(container):
    tmp_path, lowers, merged = container
    mutate(merged)
    overlay.unmount(merged)
    assert changes.changes(tmp_path / "upper", lowers) == [
        ("C", "/bin"), ("C", "/bin/sh"), ("C", "/etc"), ("D", "/etc/hello"), ("A", "/etc/layer2"),
        ("C", "/etc/second"), ("A", "/new"), ("A", "/new/abs"), ("A", "/new/dir"), ("A", "/new/hard"),
        ("C", "/opt"), ("C", "/opt/old"), ("D", "/opt/old/a"), ("D", "/opt/old/b"), ("A", "/opt/old/c"),
        ("C", "/var"), ("D", "/var/gone")]


def test_nothing_changed_gives_an_empty_layer(container):
    tmp_path, lowers, merged = container
    overlay.unmount(merged)
    out = io.BytesIO()
    changes.write_layer(tmp_path / "upper", out)
    assert out.getvalue() == bytes(1024) and changes.changes(tmp_path / "upper", lowers) == []


def test_umoci_unpacks_our_commit_to_the_merged_view(container):
    tmp_path = container[0]
    view, _, tar = committed(container)
    oci_layout(tmp_path / "oci", BASE + [tar])
    subprocess.run(["umoci", "unpack", "--image", f"{tmp_path / 'oci'}:latest", tmp_path / "bundle"],
                   check=True, capture_output=True)
    assert tree(tmp_path / "bundle/rootfs", times="seconds") == view


def test_a_container_made_absurdly_deep_tree_is_a_clear_error(tmp_path):
    from minidocker.errors import MinidockerError
    subprocess.run(["mkdir", "-p", tmp_path / "upper" / "/".join(["d"] * 1500)], check=True)
    try:
        with pytest.raises(MinidockerError, match="nested too deeply"):
            changes.write_layer(tmp_path / "upper", io.BytesIO())
        with pytest.raises(MinidockerError, match="nested too deeply"):
            changes.changes(tmp_path / "upper", [])
    finally:
        subprocess.run(["rm", "-rf", tmp_path / "upper"], check=True)   # shutil.rmtree would recurse too deep
