"""Unpacking layers: formats, diff_ids, whiteouts, what is preserved, GNU tar as oracle.

The attack vectors of security.md 2.1 are in test_layers_security.py.
"""
import hashlib
import io
import os
import shutil
import stat
import struct
import subprocess

import pytest

from minidocker import layers, tarstream
from minidocker.errors import MinidockerError
from minidocker.files import mounts_under
from tarcorpus import (dev, dir_, fifo, gnu_tar_bytes, gz, hard, opaque, reg, sym, tar_bytes, tree,
                       whiteout, zst)

CAP_NET_RAW = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)   # vfs_cap_data v2, effective


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def apply(dest, *tars, flatten=False):
    for t in tars:
        layers.unpack(io.BytesIO(t), dest, flatten=flatten)


# -- pure core: no root needed ----------------------------------------------

@pytest.mark.parametrize("base,expected", [
    ("motd", None),
    (".wh.motd", ("whiteout", "motd")),
    (".wh..profile", ("whiteout", ".profile")),
    (".wh..wh..opq", ("opaque", None)),
    (".wh..wh.plnk", ("meta", None)),
])
def test_whiteout_names(base, expected):
    assert layers.parse_whiteout(base) == expected


@pytest.mark.parametrize("base", [".wh.", ".wh..", ".wh..."])
def test_bad_whiteout_names_are_refused(base):
    with pytest.raises(MinidockerError, match="invalid whiteout"):
        layers.parse_whiteout(base)


@pytest.mark.parametrize("name,parts", [
    ("etc/passwd", ["etc", "passwd"]), ("./etc//x/", ["etc", "x"]), (".", []), ("./", []),
    ("a/./b", ["a", "b"]),
])
def test_names_split(name, parts):
    from minidocker.confined import split_name
    assert split_name(name) == parts


@pytest.mark.parametrize("name", ["/etc/passwd", "../x", "a/../../x", "..", "a/.."])
def test_names_refused(name):
    from minidocker.confined import split_name
    with pytest.raises(MinidockerError, match="refused"):
        split_name(name)


def test_only_user_and_capability_xattrs_are_kept():
    assert layers.kept_xattr("user.mime") and layers.kept_xattr("security.capability")
    assert not any(map(layers.kept_xattr, ["trusted.overlay.opaque", "trusted.x", "security.selinux"]))


def test_pax_records_and_times():
    assert tarstream._parse_pax(b"14 path=a/b/c\n11 uid=123\n") == {"path": "a/b/c", "uid": "123"}
    assert tarstream._ns("1700000000.5") == 1700000000_500000000
    assert tarstream._ns("12") == 12_000_000_000
    with pytest.raises(MinidockerError, match="PAX"):
        tarstream._parse_pax(b"99 path=x\n")


@pytest.mark.parametrize("pack", [lambda t: t, gz, zst, lambda t: zst(t, with_size=True),
                                  lambda t: zst(t[:5000]) + zst(t[5000:])],
                         ids=["plain", "gzip", "zstd", "zstd-sized", "zstd-two-frames"])
def test_diff_id_is_sha256_of_uncompressed_tar_whatever_the_compression(pack):
    tar = tar_bytes(reg("a", b"x" * 10000), reg("b/c", b"hello"))
    assert layers.open_layer(io.BytesIO(pack(tar))).read() == tar
    # sniffed by magic bytes, not by name or media type: the tests pass bare bytes


class Trickle(io.RawIOBase):
    """A stream that returns one byte per read, as a slow network might."""

    def __init__(self, data):
        self.data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buf):
        return self.data.readinto(memoryview(buf)[:1])


@pytest.mark.parametrize("pack", [lambda t: t, gz, zst], ids=["plain", "gzip", "zstd"])
def test_sniffing_survives_a_stream_that_trickles(pack):
    tar = tar_bytes(reg("a", b"x" * 3000))
    slow = io.BufferedReader(Trickle(pack(tar)), 1)
    assert layers.open_layer(slow).read() == tar


