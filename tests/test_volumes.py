"""Volumes: -v, --mount, --tmpfs parsed as docker does; named volumes; mounts resolved in root.

The container tests run real containers with minidocker's runtime on a
private busybox rootfs, with mounts from volumes.oci_mounts: what the
engine hands the runtime at each start.
"""
import os

import pytest

from minidocker import volumes
from minidocker.errors import Conflict, MinidockerError, NotFound
from minidocker.files import write_json

from helpers import md
from test_runtime import Env, make_rootfs, reaping


# -- parsing -------------------------------------------------------------------

def test_parse_the_three_flags(tmp_path):
    specs = volumes.parse([f"{tmp_path}:/data:ro", "cache:/var/cache", "/anon"],
                          [f"type=bind,source={tmp_path},target=/b,readonly", "type=volume,src=v2,dst=/v2",
                           "type=tmpfs,target=/t,tmpfs-size=1m"], ["/run:size=64k,mode=1777"])
    kinds = [(s["Type"], s["Target"], s["ReadOnly"]) for s in specs]
    assert kinds == [("bind", "/data", True), ("volume", "/var/cache", False), ("volume", "/anon", False),
                     ("bind", "/b", True), ("volume", "/v2", False), ("tmpfs", "/t", False),
                     ("tmpfs", "/run", False)]
    assert specs[2]["Anonymous"] and len(specs[2]["Source"]) == 64
    assert specs[5]["TmpfsOptions"] == ["size=1m"] and specs[6]["TmpfsOptions"] == ["size=64k", "mode=1777"]


@pytest.mark.parametrize("v,m,t,message", [
    (["/does/not/exist/md:/data"], [], [], "does not exist"),
    (["./rel:/data"], [], [], "relative path"),
    (["rel/dir:/data"], [], [], "relative path"),
    (["{tmp}:/proc"], [], [], "/proc"),
    (["{tmp}:/proc/sys/kernel"], [], [], "/proc"),
    (["{tmp}:/"], [], [], "destination can't be '/'"),
    (["{tmp}:data"], [], [], "must be absolute"),
    (["{tmp}:/data:rx"], [], [], "unknown option"),
    (["{tmp}:/a", "{tmp}:/a"], [], [], "Duplicate mount point"),
    (["bad$name:/a"], [], [], "invalid characters"),
    ([], ["type=bind,target=/x"], [], "needs a source"),
    ([], ["type=nfs,src=a,target=/x"], [], "unknown type"),
    ([], ["type=bind,source={tmp},target=/x,colour=red"], [], "unexpected key"),
    ([], ["type=volume,src=a,target=/x,readonly=perhaps"], [], "not a boolean"),
    ([], [], ["/t:size=1m,exec,bogus"], "unknown tmpfs option"),
    ([], [], ["/proc/x"], "/proc"),
])
def test_bad_mount_flags_are_clear_exit_125(tmp_path, v, m, t, message):
    fill = lambda items: [i.replace("{tmp}", str(tmp_path)) for i in items]  # noqa: E731
    with pytest.raises(MinidockerError) as e:
        volumes.parse(fill(v), fill(m), fill(t))
    assert e.value.exit_code == 125 and message in str(e.value)
    assert os.listdir(tmp_path) == []   # nothing created on the host


def test_the_store_cannot_be_bound_into_a_container(store):
    with pytest.raises(MinidockerError, match="store"):
        volumes.parse([f"{store.root}/images:/s"], store=store)
    assert volumes.parse(["/:/host:ro"], store=store)[0]["Source"] == "/"   # explicit is allowed (R14)


# -- named volumes ---------------------------------------------------------------

def test_volume_create_ls_inspect_rm_and_in_use(store):
    v = volumes.create(store, "data", labels={"a": "b"})
    assert v["Name"] == "data" and os.path.isdir(v["Mountpoint"]) and v["Labels"] == {"a": "b"}
    assert volumes.create(store, "data")["CreatedAt"] == v["CreatedAt"]   # idempotent, as docker
    assert [x["Name"] for x in volumes.list_volumes(store)] == ["data"]
    cdir = store.root / "containers" / ("c" * 64)
    cdir.mkdir()
    write_json(cdir / "container.json", {"HostConfig": {"Mounts": [{"Type": "volume", "Source": "data"}]}})
    with pytest.raises(Conflict, match="in use"):
        volumes.remove(store, "data")
    (cdir / "container.json").unlink()
    cdir.rmdir()
    volumes.remove(store, "data")
    assert volumes.list_volumes(store) == []
    with pytest.raises(NotFound):
        volumes.inspect(store, "data")
    with pytest.raises(MinidockerError):
        volumes.create(store, "../escape")
    assert not (store.root / "escape").exists()


