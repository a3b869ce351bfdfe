"""build with real containers: every instruction, the cache, multi-stage, and failures that leave nothing."""
import io
import os
import tarfile

import pytest

from helpers import md
from minidocker import build, containers, images
from minidocker.bootstrap import bootstrap
from minidocker.errors import MinidockerError

pytestmark = pytest.mark.root

DOCKERFILE = """\
# everything a small app needs
ARG BASE=busybox
FROM ${BASE} AS base
ARG WHO=world
ENV GREETING="hello $WHO" \\
    MODE=test
WORKDIR /app
COPY hello.txt src ./
ADD files.tar.gz /opt/files/
RUN echo "$GREETING from $(pwd)" > greeting && rm /etc/motd
RUN ["sh", "-c", "echo exec form > /app/exec"]
LABEL org.example.name=demo
EXPOSE 8080/tcp
USER nobody
ENTRYPOINT ["sh", "-c"]
CMD ["cat /app/greeting /app/hello.txt /app/lib/util.txt /opt/files/inner.txt /app/exec; id -un; pwd; ls /app"]
"""


@pytest.fixture
def ctx(store, tmp_path):
    bootstrap(store)
    d = tmp_path / "ctx"
    (d / "src" / "lib").mkdir(parents=True)
    (d / "hello.txt").write_text("hello file\n")
    (d / "src" / "lib" / "util.txt").write_text("util\n")
    (d / "src" / "debug.log").write_text("ignored\n")
    (d / ".dockerignore").write_text("**/*.log\n")
    data = b"inner\n"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("./inner.txt")
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    (d / "files.tar.gz").write_bytes(buf.getvalue())
    (d / "Dockerfile").write_text(DOCKERFILE)
    yield d
    for c in containers.all_containers(store):
        c.remove(force=True)


def quiet(lines):
    return lambda line: lines.append(line)


def run_image(store, ref, command=None, entrypoint=None):
    c = containers.create(store, ref, command, entrypoint=entrypoint, network="none")
    c.start().close()
    code = c.wait()
    out = c.logs()
    c.remove()
    return code, out


def assert_nothing_left(store):
    assert containers.all_containers(store) == []
    assert not (store.root / "build").exists() or os.listdir(store.root / "build") == []
    assert all(store.root.as_posix() not in line for line in open("/proc/self/mountinfo"))


def test_every_instruction(store, ctx):
    lines = []
    image = build.build(store, ctx, tags=["demo:1", "demo:latest"], build_args={"WHO": "class"}, out=quiet(lines), network="none")
    assert sorted(image.familiar_tags) == ["demo:1", "demo:latest"]
    code, out = run_image(store, "demo:1")
    assert code == 0, out
    assert out == ("hello class from /app\nhello file\nutil\ninner\nexec form\nnobody\n/app\n"
                   "exec\ngreeting\nhello.txt\nlib\n")   # no debug.log: .dockerignore
    cfg = image.config["config"]
    assert cfg["Labels"] == {"org.example.name": "demo"} and cfg["ExposedPorts"] == {"8080/tcp": {}}
    assert "GREETING=hello class" in cfg["Env"] and "MODE=test" in cfg["Env"] and cfg["User"] == "nobody"
    assert cfg["WorkingDir"] == "/app" and cfg["Entrypoint"] == ["sh", "-c"]
    assert not any(e.startswith("WHO=") for e in cfg["Env"])   # build args are not kept in the image
    # one layer per COPY, ADD and RUN; empty_layer entries for the rest, as docker
    base = images.get(store, "busybox")
    assert len(image.layers) == len(base.layers) + 4
    history = image.config["history"]
    assert len(image.diff_ids) == sum(not h.get("empty_layer") for h in history)
    assert history[len(base.config["history"]) + 4]["created_by"].startswith('|1 WHO=class /bin/sh -c echo')
    assert "Step 2/14 : FROM ${BASE} AS base" in lines and lines[-2].startswith("Step 14/14 : CMD")
    code, out = run_image(store, "demo:1", ["test -e /etc/motd || echo motd gone"])
    assert out == "motd gone\n"