def test_truncated_and_corrupt_layers_are_clear_errors(tmp_path):
    tar = tar_bytes(reg("a", os.urandom(5000)))
    for bad, why in [(tar[:2048], "truncated"), (gz(tar)[:-20], "corrupt|truncated"),
                     (tar[:512].replace(b"ustar", b"xxxxx") + tar[512:], "bad tar header")]:
        with pytest.raises(MinidockerError, match=why):
            layers.unpack(io.BytesIO(bad), tmp_path / "x")


# -- as root: what an unpacked layer holds ---------------------------------------

@pytest.mark.root
@pytest.mark.parametrize("pack", [lambda t: t, gz, zst])
def test_unpack_returns_diff_id_and_writes_files(tmp_path, pack):
    tar = tar_bytes(dir_("etc"), reg("etc/hostname", b"box\n", mode=0o600, uid=7, gid=8))
    assert layers.unpack(io.BytesIO(pack(tar)), tmp_path / "d") == sha(tar)
    st = os.lstat(tmp_path / "d/etc/hostname")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 7, 8)
    assert (tmp_path / "d/etc/hostname").read_bytes() == b"box\n"


@pytest.mark.root
def test_modes_owners_links_devices_xattrs_and_times_are_preserved(tmp_path):
    tar = tar_bytes(
        dir_("bin", mtime=1600000000), reg("bin/su", b"#!", mode=0o4755), reg("bin/wall", b"w", mode=0o2755, gid=5),
        dir_("tmp", mode=0o1777), reg("bin/ping", b"p", mode=0o755, xattrs={"security.capability": CAP_NET_RAW}),
        reg("etc/u", b"u", xattrs={"user.mime": b"text/plain"}, uid=1000, gid=1000),
        sym("etc/localtime", "/usr/share/zoneinfo/UTC"), sym("etc/rel", "../bin/su"),
        hard("bin/su2", "bin/su"), dev("dev/null", "c", 1, 3), dev("dev/sda", "b", 8, 0), fifo("run/fifo"))
    d = tmp_path / "d"
    apply(d, tar)
    mode = lambda p: stat.S_IMODE(os.lstat(d / p).st_mode)
    assert mode("bin/su") == 0o4755 and mode("bin/wall") == 0o2755 and mode("tmp") == 0o1777
    assert os.lstat(d / "bin/wall").st_gid == 5 and os.lstat(d / "etc/u").st_uid == 1000
    assert os.readlink(d / "etc/localtime") == "/usr/share/zoneinfo/UTC"   # absolute, kept as a link
    assert os.readlink(d / "etc/rel") == "../bin/su"
    assert os.path.samestat(os.lstat(d / "bin/su"), os.lstat(d / "bin/su2"))
    assert os.lstat(d / "dev/null").st_rdev == os.makedev(1, 3) and stat.S_ISCHR(os.lstat(d / "dev/null").st_mode)
    assert stat.S_ISBLK(os.lstat(d / "dev/sda").st_mode) and stat.S_ISFIFO(os.lstat(d / "run/fifo").st_mode)
    assert os.getxattr(d / "bin/ping", "security.capability") == CAP_NET_RAW
    assert os.getxattr(d / "etc/u", "user.mime") == b"text/plain"
    assert os.lstat(d / "bin").st_mtime == 1600000000   # set after its content was written
    assert os.lstat(d / "etc/localtime").st_mtime == 1700000000


