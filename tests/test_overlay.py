"""Overlay mounts of unpacked layers: the merged view, copy-up, whiteouts, unmounting."""
import io
import os
import stat
import subprocess

import pytest

from minidocker import layers, overlay
from minidocker.errors import MinidockerError
from minidocker.files import mounts_under
from tarcorpus import dir_, hard, oci_layout, opaque, reg, sym, tar_bytes, tree, whiteout

LAYERS = [
    tar_bytes(dir_("etc"), reg("etc/hello", b"hi\n"), reg("etc/motd", b"motd\n"), dir_("opt"),
              dir_("opt/old"), reg("opt/old/a", b"a"), reg("opt/old/b", b"b"), reg("bin/sh", b"sh", mode=0o755),
              hard("bin/ash", "bin/sh")),
    tar_bytes(dir_("etc"), whiteout("etc/motd"), reg("etc/layer2", b"2"), dir_("opt"), dir_("opt/old"),
              opaque("opt/old"), reg("opt/old/c", b"c"), sym("bin/busybox", "/bin/sh")),
    tar_bytes(dir_("etc", mode=0o750), reg("etc/hello", b"changed\n"), dir_("var/tmp", mode=0o1777),
              whiteout("bin/ash")),
]


def test_options_turn_off_what_would_make_the_upper_dir_unfaithful():
    data = overlay.options(["/l/2", "/l/1"], "/u", "/w")
    assert data.startswith("lowerdir=/l/2:/l/1,upperdir=/u,workdir=/w")
    for name in overlay.FAITHFUL_UPPER:
        if os.path.exists(f"/sys/module/overlay/parameters/{name}"):
            assert f"{name}=off" in data
    with pytest.raises(MinidockerError, match="may not contain"):
        overlay.options(["/l/a:b"], "/u", "/w")


@pytest.fixture
def stack(tmp_path):
    """Three unpacked layers and the dirs of one container; unmounts and checks after the test."""
    lowers = []
    for i, tar in enumerate(LAYERS):
        layers.unpack(io.BytesIO(tar), tmp_path / f"layer{i}")
        lowers.insert(0, str(tmp_path / f"layer{i}"))   # top first
    for d in ("upper", "work", "merged"):
        (tmp_path / d).mkdir()
    yield tmp_path, lowers
    left = mounts_under(tmp_path)
    for point in reversed(left):
        overlay.unmount(point, lazy=True)
    assert left == []


def mount(tmp_path, lowers):
    overlay.mount(lowers, tmp_path / "upper", tmp_path / "work", tmp_path / "merged")


@pytest.mark.root
def test_merged_view_equals_the_flattened_layers(stack):
    tmp_path, lowers = stack
    flat = tmp_path / "flat"
    for tar in LAYERS:
        layers.unpack(io.BytesIO(tar), flat, flatten=True)
    mount(tmp_path, lowers)
    try:
        assert overlay.is_mounted(tmp_path / "merged")
        merged = tree(tmp_path / "merged", times="files")
        assert merged == tree(flat, times="files")
        assert sorted(os.listdir(tmp_path / "merged/opt/old")) == ["c"]
        assert sorted(os.listdir(tmp_path / "merged/etc")) == ["hello", "layer2"]
        assert (tmp_path / "merged/etc/hello").read_bytes() == b"changed\n"
        assert not os.path.lexists(tmp_path / "merged/bin/ash")
    finally:
        overlay.unmount(tmp_path / "merged")
    assert not overlay.is_mounted(tmp_path / "merged")


