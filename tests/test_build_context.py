"""COPY's sources without containers: one walk gives the cache key and, on a miss, the tar."""
import io
import os
import socket
import tarfile

import pytest

from minidocker.buildcontext import Ignore, Sources
from minidocker.errors import MinidockerError


@pytest.fixture
def ctx(tmp_path):
    d = tmp_path / "d"
    (d / "sub").mkdir(parents=True)
    (d / "a").write_text("aaa\n")
    os.chmod(d / "a", 0o640)
    os.link(d / "a", d / "b")
    os.symlink("a", d / "c")
    os.mkfifo(d / "fifo")
    (d / "sub" / "e").write_text("e\n")
    (d / "sub" / "debug.log").write_text("ignored\n")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(d / "sock"))   # nothing a layer can hold: left out
    (tmp_path / ".dockerignore").write_text("**/*.log\n")
    return tmp_path


def sources(ctx, patterns=("d",), **kw):
    return Sources(str(ctx), list(patterns), "app", False, ignore=Ignore(str(ctx)), **kw)


def test_the_tar_holds_the_members_the_digest_covers(ctx):
    src = sources(ctx, owner=(1000, 50))
    key = src.digest()
    buf = io.BytesIO()
    assert src.digest(buf) == key
    buf.seek(0)
    with tarfile.open(fileobj=buf) as t:
        members = {m.name: m for m in t}
        assert t.extractfile(members["app/a"]).read() == b"aaa\n"
    assert list(members) == ["app", "app/a", "app/b", "app/c", "app/fifo", "app/sub", "app/sub/e"]
    assert members["app/b"].islnk() and members["app/b"].linkname == "app/a"
    assert members["app/c"].issym() and members["app/c"].linkname == "a"
    assert members["app/fifo"].isfifo() and members["app/a"].mode == 0o640
    assert {(m.uid, m.gid, m.uname) for m in members.values()} == {(1000, 50, "")}


def test_the_digest_changes_with_content_mode_links_and_owner_not_times(ctx):
    key = sources(ctx).digest()
    os.utime(ctx / "d" / "sub" / "e", (1, 1))
    (ctx / "d" / "sub" / "debug.log").write_text("ignored, whatever it holds\n")
    assert sources(ctx).digest() == key
    assert sources(ctx, owner=(1, 1)).digest() != key
    changes = [lambda: (ctx / "d" / "sub" / "e").write_text("E\n"),   # same size
               lambda: os.chmod(ctx / "d" / "a", 0o600),
               lambda: (os.unlink(ctx / "d" / "c"), os.symlink("b", ctx / "d" / "c")),
               lambda: (os.unlink(ctx / "d" / "b"), (ctx / "d" / "b").write_text("aaa\n"))]   # no longer a hard link
    seen = {key}
    for change in changes:
        change()
        key = sources(ctx).digest()
        assert key not in seen
        seen.add(key)


def test_sources_are_checked_before_anything_is_hashed(ctx):
    with pytest.raises(MinidockerError, match="outside the build context"):
        sources(ctx, ["../x"])
    with pytest.raises(MinidockerError, match="no such file"):
        sources(ctx, ["d/sub/debug.log"])