def test_a_second_build_comes_from_the_cache_and_a_changed_file_rebuilds_from_its_step(store, ctx):
    first = build.build(store, ctx, tags=["c:1"], out=lambda line: None, network="none")
    index = os.stat(store.layout / "index.json")
    written = (index.st_ino, index.st_mtime_ns)
    lines = []
    again = build.build(store, ctx, tags=["c:1"], out=quiet(lines), network="none")
    assert again.id == first.id and again.familiar_tags == ["c:1"]
    index = os.stat(store.layout / "index.json")
    assert (index.st_ino, index.st_mtime_ns) == written   # not even rewritten
    assert lines.count(" ---> Using cache") == 11   # every step after FROM but ARG
    os.utime(ctx / "hello.txt", (1, 1))   # a new mtime only: still cached, as in docker
    lines.clear()
    assert build.build(store, ctx, tags=["c:1"], out=quiet(lines), network="none").id == first.id
    (ctx / "hello.txt").write_text("changed\n")
    lines.clear()
    changed = build.build(store, ctx, tags=["c:1"], out=quiet(lines), network="none")
    assert changed.id != first.id
    assert lines.count(" ---> Using cache") == 2   # ENV, WORKDIR; COPY and all after run again
    assert changed.diff_ids[:len(first.diff_ids) - 4] == first.diff_ids[:-4]
    # the cache as a tree: both COPY steps hang under the same WORKDIR image
    from minidocker import buildcache
    steps = [(parent, step) for parent, step, _ in buildcache.entries(store)]
    copies = [parent for parent, step in steps if step.startswith("COPY hello.txt src ./")]
    assert len(copies) == 2 and copies[0] == copies[1]
    dot = buildcache.graph(store).source
    assert "COPY hello.txt src ./" in dot and "c:1" in dot
    lines.clear()
    build.build(store, ctx, no_cache=True, out=quiet(lines), network="none")
    assert " ---> Using cache" not in lines


def test_the_copy_cache_key_is_what_the_sources_hold_not_their_times(store, ctx):
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY hello.txt src /app/\nADD files.tar.gz /opt/\n")
    first = build.build(store, ctx, out=lambda line: None, network="none")

    def rebuild():
        lines = []
        image = build.build(store, ctx, out=quiet(lines), network="none")
        return image.id, lines.count(" ---> Using cache")

    assert rebuild() == (first.id, 2)
    (ctx / "src" / "debug.log").write_text("ignored, whatever it holds\n")   # .dockerignore'd
    os.utime(ctx / "src" / "lib" / "util.txt", (1, 1))
    assert rebuild() == (first.id, 2)
    seen = {first.id}
    for path in (ctx / "hello.txt", ctx / "src" / "lib" / "util.txt"):   # a named file, a file in a directory
        st = path.stat()
        path.write_text(path.read_text().upper())   # same size, same mtime: only the bytes tell
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        image_id, cached = rebuild()
        assert cached == 0 and image_id not in seen
        seen.add(image_id)
    os.chmod(ctx / "hello.txt", 0o600)
    image_id, cached = rebuild()
    assert cached == 0 and image_id not in seen
    assert run_image(store, image_id, ["cat", "/app/hello.txt", "/app/lib/util.txt"]) == (0, "HELLO FILE\nUTIL\n")
    buf = io.BytesIO()   # the archive ADD unpacks counts by its bytes
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("./inner.txt")
        info.size = 6
        t.addfile(info, io.BytesIO(b"INNER\n"))
    (ctx / "files.tar.gz").write_bytes(buf.getvalue())
    image_id, cached = rebuild()
    assert cached == 1 and image_id not in seen


def test_a_step_that_changes_nothing_adds_no_layer(store, ctx):
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN true\nRUN echo x > /x\n")
    image = build.build(store, ctx, out=lambda line: None, network="none")
    base = images.get(store, "busybox")
    assert len(image.layers) == len(base.layers) + 1
    assert [h.get("empty_layer", False) for h in image.config["history"][-2:]] == [True, False]


def test_multi_stage_copies_from_a_named_or_numbered_stage(store, ctx):
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS builder\nRUN mkdir /out && echo built > /out/app && ln -s /out/app /out/link\n"
        "FROM busybox\nCOPY --from=builder /out/app /bin/app.txt\nCOPY --from=0 --chown=1000:50 /out/ /copy/\n"
        "COPY --from=busybox /etc/passwd /copy/passwd\n")
    image = build.build(store, ctx, tags=["multi"], out=lambda line: None, network="none")
    assert len(image.layers) == len(images.get(store, "busybox").layers) + 3   # not the builder's RUN layer
    code, out = run_image(store, "multi", ["sh", "-c", "cat /bin/app.txt; readlink /copy/link; ls /copy; "
                                           "stat -c %u:%g /copy/app /bin/app.txt"])
    assert out == "built\n/out/app\napp\nlink\npasswd\n1000:50\n0:0\n"


def test_from_scratch(store, ctx):
    (ctx / "Dockerfile").write_text('FROM scratch\nCOPY --from=busybox /bin/busybox /bin/\nCOPY hello.txt /\n'
                                    'CMD ["/bin/busybox", "cat", "/hello.txt"]\n')
    image = build.build(store, ctx, tags=["tiny"], out=lambda line: None, network="none")
    assert len(image.layers) == 2
    assert run_image(store, "tiny") == (0, "hello file\n")


