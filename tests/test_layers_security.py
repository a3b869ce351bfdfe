"""Hostile layers (security.md 2.1, rows L1-L15 and L22): nothing outside dest ever changes.

Harness (after go-archive's testBreakout): dest sits beside victim/hello (random
bytes, mode 0400), and a host canary directory lives in $TMPDIR. After every
case: the victim, the canary, /etc/passwd and /etc/shadow are unchanged, the
base directory still lists only dest and victim, and no file under dest is, or
holds the bytes of, any of them. Each case runs as an overlay layer (fresh
dest) and flattened (onto the layers in `pre`), where the case makes sense.
"""
import hashlib
import io
import os
import re
import secrets
import shutil
import stat
import struct
import tempfile

import pytest

from minidocker import layers
from minidocker.confined import Confined
from minidocker.openat2 import resolve_in_root
from minidocker.errors import MinidockerError
from minidocker.files import mounts_under
from tarcorpus import dev, dir_, fifo, gnu_tar_bytes, hard, opaque, reg, sym, tar_bytes, whiteout

pytestmark = pytest.mark.root
CAP = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)   # vfs_cap_data v2, effective, cap_net_raw


def fingerprint(path):
    st = os.lstat(path)
    data = open(path, "rb").read() if stat.S_ISREG(st.st_mode) else None
    return (st.st_mode, st.st_uid, st.st_gid, st.st_ino, st.st_mtime_ns, st.st_nlink, data)


@pytest.fixture
def sandbox(tmp_path):
    base = tmp_path / "base"
    (base / "dest").mkdir(parents=True)
    (base / "victim").mkdir()
    hello = base / "victim/hello"
    hello.write_bytes(secrets.token_bytes(64))
    os.chmod(hello, 0o400)
    os.utime(hello, (1000000000, 1000000000))
    canary = tempfile.mkdtemp(prefix="md-canary-")
    with open(os.path.join(canary, "x"), "wb") as f:
        f.write(secrets.token_bytes(64))
    watched = [hello, base / "victim", os.path.join(canary, "x"), canary, "/etc/passwd", "/etc/shadow", "/run"]
    before = {str(p): fingerprint(p) for p in watched}
    try:
        yield base, canary
        assert sorted(os.listdir(base)) == ["dest", "victim"]
        assert os.listdir(base / "victim") == ["hello"] and os.listdir(canary) == ["x"]
        assert {str(p): fingerprint(p) for p in watched} == before
        forbidden_bytes = {before[str(hello)][-1], before[os.path.join(canary, "x")][-1]}
        forbidden_inodes = [os.lstat(p) for p in (hello, os.path.join(canary, "x"), "/etc/shadow", "/etc/passwd")]
        for dirpath, dirnames, filenames in os.walk(base / "dest"):
            for name in dirnames + filenames:
                st = os.lstat(os.path.join(dirpath, name))
                assert not any(os.path.samestat(st, f) for f in forbidden_inodes), name
                if stat.S_ISREG(st.st_mode):
                    assert open(os.path.join(dirpath, name), "rb").read() not in forbidden_bytes, name
    finally:
        shutil.rmtree(canary)


def R(bad):
    """Expect the unpack to be refused, naming entry `bad`."""
    return ("reject", bad)


def lexists(*paths):
    return lambda d, c: all(os.path.lexists(d / p.format(c=c.lstrip("/"))) for p in paths)


def absent(*paths):
    return lambda d, c: not any(os.path.lexists(d / p.format(c=c.lstrip("/"))) for p in paths)


