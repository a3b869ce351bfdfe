"""docker save and docker load: images in one tar file.

What we write (Docker 25+'s layout: an OCI image layout plus docker's own
manifest.json, so docker, podman, skopeo and OCI tools all read it):

    oci-layout, index.json          the OCI view: one entry per tag
    blobs/sha256/<hex>              manifests, configs, layers, exactly as stored
    manifest.json                   [{"Config": "blobs/...", "RepoTags": [...], "Layers": [...]}]
    repositories                    {"busybox": {"latest": "<top layer hex>"}} (legacy docker)

What we read:
    legacy docker (< 25)            <id>/layer.tar, <config hex>.json, manifest.json
    docker 25+ / containerd         OCI layout + manifest.json (layers plain or compressed)
    podman docker-archive           <diffid>.tar with <id>/layer.tar as symlinks to it
    OCI archives                    index.json only (podman oci-archive, skopeo oci:)

manifest.json wins when present (early Docker 25 wrote broken index.json files);
otherwise index.json is walked, choosing this machine's platform. The config's
exact bytes are kept, so the image ID is the one docker and podman show.
"""
import io
import posixpath
import tarfile

from . import images, oci, reference
from .errors import MinidockerError
from .layers import GZIP_MAGIC, ZSTD_MAGIC

CONTAINERD_NAME = "io.containerd.image.name"


# -- save ---------------------------------------------------------------------