def test_dockerfile_elsewhere_with_f(store, ctx, tmp_path):
    other = tmp_path / "Other.dockerfile"
    other.write_text("FROM busybox\nCOPY hello.txt /\n")
    image = build.build(store, ctx, dockerfile=other, out=lambda line: None, network="none")
    assert run_image(store, image.id, ["cat", "/hello.txt"]) == (0, "hello file\n")


def test_a_failed_run_names_step_line_and_code_and_leaves_nothing(store, ctx, store_root):
    (ctx / "Dockerfile").write_text("FROM busybox\nCOPY hello.txt /\n\nRUN echo partial > /p && echo said && exit 3\n")
    index = store.index()
    with pytest.raises(MinidockerError) as e:
        build.build(store, ctx, tags=["broken"], out=lambda line: None, network="none")
    assert str(e.value) == "Dockerfile line 4: RUN echo partial > /p && echo said && exit 3: the command returned a non-zero code: 3"
    assert store.index() == index
    assert_nothing_left(store)
    r = md("build", "--network", "none", "-t", "broken", ctx, root=store_root)
    assert r.returncode == 1 and "Step 3/3 : RUN" in r.stdout and "Traceback" not in r.stderr
    assert r.stdout.splitlines()[2:4] == ["Step 2/3 : COPY hello.txt /", " ---> Using cache"], r.stdout
    assert r.stdout.splitlines()[-1] == "said"   # the step's own output, shown as it ran
    assert r.stderr.strip().endswith("returned a non-zero code: 3")
    assert_nothing_left(store)


@pytest.mark.parametrize("dockerfile, message", [
    ("FROM busybox\nCOPY missing.txt /\n", "COPY failed: missing.txt: no such file or directory in the build context"),
    ("FROM busybox\nCOPY ../outside /\n", "COPY failed: ../outside is outside the build context"),
    ("FROM busybox\nCOPY /etc/passwd /\n", "COPY failed: /etc/passwd is outside the build context"),
    ("FROM busybox\nCOPY escape /\n", "COPY failed: escape points outside the build context"),
    ("FROM busybox\nCOPY src/debug.log /\n", "no such file or directory in the build context"),
    ("FROM busybox\nRUN true\nBOGUS x\n", "Dockerfile parse error line 3: unknown instruction: BOGUS"),
    ("FROM busybox\nENV\n", "Dockerfile parse error line 2: ENV requires at least one argument"),
    ("FROM nosuchimage:1\n", "base image nosuchimage:1: no such image here"),
    ("FROM scratch\nRUN true\n", "RUN needs a shell"),
    ("FROM busybox\nCOPY --chown=bin hello.txt /\n", "--chown=bin: minidocker takes numeric ids only"),
])
def test_bad_input_is_a_clear_error_and_leaves_nothing(store, ctx, store_root, dockerfile, message, tmp_path):
    (tmp_path / "secret").write_text("host secret\n")
    os.symlink(tmp_path / "secret", ctx / "escape")
    (ctx / "Dockerfile").write_text(dockerfile)
    index, blobs = store.index(), set(os.listdir(store.blobs))
    with pytest.raises(MinidockerError, match=message.replace("(", r"\(")):
        build.build(store, ctx, tags=["bad"], out=lambda line: None, network="none")
    assert store.index() == index and set(os.listdir(store.blobs)) == blobs
    assert_nothing_left(store)
    r = md("build", "--network", "none", "-t", "bad", ctx, root=store_root)
    assert r.returncode == 1 and message in r.stderr and "Traceback" not in r.stderr


def test_cli_build_args_quiet_and_file(store, ctx, store_root):
    (ctx / "Other").write_text('FROM busybox\nARG WHO\nRUN echo "hi $WHO" > /who\nCMD ["cat", "/who"]\n')
    r = md("build", "--network", "none", "-q", "-f", ctx / "Other", "--build-arg", "WHO=cli", "-t", "cli:1", ctx,
           root=store_root, check=True)
    assert r.stdout.strip() == images.get(store, "cli:1").id
    assert run_image(store, "cli:1") == (0, "hi cli\n")
    r = md("build", "--build-arg", "=x", ctx, root=store_root)
    assert r.returncode == 125 and "invalid --build-arg" in r.stderr
    r = md("build", "-t", "Bad:Tag", ctx, root=store_root)
    assert r.returncode == 125 and "invalid tag" in r.stderr
    r = md("build", ctx / "nosuchdir", root=store_root)
    assert r.returncode == 1 and "unable to prepare context" in r.stderr and "Traceback" not in r.stderr