# (id, mode, pre layers (flattened only), attack layer, expectation) ; members are lambdas of the canary path
CASES = [
    ("L1-parent", "both", None, lambda c: [reg("../victim/x", b"x")], R("../victim/x")),
    ("L1-rooted-parent", "both", None, lambda c: [reg("/../victim/x", b"x")], R("/../victim/x")),
    ("L1-dotdot", "both", None, lambda c: [reg("..", b"x")], R("..")),
    ("L1-deep", "both", None, lambda c: [dir_("a"), reg("a/../../x", b"x")], R("a/../../x")),
    ("L1-dir", "both", None, lambda c: [dir_("../victim/d")], R("../victim/d")),
    ("L2-absolute", "both", None, lambda c: [reg("/etc/passwd", b"pwned")], R("/etc/passwd")),
    ("L2-slashes", "both", None, lambda c: [reg("///etc/x", b"x")], R("///etc/x")),
    ("L3-loophole", "both", None, lambda c: [sym("loophole", "../victim"), reg("loophole/file", b"x")],
     R("loophole/file")),
    ("L3-deep-loophole", "both", None,
     lambda c: [dir_("dir"), sym("dir/loophole", "../../victim"), reg("dir/loophole/newdir/newfile", b"x")],
     R("dir/loophole/newdir/newfile")),
    ("L3-hardlink-long", "both", None, lambda c: [hard("x", "../../../../../../../../etc/passwd")],
     R("x")),
    ("L4-go-up", "both", None,
     lambda c: [dir_("inner"), sym("inner/go_up", ".."), sym("inner/go_up/escape", "../victim"),
                reg("inner/go_up/escape/newfile", b"x")], R("inner/go_up/escape/newfile")),
    ("L4-cross-layer", "flat", lambda c: [sym("x", "../../../../victim")],
     lambda c: [reg("x/authorized_keys", b"key")], R("x/authorized_keys")),
    ("L4-cross-layer", "overlay", None, lambda c: [reg("x/authorized_keys", b"key")],
     lexists("x/authorized_keys")),
    ("L5-through-absolute", "flat", lambda c: [dir_("var"), sym("var/run", "/run")],
     lambda c: [reg("var/run/existing/non-existing/file", b"f")],
     lambda d, c: (d / "run/existing/non-existing/file").read_bytes() == b"f"
     and not os.path.exists("/run/existing")),
    ("L6-escape-then-absolute", "both", None,
     lambda c: [sym("escape", ".."), sym("absolute", "/target"), reg("escape/absolute/file", b"x")],
     R("escape/absolute/file")),
    ("L7-hardlink-parent", "both", None, lambda c: [hard("a", "../victim/hello")], R("a")),
    ("L7-hardlink-absolute", "both", None, lambda c: [hard("b", "/etc/shadow")], R("b")),
    ("L7-hardlink-deep", "both", None, lambda c: [hard("c", "../../../../etc/passwd")], R("c")),
    ("L7-hardlink-via-abs-symlink", "both", None, lambda c: [sym("lnk", "/etc"), hard("x", "lnk/shadow")],
     R("x")),
    ("L7-hardlink-via-rel-symlink", "both", None, lambda c: [sym("lnk", "../victim"), hard("x", "lnk/hello")],
     R("x")),
    ("L8-hardlink-to-symlink", "both", None,
     lambda c: [sym("passwd", "../victim/hello"), hard("hl", "passwd", mode=0o777),
                sym("shadow", "/etc/shadow"), hard("hl2", "shadow", mode=0o777)],
     lambda d, c: os.path.islink(d / "hl") and os.path.samestat(os.lstat(d / "hl"), os.lstat(d / "passwd"))
     and os.path.islink(d / "hl2")),
    ("L9-link-to-root", "both", None, lambda c: [sym("foo", "/"), reg("foo/file", b"in root")],
     lambda d, c: (d / "file").read_bytes() == b"in root"),
    ("L9-dir-over-symlink", "flat", lambda c: [sym("localetc", "/etc")],
     lambda c: [dir_("localetc"), reg("localetc/passwd", b"mine")],
     lambda d, c: not os.path.islink(d / "localetc") and (d / "localetc/passwd").read_bytes() == b"mine"),
    ("L9-name-dotdot", "both", None, lambda c: [sym("..", "x")], R("..")),
    ("L9-name-empty", "both", None, lambda c: [sym("", "x")], R("")),
    ("L9-name-sub-dotdot", "flat", lambda c: [sym("localetc", "/etc")], lambda c: [sym("localetc/sub/..", "/")],
     R("localetc/sub/..")),
    ("L9-hardlink-to-root", "both", None, lambda c: [hard("x", ".")], R("x")),
    ("L9-hardlink-to-nothing", "both", None, lambda c: [hard("x", "")], R("x")),
    ("L9-symlink-to-nothing", "both", None, lambda c: [sym("x", "")], R("x")),
    ("L10-wh-dot", "both", lambda c: [reg("keep", b"k")], lambda c: [reg(".wh..")], R(".wh..")),
    ("L10-wh-dotdot", "both", lambda c: [reg("keep", b"k")], lambda c: [reg(".wh...")], R(".wh...")),
    ("L10-wh-dot-in-dir", "both", lambda c: [reg("etc/keep", b"k")], lambda c: [reg("etc/.wh..")],
     R("etc/.wh..")),
    ("L10-wh-bare", "both", lambda c: [reg("keep", b"k")], lambda c: [reg(".wh.")], R(".wh.")),
    ("L11-whiteout-through-link", "flat", lambda c: [sym("localetc", c), reg(c.lstrip("/") + "/x", b"in")],
     lambda c: [whiteout("localetc/x")], absent("{c}/x")),
    ("L11-whiteout-the-link", "flat", lambda c: [sym("localetc", c), reg(c.lstrip("/") + "/x", b"in")],
     lambda c: [whiteout("localetc")], lambda d, c: absent("localetc")(d, c) and lexists("{c}/x")(d, c)),
    ("L11-dead-link-parent", "flat", lambda c: [sym("dead", "/nonexistent")], lambda c: [whiteout("dead/x")],
     lambda d, c: absent("nonexistent")(d, c) and os.path.islink(d / "dead")),
    ("L11-relative-whiteout", "both", lambda c: [reg("etc/x", b"x")], lambda c: [reg("dne/../.wh.etc")],
     R("dne/../.wh.etc")),
    ("L11-overlay-whiteout-through-link", "overlay", None, lambda c: [whiteout("localetc/x")],
     lambda d, c: stat.S_ISCHR(os.lstat(d / "localetc/x").st_mode)),
    ("L12-opaque-last", "flat", lambda c: [reg("dir/b", b"b")], lambda c: [reg("dir/a", b"a"), opaque("dir")],
     lambda d, c: os.listdir(d / "dir") == ["a"]),
    ("L12-opaque-last", "overlay", None, lambda c: [reg("dir/a", b"a"), opaque("dir")],
     lambda d, c: os.listdir(d / "dir") == ["a"] and os.getxattr(d / "dir", "trusted.overlay.opaque") == b"y"),
    ("L13-valid-nodes", "both", None, lambda c: [dev("sda", "b", 8, 0), dev("mem", "c", 1, 1), fifo("f")],
     lambda d, c: os.lstat(d / "sda").st_rdev == os.makedev(8, 0) and stat.S_ISBLK(os.lstat(d / "sda").st_mode)
     and os.lstat(d / "mem").st_rdev == os.makedev(1, 1) and stat.S_ISFIFO(os.lstat(d / "f").st_mode)),
    ("L13-huge-major", "both", None, lambda c: [dev("big", "c", 1 << 32, 0)], R("big")),
    ("L13-negative-major", "both", None, lambda c: [dev("neg", "c", -1, 0)], R("neg")),
    ("L13-negative-minor", "both", None, lambda c: [dev("neg", "b", 8, -5)], R("neg")),
    ("L14-setuid-and-caps", "both", None,
     lambda c: [reg("bin/busybox", b"\x7fELF", mode=0o4755, xattrs={"security.capability": CAP})],
     lambda d, c: stat.S_IMODE(os.lstat(d / "bin/busybox").st_mode) == 0o4755
     and os.getxattr(d / "bin/busybox", "security.capability") == CAP),
    ("L15-no-trusted-xattrs", "both", None,
     lambda c: [reg("f", b"f", xattrs={"trusted.overlay.opaque": b"y", "trusted.x": b"1", "user.ok": b"1",
                                       "security.selinux": b"system_u:object_r:bin_t:s0"}),
                dir_("d", xattrs={"trusted.overlay.opaque": b"y", "trusted.overlay.redirect": b"/etc"})],
     lambda d, c: os.listxattr(d / "f") == ["user.ok"] and os.listxattr(d / "d") == []),
]