def test_prune_removes_unused_anonymous_volumes_only(store):
    volumes.create(store, "keep")
    anon = volumes.create(store, anonymous=True)["Name"]
    assert volumes.prune(store) == [anon]
    assert [v["Name"] for v in volumes.list_volumes(store)] == ["keep"]


def test_volume_verbs_on_the_command_line(store_root):
    assert md("volume", "create", "web", root=store_root, check=True).stdout.strip() == "web"
    assert "web" in md("volume", "ls", root=store_root, check=True).stdout
    assert '"Name": "web"' in md("volume", "inspect", "web", root=store_root, check=True).stdout
    r = md("volume", "rm", "nope", root=store_root)
    assert r.returncode == 1 and "No such volume: nope" in r.stderr and "Traceback" not in r.stderr
    assert md("volume", "rm", "web", root=store_root, check=True).stdout.strip() == "web"
    assert md("volume", "ls", "-q", root=store_root, check=True).stdout.strip() == ""


# -- in real containers -----------------------------------------------------------

@pytest.fixture
def env(tmp_path):
    with reaping(Env(tmp_path, make_rootfs(tmp_path / "image"))) as e:
        yield e


def run(env, store, args, specs):
    mounts = volumes.oci_mounts(store, specs, env.rootfs)
    return env.run(args, mounts=mounts)


@pytest.mark.root
def test_bind_ro_named_volume_filled_from_the_image_and_tmpfs(env, store, tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    (host / "f").write_text("from host")
    (env.rootfs / "etc" / "app").mkdir()
    (env.rootfs / "etc" / "app" / "conf").write_text("from image")
    specs = volumes.parse([f"{host}:/h:ro", "appconf:/etc/app"], [], ["/scratch:size=1m"])
    script = ("exec 2>&1; cat /h/f; echo; touch /h/x; cat /etc/app/conf; echo; echo new > /etc/app/added; "
              "grep ' /scratch ' /proc/self/mountinfo")
    rc, out, _ = run(env, store, ["sh", "-c", script], specs)
    assert rc == 0
    assert "from host" in out and "Read-only file system" in out and "from image" in out
    assert "tmpfs" in out and "size=1024k" in out and "noexec" in out
    data = store.root / "volumes" / "appconf" / "_data"
    assert sorted(os.listdir(data)) == ["added", "conf"] and os.listdir(host) == ["f"]
    # second start: the volume is not empty any more, so nothing is copied over it
    (env.rootfs / "etc" / "app" / "conf").write_text("image changed")
    rc, out, _ = run(env, store, ["cat", "/etc/app/conf", "/etc/app/added"], specs)
    assert out == "from imagenew\n"


@pytest.mark.root
@pytest.mark.parametrize("link", ["../../../../../{victim}", "/{victim}", "../../../../.."])
def test_a_symlinked_container_path_never_mounts_outside_the_root(env, store, tmp_path, link):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "hello").write_text("keep me")
    target = link.replace("{victim}", str(victim).lstrip("/"))
    os.symlink(target, env.rootfs / "data")
    src = tmp_path / "src"
    src.mkdir()
    (src / "payload").write_text("p")
    before = open("/proc/self/mountinfo").read()
    try:
        specs = volumes.parse([f"{src}:/data"], [], [])
        rc, out, err = run(env, store, ["sh", "-c", "cat /data/payload"], specs)
    except MinidockerError as e:
        assert "destination can't be '/'" in str(e)   # /data -> ../.. resolves to the root: refused
        rc = None
    else:
        assert rc == 0 and out == "p"
        inside = env.rootfs / str(victim).lstrip("/")
        assert (inside / "payload").exists() is False   # the mount is gone with the container
        assert inside.is_dir()                           # ... and it landed inside the rootfs
    assert os.listdir(victim) == ["hello"] and (victim / "hello").read_text() == "keep me"
    assert open("/proc/self/mountinfo").read().count(str(victim)) == before.count(str(victim))


@pytest.mark.root
def test_volume_fill_follows_symlinks_only_inside_the_root(env, store, tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key").write_text("host secret")
    os.symlink(str(secret), env.rootfs / "conf")   # /conf -> /<tmp>/secret, outside if followed on the host
    specs = volumes.parse(["confvol:/conf"], [], [])
    run(env, store, ["true"], specs)
    data = store.root / "volumes" / "confvol" / "_data"
    assert os.listdir(data) == []


def test_resolve_in_root_clamps(tmp_path):
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    os.symlink("../../../../etc", root / "up")
    os.symlink("/etc", root / "abs")
    assert volumes.resolve_in_root(str(root), "/up/x") == "/etc/x"
    assert volumes.resolve_in_root(str(root), "/abs/y/z") == "/etc/y/z"
    assert volumes.resolve_in_root(str(root), "/../../new") == "/new"