@pytest.mark.root
def test_whiteouts_become_overlay_whiteouts(tmp_path):
    d = tmp_path / "d"
    apply(d, tar_bytes(dir_("etc"), whiteout("etc/motd", uid=3, gid=4), dir_("opt"), opaque("opt"),
                       reg("opt/new", b"n")))
    st = os.lstat(d / "etc/motd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0 and (st.st_uid, st.st_gid) == (3, 4)
    assert os.getxattr(d / "opt", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(d / "etc")) == ["motd"] and sorted(os.listdir(d / "opt")) == ["new"]


@pytest.mark.root
def test_whiteout_never_deletes_its_own_layer(tmp_path):
    for flatten in (False, True):
        d = tmp_path / f"d{flatten}"
        apply(d, tar_bytes(reg("a", b"mine"), whiteout("a")), flatten=flatten)
        assert (d / "a").read_bytes() == b"mine"


@pytest.mark.root
def test_flattened_whiteouts_delete_and_opaque_placed_last_still_applies(tmp_path):
    d = tmp_path / "d"
    apply(d, tar_bytes(reg("etc/motd", b"m"), reg("etc/keep", b"k"), reg("dir/b", b"b"), reg("dir/sub/old", b"o")))
    apply(d, tar_bytes(whiteout("etc/motd"), reg("dir/a", b"a"), reg("dir/sub/new", b"n"), opaque("dir")),
          flatten=True)
    assert sorted(os.listdir(d / "etc")) == ["keep"]
    assert sorted(os.listdir(d / "dir")) == ["a", "sub"] and os.listdir(d / "dir/sub") == ["new"]


@pytest.mark.root
def test_file_dir_replacement_and_dir_merge(tmp_path):
    d = tmp_path / "d"
    apply(d, tar_bytes(reg("x", b"file"), reg("y/inner", b"i"), reg("m/old", b"o"), sym("s", "/etc")))
    apply(d, tar_bytes(dir_("x", mode=0o700), reg("x/in", b"1"), reg("y", b"now a file"),
                       dir_("m", mode=0o711), reg("m/new", b"n"), dir_("s")), flatten=True)
    assert stat.S_ISDIR(os.lstat(d / "x").st_mode) and (d / "x/in").read_bytes() == b"1"
    assert (d / "y").read_bytes() == b"now a file"
    assert sorted(os.listdir(d / "m")) == ["new", "old"] and stat.S_IMODE(os.lstat(d / "m").st_mode) == 0o711
    assert stat.S_ISDIR(os.lstat(d / "s").st_mode)   # a dir entry replaces a symlink, never follows it


@pytest.mark.root
def test_long_names_pax_and_gnu(tmp_path):
    long = "a" * 120 + "/" + "b" * 150 + "/" + "c" * 200
    for i, make in enumerate((tar_bytes, gnu_tar_bytes)):
        d = tmp_path / f"d{i}"
        apply(d, make(reg(long, b"deep"), sym("l" * 200, "t" * 300)))
        assert (d / long).read_bytes() == b"deep" and os.readlink(d / ("l" * 200)) == "t" * 300


def benign_tar():
    return tar_bytes(
        dir_("bin", mtime=1600000000), reg("bin/su", b"#!su", mode=0o4755), dir_("tmp", mode=0o1777),
        reg("bin/ping", b"ping", xattrs={"security.capability": CAP_NET_RAW, "user.a": b"1"}),
        reg("etc/passwd", b"root:x:0:0::/root:/bin/sh\n", uid=0, gid=42),
        sym("etc/localtime", "/usr/share/zoneinfo/UTC"), hard("bin/su2", "bin/su"),
        dev("dev/null", "c", 1, 3), fifo("run/fifo"), reg("home/u/.profile", os.urandom(70000), uid=1000, gid=100),
        dir_("home/u", mode=0o700, uid=1000, gid=100, mtime=1500000000))


@pytest.mark.root
def test_same_tree_as_gnu_tar(tmp_path):
    tar = benign_tar()
    (tmp_path / "l.tar").write_bytes(tar)
    ours, theirs = tmp_path / "ours", tmp_path / "gnu"
    apply(ours, tar)
    theirs.mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", tmp_path / "l.tar",
                    "-C", theirs], check=True)
    # directory times: GNU tar sets bin's before bin/ping re-enters it; we set them all last
    assert tree(ours, times="files") == tree(theirs, times="files")
    assert len(tree(ours)) == 15
    assert os.lstat(ours / "home/u").st_mtime == os.lstat(theirs / "home/u").st_mtime == 1500000000


@pytest.mark.root
def test_unpacking_twice_gives_the_same_tree(tmp_path):
    tar = benign_tar()
    apply(tmp_path / "a", tar)
    apply(tmp_path / "b", gz(tar))
    assert tree(tmp_path / "a", times="files") == tree(tmp_path / "b", times="files")
    shutil.rmtree(tmp_path / "a")