@pytest.mark.root
def test_copy_up_and_whiteouts_land_in_the_upper_dir(stack):
    tmp_path, lowers = stack
    merged, upper = tmp_path / "merged", tmp_path / "upper"
    mount(tmp_path, lowers)
    try:
        os.unlink(merged / "etc/hello")                        # lower file deleted
        subprocess.run(["rm", "-rf", merged / "opt/old"], check=True)
        os.mkdir(merged / "opt/old")                           # lower dir emptied and recreated
        (merged / "opt/old/new").write_bytes(b"n")
        with open(merged / "bin/sh", "ab") as f:               # lower file modified
            f.write(b"!")
    finally:
        overlay.unmount(merged)
    st = os.lstat(upper / "etc/hello")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(upper / "opt/old", "trusted.overlay.opaque") == b"y"
    assert os.listdir(upper / "opt/old") == ["new"]
    assert (upper / "bin/sh").read_bytes() == b"sh!"
    assert not os.path.lexists(upper / "etc/layer2")           # untouched files stay below


@pytest.mark.root
def test_unmount_busy_is_a_clear_error_and_lazy_detaches(stack):
    tmp_path, lowers = stack
    mount(tmp_path, lowers)
    f = open(tmp_path / "merged/etc/hello")
    try:
        with pytest.raises(MinidockerError, match="busy"):
            overlay.unmount(tmp_path / "merged")
        assert overlay.is_mounted(tmp_path / "merged")
        overlay.unmount(tmp_path / "merged", lazy=True)
        assert not overlay.is_mounted(tmp_path / "merged")
        assert f.read() == "changed\n"   # a detached mount lives on for whoever still uses it
    finally:
        f.close()
    with pytest.raises(MinidockerError, match="not a mount point"):
        overlay.unmount(tmp_path / "merged")


@pytest.mark.root
def test_bad_mounts_are_clear_errors(stack):
    tmp_path, lowers = stack
    with pytest.raises(MinidockerError, match="not a directory"):
        overlay.mount(lowers + [str(tmp_path / "missing")], tmp_path / "upper", tmp_path / "work",
                      tmp_path / "merged")
    with pytest.raises(MinidockerError, match="at least one"):
        overlay.mount([], tmp_path / "upper", tmp_path / "work", tmp_path / "merged")
    assert not overlay.is_mounted(tmp_path / "merged")


@pytest.mark.root
@pytest.mark.parametrize("count", [50, 200])
def test_many_layers_with_long_paths(tmp_path, count):
    base = tmp_path / "layers"
    lowers = []
    for i in range(count):
        d = base / f"{i:064x}" / "diff"
        layers.unpack(io.BytesIO(tar_bytes(reg(f"f{i}", str(i).encode()))), d)
        lowers.insert(0, str(d))
    for d in ("upper", "work", "merged"):
        (tmp_path / d).mkdir()
    assert len(overlay.options(lowers, "/u", "/w")) > overlay.PAGE   # absolute paths would not fit
    try:
        overlay.mount(lowers, tmp_path / "upper", tmp_path / "work", tmp_path / "merged")
        assert sorted(os.listdir(tmp_path / "merged")) == sorted(f"f{i}" for i in range(count))
        assert (tmp_path / "merged/f7").read_bytes() == b"7"
    finally:
        if overlay.is_mounted(tmp_path / "merged"):
            overlay.unmount(tmp_path / "merged")
    assert mounts_under(tmp_path) == []


def test_more_layers_than_overlayfs_stacks_is_a_clear_error(tmp_path):
    lowers = [str(tmp_path / f"{i:064x}") for i in range(overlay.MAX_LAYERS + 1)]
    for d in lowers + [str(tmp_path / d) for d in ("upper", "work", "merged")]:
        os.mkdir(d)
    with pytest.raises(MinidockerError, match="too many layers"):
        overlay.mount(lowers, tmp_path / "upper", tmp_path / "work", tmp_path / "merged")


@pytest.mark.root
def test_merged_view_equals_umoci_unpack(stack):
    tmp_path, lowers = stack
    oci_layout(tmp_path / "oci", LAYERS)
    subprocess.run(["umoci", "unpack", "--image", f"{tmp_path / 'oci'}:latest", tmp_path / "bundle"],
                   check=True, capture_output=True)
    mount(tmp_path, lowers)
    try:
        assert tree(tmp_path / "merged", times="files") == tree(tmp_path / "bundle/rootfs", times="files")
    finally:
        overlay.unmount(tmp_path / "merged")