def save(store, names, out) -> None:
    """Write the images `names` (with their tags) as one tar to a path or a binary file."""
    chosen = {}
    for name in names:
        image = images.get(store, name)
        entry = chosen.setdefault(image.manifest_desc["digest"], (image, []))
        try:
            ref = reference.parse(name)
        except MinidockerError:
            continue   # saved by ID: no name, as docker does
        if str(ref) in image.tags and ref not in entry[1]:
            entry[1].append(ref)
    try:
        tar = tarfile.open(out, "w", format=tarfile.PAX_FORMAT) if isinstance(out, str) \
            else tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT)   # a pipe cannot seek
    except OSError as e:
        raise MinidockerError(f"cannot write {out}: {e.strerror}") from None
    with tar:
        index, manifests, repositories, written = [], [], {}, set()
        _add(tar, "blobs", None)
        _add(tar, "blobs/sha256", None)
        for image, refs in chosen.values():
            for desc in [image.manifest_desc, image.manifest["config"]] + image.layers:
                if desc["digest"] not in written:
                    written.add(desc["digest"])
                    path = store.blob_path(desc["digest"])
                    with open(path, "rb") as f:
                        _add(tar, "blobs/sha256/" + path.name, f, desc["size"])
            base = {k: image.manifest_desc[k] for k in ("mediaType", "digest", "size")}
            for ref in refs:
                index.append(dict(base, annotations={CONTAINERD_NAME: str(ref), oci.REF_NAME: ref.tag}))
                repositories.setdefault(ref.familiar_name, {})[ref.tag] = \
                    image.layers[-1]["digest"][7:] if image.layers else ""
            if not refs:
                index.append(base)
            manifests.append({"Config": "blobs/sha256/" + image.id[7:], "RepoTags": [r.familiar for r in refs],
                              "Layers": ["blobs/sha256/" + l["digest"][7:] for l in image.layers]})
        _add_bytes(tar, "index.json", oci.dumps({"schemaVersion": 2, "mediaType": oci.INDEX, "manifests": index}))
        _add_bytes(tar, "manifest.json", oci.dumps(manifests))
        _add_bytes(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        if repositories:
            _add_bytes(tar, "repositories", oci.dumps(repositories))


def _add(tar, name, fileobj, size=0):
    info = tarfile.TarInfo(name)
    info.mtime, info.uname, info.gname = 0, "", ""
    if fileobj is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size, info.mode = size, 0o444
    tar.addfile(info, fileobj)


def _add_bytes(tar, name, data: bytes):
    _add(tar, name, io.BytesIO(data), len(data))


# -- load ---------------------------------------------------------------------

def load(store, source, platform=None) -> list:
    """Read a docker-archive or OCI archive (path or seekable binary file); returns the images loaded."""
    try:
        tar = tarfile.open(source, "r:*") if isinstance(source, str) else tarfile.open(fileobj=source, mode="r:*")
    except FileNotFoundError:
        raise MinidockerError(f"open {source}: no such file or directory") from None
    except (tarfile.TarError, EOFError, OSError):
        raise MinidockerError("the archive is not a tar file (or is empty)") from None
    with tar:
        written = []
        try:
            archive = _Archive(tar)
            if archive.has("manifest.json"):
                return [_load_docker(store, archive, entry, written) for entry in archive.json_list("manifest.json")]
            if archive.has("index.json"):
                return _load_oci(store, archive, platform, written)
            raise MinidockerError("the archive has neither manifest.json nor index.json: not an image archive")
        except (tarfile.TarError, EOFError, OSError) as e:
            images.discard(store, written)
            raise MinidockerError(f"the archive is truncated or damaged ({e})") from None
        except MinidockerError:
            images.discard(store, written)
            raise


class _Archive:
    """Members of a tar by name, with symlinks inside the archive resolved (podman's layout)."""

    def __init__(self, tar):
        self.tar = tar
        self.members = {posixpath.normpath(m.name.lstrip("/")): m for m in tar.getmembers()}

    def has(self, name) -> bool:
        return posixpath.normpath(name) in self.members

    def member(self, name):
        path = posixpath.normpath(name.lstrip("/"))
        for _ in range(16):
            m = self.members.get(path)
            if m is None:
                raise MinidockerError(f"the archive is truncated or incomplete: {name} is missing")
            if m.isreg():
                return m
            if not m.issym():
                raise MinidockerError(f"{name} in the archive is not a file")
            path = posixpath.normpath(posixpath.join(posixpath.dirname(path), m.linkname))
            if path.startswith("../"):
                raise MinidockerError(f"{name} in the archive points outside it")
        raise MinidockerError(f"{name} in the archive is a symlink loop")

    def read(self, name, limit=oci.MAX_JSON_SIZE) -> bytes:
        m = self.member(name)
        if m.size > limit:
            raise MinidockerError(f"{name} in the archive is larger than {limit} bytes")
        return self.tar.extractfile(m).read()

    def json_list(self, name) -> list:
        import json
        try:
            doc = json.loads(self.read(name))
        except ValueError:
            raise MinidockerError(f"{name} in the archive is not valid JSON") from None
        if not isinstance(doc, list) or not all(isinstance(e, dict) for e in doc):
            raise MinidockerError(f"{name} in the archive is not a list of images")
        return doc

    def copy(self, store, name, digest=None, size=None, written=None) -> dict:
        """Stream a member into the store (checked against digest/size if given); its descriptor."""
        m = self.member(name)
        f = self.tar.extractfile(m)
        head = f.read(4)
        with store.writer(digest, size if size is not None else m.size) as w:
            w.write(head)
            while chunk := f.read(1 << 20):
                w.write(chunk)
            got = w.commit()
        if written is not None:
            written.append(got)
        media = oci.LAYER_GZIP if head[:2] == GZIP_MAGIC else oci.LAYER_ZSTD if head == ZSTD_MAGIC else oci.LAYER
        return {"mediaType": media, "digest": got, "size": m.size}


def _load_docker(store, archive, entry, written) -> images.Image:
    config_bytes = archive.read(entry.get("Config") or "")
    config = oci.loads(config_bytes, "image config")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    paths = entry.get("Layers") or []
    if len(paths) != len(diff_ids):
        raise MinidockerError(f"manifest.json lists {len(paths)} layers, the image config {len(diff_ids)}")
    config_desc = store.put(config_bytes, oci.CONFIG)
    written.append(config_desc["digest"])
    layers = [archive.copy(store, p, written=written) for p in paths]
    manifest_desc = _original_manifest(store, archive, config_desc, layers, written)
    if manifest_desc is None:
        manifest = {"schemaVersion": 2, "mediaType": oci.MANIFEST, "config": config_desc, "layers": layers}
        manifest_desc = store.put(oci.dumps(manifest), oci.MANIFEST)
        written.append(manifest_desc["digest"])
    tags = [str(reference.parse(t)) for t in entry.get("RepoTags") or []]
    return _register(store, manifest_desc, tags)


def _original_manifest(store, archive, config_desc, layers, written):
    """The archive's own manifest for these blobs, if its index.json has one: keeps its digest."""
    if not archive.has("index.json"):
        return None
    try:
        entries = oci.loads(archive.read("index.json"), "index.json").get("manifests") or []
    except MinidockerError:
        return None
    for e in entries:
        if e.get("mediaType") not in oci.MANIFEST_TYPES or not isinstance(e.get("digest"), str):
            continue
        try:
            data = archive.read("blobs/sha256/" + oci.check_digest(e["digest"])[7:])
        except MinidockerError:
            continue
        manifest = oci.loads(data, "manifest")
        if (manifest.get("config") or {}).get("digest") == config_desc["digest"] and \
                [l.get("digest") for l in manifest.get("layers") or []] == [l["digest"] for l in layers]:
            desc = store.put(data, e["mediaType"])
            written.append(desc["digest"])
            return desc
    return None


def _load_oci(store, archive, platform, written) -> list:
    from .pull import check_runnable, select_platform
    loaded = []
    for entry in oci.loads(archive.read("index.json"), "index.json").get("manifests") or []:
        annotations = entry.get("annotations") or {}
        desc = entry
        for _ in range(4):
            data = archive.read("blobs/sha256/" + oci.check_digest(desc["digest"])[7:])
            if oci.sha256(data) != desc["digest"]:
                raise MinidockerError(f"blob {desc['digest'][:19]} in the archive is corrupt")
            doc = oci.loads(data, f"manifest {desc['digest'][:19]}")
            if desc.get("mediaType") not in oci.INDEX_TYPES and "manifests" not in doc:
                break
            desc = select_platform(doc, platform)
        check_runnable(doc, desc["digest"])
        for blob in [doc["config"]] + doc.get("layers", []):
            if not store.has_blob(blob["digest"], blob["size"]):
                archive.copy(store, "blobs/sha256/" + oci.check_digest(blob["digest"])[7:], blob["digest"],
                             blob["size"], written)
        manifest_desc = store.put(data, doc.get("mediaType") or desc.get("mediaType") or oci.MANIFEST)
        written.append(manifest_desc["digest"])
        loaded.append(_register(store, manifest_desc, _oci_tags(annotations)))
    return loaded


def _oci_tags(annotations: dict) -> list:
    """A name from containerd's annotation, or a ref.name that is a full reference; a bare tag names nothing."""
    name = annotations.get(CONTAINERD_NAME) or annotations.get(oci.REF_NAME) or ""
    if "/" not in name and ":" not in name:
        return []
    try:
        return [str(reference.parse(name))]
    except MinidockerError:
        return []


def _register(store, manifest_desc, tags) -> images.Image:
    image = images.register(store, manifest_desc, tags[0] if tags else None)
    for t in tags[1:]:
        store.set_tag(t, manifest_desc)
    image.tags = tags
    return image