@pytest.mark.root
@pytest.mark.slow
def test_a_real_tree_comes_out_as_gnu_tar_makes_it(tmp_path):
    """/etc, zoneinfo and sbin (symlinks, hardlinks, odd modes), packed by GNU tar, unpacked both ways."""
    layer = tmp_path / "real.tar.gz"
    subprocess.run(["tar", "--xattrs", "-czf", layer, "-C", "/", "etc", "usr/share/zoneinfo", "usr/sbin"],
                   check=True, capture_output=True)
    ours, theirs = tmp_path / "ours", tmp_path / "gnu"
    theirs.mkdir()
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpzf", layer, "-C", theirs],
                   check=True)
    with open(layer, "rb") as f:
        layers.unpack(f, ours)
    expected = tree(theirs, times="files")
    assert len(expected) > 1000 and tree(ours, times="files") == expected


@pytest.mark.root
def test_absurdly_deep_layers_are_a_clear_error_not_a_crash(tmp_path):
    deep = "/".join(["d"] * 1500)      # one PAX name, 1500 directories: beyond Python recursion
    try:
        layers.unpack(io.BytesIO(tar_bytes(reg(deep + "/f", b"deep"))), tmp_path / "ok")   # iterative walk copes
        with pytest.raises(MinidockerError, match="nested too deeply"):
            layers.unpack(io.BytesIO(tar_bytes(reg(deep + "/g", b"x"), opaque("d"))), tmp_path / "ok",
                          flatten=True)
    finally:
        subprocess.run(["rm", "-rf", tmp_path / "ok"], check=True)   # shutil.rmtree would recurse too deep


@pytest.mark.root
@pytest.mark.parametrize("member,why", [
    (reg("a", uid=-5), "bad number"), (reg("a", gid=1 << 40), "bad number"),
])
def test_impossible_header_values_are_clear_errors(tmp_path, member, why):
    with pytest.raises(MinidockerError, match="layer entry 'a': " + why):
        layers.unpack(io.BytesIO(gnu_tar_bytes(member)), tmp_path / "d")


@pytest.mark.root
def test_failing_system_calls_name_the_entry(tmp_path):
    d = tmp_path / "d"
    (d / "full").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", d / "full"], check=True)
    try:
        with pytest.raises(MinidockerError, match="layer entry 'full/big': No space left"):
            layers.unpack(io.BytesIO(tar_bytes(reg("full/big", os.urandom(1 << 20)))), d)
    finally:
        subprocess.run(["umount", d / "full"], check=True)
    assert mounts_under(tmp_path) == []


@pytest.mark.root
def test_corrupt_zstd_is_a_clear_error(tmp_path):
    good = zst(tar_bytes(reg("a", os.urandom(20000))))
    bad = bytearray(good)
    bad[4] |= 0x08   # a reserved bit of the frame header descriptor
    with pytest.raises(MinidockerError, match="corrupt"):
        layers.unpack(io.BytesIO(bytes(bad)), tmp_path / "x")
    with pytest.raises(MinidockerError, match="truncated"):
        layers.unpack(io.BytesIO(good[:-3000]), tmp_path / "y")   # the reader just stops: nothing decoded
    with pytest.raises(MinidockerError, match="truncated"):
        layers.unpack(io.BytesIO(b""), tmp_path / "y")
    # raw zstd blocks carry no checksum by default: flipped data bytes are caught by the diff_id
    flipped = bytearray(good)
    flipped[1000] ^= 0xFF
    assert layers.unpack(io.BytesIO(bytes(flipped)), tmp_path / "z") != layers.unpack(io.BytesIO(good), tmp_path / "w")


@pytest.mark.root
def test_directories_the_tar_never_names_are_0755_whatever_the_umask(tmp_path):
    old = os.umask(0o077)
    try:
        apply(tmp_path / "d", tar_bytes(reg("implicit/parent/f", b"f"), opaque("onlymarker"), reg("onlymarker/x")))
    finally:
        os.umask(old)
    for d in ("implicit", "implicit/parent", "onlymarker"):
        assert stat.S_IMODE(os.lstat(tmp_path / "d" / d).st_mode) == 0o755, d
