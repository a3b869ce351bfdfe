"""The registry client against Debian's docker-registry, with skopeo and umoci as oracles."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minidocker import auth, images, oci, pull, push

from minidocker.errors import MinidockerError, NotFound
from minidocker.layers import open_layer, unpack
from minidocker.registry import ACCEPT, Client, base_url
from minidocker.store import Store
from registry_server import (PASSWORD, USER, build_image, htpasswd_registry, podman, registry, skopeo,  # noqa: F401
                             token_registry)


def blob_names(store):
    return sorted(p.name for p in store.blobs.iterdir())


@pytest.fixture(scope="module")
def busybox(tmp_path_factory):
    """A small busybox image of our own (two layers, a whiteout, a setuid file) in a store of its own."""
    store = Store(tmp_path_factory.mktemp("source") / "store")
    return build_image(store, "busybox:latest")


def pushed(busybox, reg, repo="minidocker/test:v1", **kw):
    name = f"{reg.host}/{repo}"
    images.tag(busybox.store, "busybox:latest", name)
    return name, push.push(busybox.store, name, progress=False, **kw)


# -- plain HTTP only where it is safe -------------------------------------------

def test_loopback_uses_plain_http_and_everything_else_https(monkeypatch, tmp_path):
    assert base_url("127.0.0.1:5000", tmp_path) == "http://127.0.0.1:5000"
    assert base_url("127.8.9.1:80", tmp_path) == "http://127.8.9.1:80"
    assert base_url("localhost:5000", tmp_path) == "http://localhost:5000"
    assert base_url("docker.io", tmp_path) == "https://registry-1.docker.io"
    assert base_url("myregistry.example:5000", tmp_path) == "https://myregistry.example:5000"
    monkeypatch.setenv("MINIDOCKER_INSECURE_REGISTRIES", "myregistry.example:5000")
    assert base_url("myregistry.example:5000", tmp_path) == "http://myregistry.example:5000"


def test_the_accept_header_names_all_four_manifest_types():
    for media in (oci.INDEX, oci.MANIFEST, oci.DOCKER_LIST, oci.DOCKER_MANIFEST):
        assert media in ACCEPT.split(", ")


# -- push, then the real tools read what we pushed --------------------------------

@pytest.mark.slow
def test_our_push_is_what_skopeo_sees_and_copies_back(busybox, registry, tmp_path):
    name, desc = pushed(busybox, registry)
    assert desc["digest"] == busybox.manifest_desc["digest"]
    seen = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{name}").stdout)
    assert seen["Digest"] == busybox.manifest_desc["digest"]
    assert seen["Layers"] == [l["digest"] for l in busybox.layers]
    skopeo("copy", "--src-tls-verify=false", f"docker://{name}", f"oci:{tmp_path}/back:v1")
    mine = {l["digest"] for l in busybox.layers} | {busybox.id, busybox.manifest_desc["digest"]}
    assert {"sha256:" + p.name for p in (tmp_path / "back/blobs/sha256").iterdir()} == mine


@pytest.mark.slow
def test_a_chunked_push_gives_the_same_image(busybox, registry, store):
    name, desc = pushed(busybox, registry, "minidocker/chunked:v1", chunk_size=100_000)
    image = pull.pull(store, name, progress=False)
    assert image.id == busybox.id and image.manifest_desc["digest"] == desc["digest"]


@pytest.mark.slow
def test_blobs_the_registry_has_are_skipped_and_other_repositories_mounted(busybox, registry):
    name, _ = pushed(busybox, registry, "minidocker/first:v1")
    client = Client(registry.host, "minidocker/second")
    layer = busybox.layers[0]
    assert push.upload(client, busybox.store, layer, ["minidocker/first"]) == "mounted"
    assert push.upload(client, busybox.store, layer, ["minidocker/first"]) == "exists"


# -- pull what skopeo pushed ------------------------------------------------------

@pytest.mark.slow
def test_pull_of_a_skopeo_pushed_image_keeps_every_digest_and_equals_umoci_unpack(busybox, registry, store, tmp_path):
    name = f"{registry.host}/minidocker/skopeo:v1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{busybox.store.layout}:docker.io/library/busybox:latest",
           f"docker://{name}")
    raw = skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{name}").stdout.encode()
    image = pull.pull(store, name, progress=False)
    assert image.manifest_desc["digest"] == oci.sha256(raw)
    assert image.id == busybox.id
    assert [l["digest"] for l in image.layers] == [l["digest"] for l in busybox.layers]
    # Our flattened rootfs against umoci's, file by file.
    skopeo("copy", "--src-tls-verify=false", f"docker://{name}", f"oci:{tmp_path}/oci:v1")
    subprocess.run(["umoci", "unpack", "--image", f"{tmp_path}/oci:v1", str(tmp_path / "bundle")],
                   check=True, capture_output=True)
    ours = tmp_path / "ours"
    for layer in image.layers:
        with open(store.blob_path(layer["digest"]), "rb") as f:
            unpack(open_layer(f), ours, flatten=True)
    assert tree(ours) == tree(tmp_path / "bundle/rootfs")


def tree(root: Path) -> dict:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            what = os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else None
            out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, st.st_gid, what)
    return out


@pytest.mark.slow
def test_pull_of_a_multi_arch_index_picks_linux_amd64_and_works_by_index_digest(busybox, registry, store, tmp_path):
    layout = make_multi_arch_layout(busybox, tmp_path / "multi")
    name = f"{registry.host}/minidocker/multi:v1"
    skopeo("copy", "--all", "--dest-tls-verify=false", f"oci:{layout}:multi", f"docker://{name}")
    image = pull.pull(store, name, platform=("linux", "amd64", None), progress=False)
    assert image.id == busybox.id
    arm = pull.pull(store, name, platform=("linux", "arm64", "v8"), progress=False)
    assert arm.config["architecture"] == "arm64" and arm.id != busybox.id
    index_digest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    by_digest = pull.pull(store, f"{registry.host}/minidocker/multi@{index_digest}",
                          platform=("linux", "amd64", None), progress=False)
    assert by_digest.id == busybox.id
    # As docker's RepoDigests: the image is known by the digest the registry gave (the index's).
    from minidocker import images
    found = images.get(store, f"{registry.host}/minidocker/multi@{index_digest}")
    assert found.id == busybox.id and f"{registry.host}/minidocker/multi@{index_digest}" in found.repo_digests
    assert f"{registry.host}/minidocker/multi@{index_digest}" in images.inspect(found)["RepoDigests"]
    before = blob_names(store)
    with pytest.raises(MinidockerError, match="no matching manifest for linux/s390x"):
        pull.pull(store, name, platform=("linux", "s390x", None), progress=False)
    assert blob_names(store) == before


def make_multi_arch_layout(image, path: Path) -> Path:
    """An OCI layout holding an index: amd64 (our image), arm64/v8 (same layers), and an attestation."""
    import shutil
    shutil.copytree(image.store.layout / "blobs", path / "blobs")
    (path / "oci-layout").write_bytes(b'{"imageLayoutVersion":"1.0.0"}')

    def put(data: bytes, media: str, **extra) -> dict:
        (path / "blobs/sha256" / oci.sha256(data)[7:]).write_bytes(data)
        return oci.descriptor(media, data, **extra)

    config = dict(image.config, architecture="arm64", variant="v8")
    arm_config = put(oci.dumps(config), oci.CONFIG)
    arm = put(oci.dumps(dict(image.manifest, config=arm_config)), oci.MANIFEST,
              platform={"architecture": "arm64", "os": "linux", "variant": "v8"})
    amd = dict(image.manifest_desc, platform={"architecture": "amd64", "os": "linux"})
    att_config = put(b"{}", "application/vnd.oci.empty.v1+json")
    att = put(oci.dumps({"schemaVersion": 2, "mediaType": oci.MANIFEST, "config": att_config,
                         "layers": [att_config]}), oci.MANIFEST, platform={"architecture": "unknown", "os": "unknown"},
              annotations={"vnd.docker.reference.type": "attestation-manifest",
                           "vnd.docker.reference.digest": image.manifest_desc["digest"]})
    amd = {k: amd[k] for k in ("mediaType", "digest", "size", "platform")}
    index = put(oci.dumps({"schemaVersion": 2, "mediaType": oci.INDEX, "manifests": [arm, att, amd]}), oci.INDEX)
    index["annotations"] = {oci.REF_NAME: "multi"}
    (path / "index.json").write_bytes(oci.dumps({"schemaVersion": 2, "manifests": [index]}))
    return path


@pytest.mark.slow
def test_zstd_layers_are_verified_against_diff_ids_and_unpacked(busybox, registry, store, tmp_path):
    skopeo("copy", "--dest-compress-format", "zstd", f"oci:{busybox.store.layout}:docker.io/library/busybox:latest",
           f"oci:{tmp_path}/zstd:v1")
    name = f"{registry.host}/minidocker/zstd:v1"
    skopeo("copy", "--dest-tls-verify=false", f"oci:{tmp_path}/zstd:v1", f"docker://{name}")
    image = pull.pull(store, name, progress=False)
    assert {l["mediaType"] for l in image.layers} == {oci.LAYER_ZSTD}
    assert image.diff_ids == busybox.diff_ids
    assert (store.layer_dir(image.chain_ids[0]) / "diff/bin/busybox").exists()


@pytest.mark.slow
def test_docker_media_types_pull_with_the_image_id_unchanged(busybox, registry, store):
    name = f"{registry.host}/minidocker/docker-types:v1"
    skopeo("copy", "--format", "v2s2", "--dest-tls-verify=false",
           f"oci:{busybox.store.layout}:docker.io/library/busybox:latest", f"docker://{name}")
    image = pull.pull(store, name, progress=False)
    assert image.manifest["mediaType"] == oci.DOCKER_MANIFEST
    assert image.manifest["config"]["mediaType"] == oci.DOCKER_CONFIG
    assert image.id == busybox.id and image.diff_ids == busybox.diff_ids


@pytest.mark.slow
def test_a_second_pull_downloads_nothing(busybox, registry, store, capsys):
    name, _ = pushed(busybox, registry, "minidocker/again:v1")
    first = pull.fetch(store, name, progress=True)
    assert len(first["downloaded"]) == 3 and first["present"] == []
    bars = capsys.readouterr().err   # one tqdm bar per layer, named by its digest
    assert all(l["digest"][7:19] in bars for l in busybox.layers) and "100%" in bars
    second = pull.fetch(store, name, progress=False)
    assert second["downloaded"] == [] and len(second["present"]) == 2


@pytest.mark.slow
def test_a_pull_killed_halfway_leaves_no_image_and_the_next_reuses_finished_blobs(busybox, registry, store_root):
    name, _ = pushed(busybox, registry, "minidocker/killed:v1")
    env = dict(os.environ, MINIDOCKER_CRASH_AT="pull-after-blob", MINIDOCKER_ROOT=str(store_root))
    code = f"from minidocker import pull; from minidocker.store import Store; pull.pull(Store(), {name!r}, progress=False)"
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    assert r.returncode == 137
    store = Store(store_root)
    assert images.list_images(store) == []
    assert list((store_root / "ingest").iterdir()) == []
    done = pull.fetch(store, name, progress=False)
    assert len(done["present"]) + len(done["downloaded"]) == 2 and len(done["present"]) >= 1
    assert pull.pull(store, name, progress=False).id == busybox.id


# -- authentication ------------------------------------------------------------------

@pytest.mark.slow
def test_htpasswd_registry_wants_the_right_password(busybox, htpasswd_registry, store):
    name = f"{htpasswd_registry.host}/minidocker/test:v1"
    with pytest.raises(MinidockerError, match="unauthorized: anonymous"):
        pull.pull(store, name, progress=False)
    with pytest.raises(MinidockerError, match="unauthorized"):
        Client(htpasswd_registry.host, "minidocker/test", credentials=(USER, "wrong")).ping()
    auth.store_credentials(htpasswd_registry.host, USER, PASSWORD, busybox.store.root)
    try:
        name, _ = pushed(busybox, htpasswd_registry)
    finally:
        auth.remove_credentials(htpasswd_registry.host, busybox.store.root)
    auth.store_credentials(htpasswd_registry.host, USER, PASSWORD, store.root)
    assert pull.pull(store, name, progress=False).id == busybox.id


@pytest.mark.slow
def test_token_registry_lets_anyone_pull_and_only_student_push(busybox, token_registry, store):
    name = f"{token_registry.host}/minidocker/test:v1"
    with pytest.raises(MinidockerError, match="insufficient scope"):
        pushed(busybox, token_registry)
    auth.store_credentials(token_registry.host, USER, PASSWORD, busybox.store.root)
    try:
        pushed(busybox, token_registry)
    finally:
        auth.remove_credentials(token_registry.host, busybox.store.root)
    scopes = [s for _, ss in token_registry.token_server.requests for s in ss]
    assert "repository:minidocker/test:pull,push" in scopes
    token_registry.token_server.requests.clear()
    client = Client(token_registry.host, "minidocker/test")
    assert pull.pull(store, name, progress=False, client=client).id == busybox.id
    assert token_registry.token_server.requests == [(None, ["repository:minidocker/test:pull"])]
    # The token dance: refused, a token from the realm, then the same request with it.
    (m1, u1, s1, a1), (m2, u2, s2, a2), (m3, u3, s3, a3) = client.trace[:3]
    assert (s1, a1) == (401, None) and "/manifests/v1" in u1
    assert u2.startswith(token_registry.token_server.url + "/token?") and s2 == 200
    assert (u3, s3, a3) == (u1, 200, "Bearer")
    with pytest.raises(MinidockerError, match="incorrect username or password"):
        Client(token_registry.host, "minidocker/test", credentials=(USER, "wrong")).ping()


# -- bad input: one clear error, nothing left behind ---------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("name, message", [
    ("minidocker/nothing-here:v1", "not found"),
    ("minidocker/test:no-such-tag", "not found"),
])
def test_unknown_repository_or_tag(busybox, registry, store, name, message):
    pushed(busybox, registry)
    with pytest.raises(NotFound, match=message):
        pull.pull(store, f"{registry.host}/{name}", progress=False)
    assert blob_names(store) == []


@pytest.mark.slow
def test_a_registry_that_only_speaks_docker_types_says_so(busybox, registry):
    pushed(busybox, registry)
    with pytest.raises(NotFound, match="accept header"):
        Client(registry.host, "minidocker/test").manifest("v1", accept=oci.DOCKER_MANIFEST)


def test_a_registry_that_is_down_is_one_line(store):
    from registry_server import free_port
    with pytest.raises(MinidockerError, match="connection refused"):
        pull.pull(store, f"127.0.0.1:{free_port()}/a/b:v1", progress=False)


# -- settings, tokens over time, podman ------------------------------------------------------

@pytest.mark.slow
def test_a_registry_mirror_serves_docker_hub_names(busybox, registry, store, monkeypatch):
    pushed(busybox, registry, "library/mirrored:v1")
    monkeypatch.setenv("MINIDOCKER_REGISTRY_MIRRORS", f"http://{registry.host}")
    image = pull.pull(store, "mirrored:v1", progress=False)
    assert image.id == busybox.id and image.tags == ["docker.io/library/mirrored:v1"]


@pytest.mark.slow
def test_an_expired_token_is_fetched_again(busybox, token_registry, store):
    auth.store_credentials(token_registry.host, USER, PASSWORD, busybox.store.root)
    try:
        name, _ = pushed(busybox, token_registry, "minidocker/expiry:v1")
    finally:
        auth.remove_credentials(token_registry.host, busybox.store.root)
    server = token_registry.token_server
    server.expires_in, server.requests[:] = 6, []   # we renew 5 s early: this token lives 1 s
    client = Client(token_registry.host, "minidocker/expiry")
    client.manifest("v1")
    client.manifest("v1")
    assert len(server.requests) == 1
    import time
    time.sleep(1.2)
    client.manifest("v1")
    assert len(server.requests) == 2
    server.expires_in = 300


@pytest.mark.root
@pytest.mark.slow
def test_podman_pulls_and_runs_our_push_and_we_pull_podmans_push(busybox, registry, podman, store):
    name, _ = pushed(busybox, registry, "minidocker/for-podman:v1")
    podman("pull", "--tls-verify=false", name)
    r = podman("--runtime", "runc", "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
               "--ulimit", "nproc=1024:1024", name, "cat", "/etc/motd")
    assert r.stdout == "layer 2\n"
    assert podman("image", "inspect", "--format", "{{.Id}}", name).stdout.strip() == busybox.id[7:]
    back = f"{registry.host}/minidocker/from-podman:v1"
    podman("push", "--tls-verify=false", name, back)
    image = pull.pull(store, back, progress=False)
    assert image.id == busybox.id and image.diff_ids == busybox.diff_ids


def test_an_oci_archive_holding_an_index_loads_this_machines_platform(busybox, store, tmp_path):
    from minidocker import archive
    layout = make_multi_arch_layout(busybox, tmp_path / "multi")
    subprocess.run(["tar", "-cf", str(tmp_path / "multi.tar"), "-C", str(layout), "."], check=True)
    [image] = archive.load(store, str(tmp_path / "multi.tar"), platform=("linux", "amd64", None))
    assert image.id == busybox.id and image.tags == []
    [arm] = archive.load(store, str(tmp_path / "multi.tar"), platform=("linux", "arm64", "v8"))
    assert arm.config["architecture"] == "arm64"
