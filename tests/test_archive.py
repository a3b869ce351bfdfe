"""save and load: our archives in podman and skopeo, theirs (and docker's layouts) in ours."""
import gzip
import io
import json
import subprocess
import tarfile

import pytest

from minidocker import archive, images, oci
from minidocker.errors import MinidockerError
from minidocker.store import Store
from registry_server import build_image, podman, skopeo  # noqa: F401

NAME = "docker.io/minidocker/test:v1"


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    store = Store(tmp_path_factory.mktemp("source") / "store")
    return build_image(store, NAME)


@pytest.fixture(scope="module")
def saved(image, tmp_path_factory):
    path = tmp_path_factory.mktemp("saved") / "save.tar"
    archive.save(image.store, [NAME], str(path))
    return path


def assert_empty(store):
    assert images.list_images(store) == []
    assert list(store.blobs.iterdir()) == []
    assert list((store.root / "ingest").iterdir()) == []


def test_save_then_load_keeps_id_manifest_and_tag(image, saved, store):
    [loaded] = archive.load(store, str(saved))
    assert loaded.id == image.id
    assert loaded.manifest_desc["digest"] == image.manifest_desc["digest"]
    assert images.get(store, "minidocker/test:v1").id == image.id


def test_our_archive_is_a_valid_oci_layout_and_docker_archive(image, saved, tmp_path):
    with tarfile.open(saved) as tar:
        names = tar.getnames()
        manifest = json.load(tar.extractfile("manifest.json"))
    (tmp_path / "layout").mkdir()
    subprocess.run(["tar", "-xf", str(saved), "-C", str(tmp_path / "layout")], check=True)
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= set(names)
    assert manifest[0]["RepoTags"] == ["minidocker/test:v1"]
    seen = json.loads(skopeo("inspect", f"docker-archive:{saved}").stdout)
    assert seen["Architecture"] == "amd64" and seen["Layers"] == image.diff_ids   # docker-archive shows diff_ids
    layers = json.loads(skopeo("inspect", f"oci-archive:{saved}:v1").stdout)["Layers"]
    assert layers == [l["digest"] for l in image.layers]
    r = subprocess.run(["oci-image-tool", "validate", "--type", "image", "--ref", "name=v1",
                        str(tmp_path / "layout")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_oci_image_tool_validates_our_store(image):
    r = subprocess.run(["oci-image-tool", "validate", "--type", "image", "--ref", f"name={NAME}",
                        str(image.store.layout)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# -- podman, both ways ---------------------------------------------------------------

@pytest.mark.root
@pytest.mark.slow
def test_podman_loads_our_save_with_the_same_id_and_runs_it(image, saved, podman):
    assert "Loaded image" in podman("load", "-i", str(saved)).stdout
    assert podman("image", "inspect", "--format", "{{.Id}}", NAME).stdout.strip() == image.id[7:]
    r = podman("--runtime", "runc", "run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
               "--ulimit", "nproc=1024:1024", NAME, "sh", "-c", "cat /etc/motd; ls /etc; ls -l /usr/bin/setuid")
    lines = r.stdout.splitlines()
    assert lines[0] == "layer 2" and "issue" not in lines and lines[-1].startswith("-rwsr-xr-x")


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_podman_save_loads_in_ours_with_the_same_id_and_rootfs(image, saved, podman, store, tmp_path, fmt):
    podman("load", "-i", str(saved))
    out = tmp_path / f"{fmt}.tar"
    podman("save", "--format", fmt, "-o", str(out), NAME)
    [loaded] = archive.load(store, str(out))
    assert loaded.id == image.id and loaded.diff_ids == image.diff_ids
    assert loaded.tags == [NAME]
    cid = podman("create", "--network", "none", NAME).stdout.strip()
    exported = tmp_path / "export.tar"
    podman("export", "-o", str(exported), cid)
    podman("rm", cid)
    ours = tmp_path / "ours"
    from minidocker.layers import open_layer, unpack
    for layer in loaded.layers:
        with open(store.blob_path(layer["digest"]), "rb") as f:
            unpack(open_layer(f), ours, flatten=True)
    theirs = {}
    with tarfile.open(exported) as tar:
        for m in tar.getmembers():
            if m.isfile():
                theirs[m.name.lstrip("./")] = (m.mode & 0o7777, tar.extractfile(m).read())
    mine = {str(p.relative_to(ours)): (p.stat().st_mode & 0o7777, p.read_bytes())
            for p in ours.rglob("*") if p.is_file() and not p.is_symlink()}
    podman_only = {"etc/hostname", "etc/hosts", "etc/resolv.conf", "run/.containerenv", "etc/mtab"}
    assert {k: v for k, v in theirs.items() if k not in podman_only} == mine


# -- docker's layouts, generated from our image -----------------------------------------

def tar_of(files: dict, symlinks=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def plain_layers(image):
    return [gzip.decompress(image.store.read(l["digest"], limit=1 << 30)) for l in image.layers]


def legacy_archive(image) -> bytes:
    """docker save before 25: <id>/layer.tar (plain), <config hex>.json, manifest.json, repositories."""
    files, paths = {}, []
    for i, data in enumerate(plain_layers(image)):
        layer_id = f"{i:064x}"
        files[f"{layer_id}/VERSION"] = b"1.0"
        files[f"{layer_id}/json"] = json.dumps({"id": layer_id}).encode()
        files[f"{layer_id}/layer.tar"] = data
        paths.append(f"{layer_id}/layer.tar")
    files[image.id[7:] + ".json"] = image.config_bytes
    files["manifest.json"] = json.dumps([{"Config": image.id[7:] + ".json", "RepoTags": ["minidocker/legacy:v1"],
                                          "Layers": paths}]).encode()
    files["repositories"] = json.dumps({"minidocker/legacy": {"v1": f"{1:064x}"}}).encode()
    return tar_of(files)


def docker25_archive(image) -> bytes:
    """docker save 25.0.0: OCI layout with plain layers, manifest.json, and the bug "manifests": null."""
    files, paths = {}, []
    for data in plain_layers(image):
        files["blobs/sha256/" + oci.sha256(data)[7:]] = data
        paths.append("blobs/sha256/" + oci.sha256(data)[7:])
    files["blobs/sha256/" + image.id[7:]] = image.config_bytes
    files["oci-layout"] = b'{"imageLayoutVersion":"1.0.0"}'
    files["index.json"] = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":null}'
    files["manifest.json"] = json.dumps([{"Config": "blobs/sha256/" + image.id[7:], "RepoTags": ["minidocker/d25:v1"],
                                          "Layers": paths}]).encode()
    return tar_of(files)


def podman_style_archive(image) -> bytes:
    """podman's docker-archive: <diffid>.tar at the top, <id>/layer.tar symlinks to it."""
    files, links, paths = {}, {}, []
    for i, (data, diff_id) in enumerate(zip(plain_layers(image), image.diff_ids)):
        files[diff_id[7:] + ".tar"] = data
        links[f"{i:064x}/layer.tar"] = f"../{diff_id[7:]}.tar"
        paths.append(f"{i:064x}/layer.tar")
    files[image.id[7:] + ".json"] = image.config_bytes
    files["manifest.json"] = json.dumps([{"Config": image.id[7:] + ".json", "RepoTags": ["minidocker/podman:v1"],
                                          "Layers": paths}]).encode()
    return tar_of(files, links)


@pytest.mark.parametrize("make, tag", [(legacy_archive, "minidocker/legacy:v1"), (docker25_archive, "minidocker/d25:v1"),
                                       (podman_style_archive, "minidocker/podman:v1")])
def test_docker_layouts_load_to_the_same_image_id(image, store, tmp_path, make, tag):
    path = tmp_path / "in.tar"
    path.write_bytes(make(image))
    [loaded] = archive.load(store, str(path))
    assert loaded.id == image.id and loaded.diff_ids == image.diff_ids
    assert images.get(store, tag).id == image.id


# -- bad input: one clear error, the store unchanged --------------------------------------

@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_a_truncated_archive_is_refused_and_leaves_nothing(saved, store, tmp_path, cut):
    data = saved.read_bytes()
    path = tmp_path / "cut.tar"
    path.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(MinidockerError, match="truncated|not a tar|neither"):
        archive.load(store, str(path))
    assert_empty(store)


def test_a_layer_that_does_not_match_its_diff_id_is_refused(image, store, tmp_path):
    files = {"manifest.json": json.dumps([{"Config": "c.json", "RepoTags": ["x:v1"],
                                           "Layers": ["a/layer.tar", "b/layer.tar"]}]).encode(),
             "c.json": image.config_bytes, "a/layer.tar": plain_layers(image)[1], "b/layer.tar": plain_layers(image)[0]}
    (tmp_path / "bad.tar").write_bytes(tar_of(files))
    with pytest.raises(MinidockerError, match="corrupt"):
        archive.load(store, str(tmp_path / "bad.tar"))
    assert_empty(store)


def test_not_an_archive_and_an_artifact_are_one_line_errors(store, tmp_path):
    (tmp_path / "junk.tar").write_bytes(b"hello, not a tar")
    with pytest.raises(MinidockerError, match="not a tar"):
        archive.load(store, str(tmp_path / "junk.tar"))
    empty = b"{}"
    manifest = oci.dumps({"schemaVersion": 2, "mediaType": oci.MANIFEST, "artifactType": "application/vnd.example",
                          "config": oci.descriptor("application/vnd.oci.empty.v1+json", empty), "layers": []})
    index = oci.dumps({"schemaVersion": 2, "manifests": [oci.descriptor(oci.MANIFEST, manifest)]})
    (tmp_path / "artifact.tar").write_bytes(tar_of({"oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
                                                    "index.json": index,
                                                    "blobs/sha256/" + oci.sha256(manifest)[7:]: manifest,
                                                    "blobs/sha256/" + oci.sha256(empty)[7:]: empty}))
    with pytest.raises(MinidockerError, match="not a runnable image"):
        archive.load(store, str(tmp_path / "artifact.tar"))
    assert_empty(store)


def test_several_tags_by_id_and_gzip(image, store, tmp_path):
    images.tag(image.store, NAME, "minidocker/other:v2")
    try:
        archive.save(image.store, [NAME, "minidocker/other:v2", image.id], str(tmp_path / "two.tar"))
        (tmp_path / "two.tar.gz").write_bytes(gzip.compress((tmp_path / "two.tar").read_bytes()))
        [loaded] = archive.load(store, str(tmp_path / "two.tar.gz"))
        assert sorted(loaded.tags) == ["docker.io/minidocker/other:v2", NAME] and loaded.id == image.id
        archive.save(image.store, [image.id], str(tmp_path / "by-id.tar"))
        with tarfile.open(tmp_path / "by-id.tar") as tar:
            assert json.load(tar.extractfile("manifest.json"))[0]["RepoTags"] == []
    finally:
        images.remove(image.store, "minidocker/other:v2")