def params() -> list:
    out = []
    for case_id, mode, pre, attack, expect in CASES:
        for flatten in ((False, True) if mode == "both" else (mode == "flat",)):
            out.append(pytest.param(flatten, pre, attack, expect, id=f"{case_id}-{'flat' if flatten else 'overlay'}"))
    return out


def pack(members):
    """PAX (xattrs travel in it); GNU for device numbers only base-256 can hold."""
    try:
        return tar_bytes(*members)
    except ValueError:
        return gnu_tar_bytes(*members)


@pytest.mark.parametrize("flatten,pre,attack,expect", params())
def test_hostile_layer(sandbox, flatten, pre, attack, expect):
    base, canary = sandbox
    dest = base / "dest"
    if flatten and pre:
        layers.unpack(io.BytesIO(pack(pre(canary))), dest, flatten=True)
    tar = pack(attack(canary))
    if isinstance(expect, tuple):
        with pytest.raises(MinidockerError, match="layer entry " + re.escape(repr(expect[1]))):
            layers.unpack(io.BytesIO(tar), dest, flatten=flatten)
        if flatten and pre:
            assert any(os.scandir(dest))   # what was there is still there
    else:
        layers.unpack(io.BytesIO(tar), dest, flatten=flatten)
        assert expect(dest, canary)


def test_refusal_happens_before_anything_is_written_outside_even_gzip(sandbox):
    base, _ = sandbox
    tar = tar_bytes(reg("ok", b"1"), sym("l", "../victim"), reg("l/pwned", b"x"))
    with pytest.raises(MinidockerError, match="leads outside"):
        layers.unpack(io.BytesIO(layers.gzip.compress(tar)), base / "dest")


# -- L22: the primitive, against the kernel's openat2(RESOLVE_IN_ROOT) ---------------

TREE = [dir_("etc"), reg("etc/passwd", b"p"), dir_("a/b/c"), sym("abs", "/etc"), sym("rel", "a/b"),
        sym("chain1", "chain2"), sym("chain2", "/a/b/c"), sym("up", "a/b/../../etc"), sym("loop", "loop"),
        sym("esc", "../../.."), sym("a/b/esc", "../../../etc"), sym("dotdotabs", "/../../etc"),
        sym("dead", "/nowhere"), reg("file", b"f")]


@pytest.mark.parametrize("path,expect", [
    ("etc", "etc"), ("abs", "etc"), ("rel/c", "a/b/c"), ("chain1", "a/b/c"), ("up", "etc"),
    ("a/b/c", "a/b/c"), ("abs/../a", "a"),
    ("esc", "refused"), ("a/b/esc", "refused"), ("dotdotabs", "refused"),
    ("loop", "too many"), ("dead", None), ("missing/x", None), ("file", "not a directory"),
])
def test_walker_agrees_with_openat2_resolve_in_root(tmp_path, path, expect):
    root = tmp_path / "root"
    layers.unpack(io.BytesIO(tar_bytes(*TREE)), root)
    with Confined(root) as c:
        parts = path.split("/")
        # the walker refuses '..' in names; follow them the kernel's way in the oracle only
        kernel = None
        try:
            kfd = resolve_in_root(c.fd, path)
            kernel = os.fstat(kfd)
            os.close(kfd)
        except OSError:
            pass
        if expect is None:
            assert c.dir(parts, create=False) is None and kernel is None
        elif expect in ("refused", "too many", "not a directory"):
            with pytest.raises(MinidockerError, match=expect if expect != "refused" else "outside"):
                c.dir(parts, create=False)
            if expect == "refused":   # the kernel clamps the same path inside the root
                assert kernel is not None and kernel.st_dev == os.lstat(root).st_dev
                assert os.path.samestat(kernel, os.lstat(root / "etc")) or os.path.samestat(kernel, os.lstat(root))
        else:
            fd = c.dir([p for p in parts if p != ".."] if ".." not in parts else parts[:1], create=False) \
                if ".." not in parts else None
            if fd is not None:
                assert os.path.samestat(os.fstat(fd), os.lstat(root / expect))
            assert os.path.samestat(kernel, os.lstat(root / expect))


def test_replacing_never_deletes_through_a_mount(tmp_path):
    """A flattened layer that replaces a mounted directory stops; the mount's files survive."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    (dest / "mnt").mkdir(parents=True)
    outside.mkdir()
    (outside / "precious").write_bytes(b"keep")
    import subprocess
    subprocess.run(["mount", "--bind", outside, dest / "mnt"], check=True)
    try:
        with pytest.raises(MinidockerError, match="mount point"):
            layers.unpack(io.BytesIO(tar_bytes(reg("mnt", b"file over a mounted dir"))), dest, flatten=True)
        with pytest.raises(MinidockerError, match="mount point"):
            layers.unpack(io.BytesIO(tar_bytes(whiteout("mnt"))), dest, flatten=True)
    finally:
        subprocess.run(["umount", dest / "mnt"], check=True)
    assert (outside / "precious").read_bytes() == b"keep"
    assert mounts_under(tmp_path) == []


def test_no_descriptor_outlives_an_unpack_refused_or_not(tmp_path):
    before = sorted(os.listdir("/proc/self/fd"))
    layers.unpack(io.BytesIO(tar_bytes(*[reg(f"d{i}/f", b"x") for i in range(50)], sym("l", "d1"),
                                       reg("l/g", b"y"), whiteout("d2"))), tmp_path / "ok")
    for bad in ([sym("up", ".."), sym("up2", "up/.."), reg("up2/x")], [sym("a", "b"), sym("b", "a"), reg("a/x")]):
        with pytest.raises(MinidockerError):
            layers.unpack(io.BytesIO(tar_bytes(*bad)), tmp_path / "bad")
    assert sorted(os.listdir("/proc/self/fd")) == before
