"""Images: what the store's index names, read back as objects, and the verbs
`images`, `tag`, `rmi`, `history` and `inspect`.

An image here is a manifest in index.json with its config and layers. Its ID is
the digest of its config (docker's rule), so two tags of the same image share
one ID, and a commit that changes one file gets a new one.
"""
import hashlib
import os
import zlib

from . import oci, reference
from .errors import Conflict, MinidockerError, NotFound
from .store import Store
from .units import now_iso


# The digest a registry gave the image (an index's, for a multi-platform image),
# kept beside the tag so `name@sha256:<that>` finds it, as docker's RepoDigests do.
REPO_DIGEST = "io.minidocker.repo.digest"


class Image:
    """An image of the store: its manifest and config, and the names it has.

    (A plain class: importing dataclasses costs every command ~5 ms.)
    """

    def __init__(self, store: Store, manifest_desc: dict, manifest: dict, config_bytes: bytes, config: dict,
                 tags: list, repo_digests: list = None):
        self.store, self.manifest_desc, self.manifest = store, manifest_desc, manifest
        self.config_bytes, self.config = config_bytes, config
        self.tags = tags   # full reference names, e.g. "docker.io/library/busybox:latest"
        self.repo_digests = repo_digests or []   # "registry/repo@sha256:..." as a registry named it

    def __eq__(self, other):
        return isinstance(other, Image) and (self.manifest_desc, self.tags, self.repo_digests) == (
            other.manifest_desc, other.tags, other.repo_digests)

    __hash__ = None   # mutable (tags), as the dataclass was

    @property
    def id(self) -> str:
        return self.manifest["config"]["digest"]

    @property
    def short_id(self) -> str:
        return self.id.split(":", 1)[1][:12]

    @property
    def layers(self) -> list:
        return self.manifest.get("layers") or []

    @property
    def diff_ids(self) -> list:
        return (self.config.get("rootfs") or {}).get("diff_ids") or []

    @property
    def chain_ids(self) -> list:
        return oci.chain_ids(self.diff_ids)

    @property
    def familiar_tags(self) -> list:
        return [reference.parse(t).familiar for t in self.tags]

    @property
    def size(self) -> int:
        return sum(self.store.layer_size(c) for c in self.chain_ids)

    def lower_dirs(self) -> list:
        """Unpacked layer directories, top layer first (overlay's lowerdir order)."""
        dirs = [self.store.unpack(chain, layer["digest"], diff_id)
                for chain, layer, diff_id in zip(self.chain_ids, self.layers, self.diff_ids)]
        return list(reversed(dirs))

    def __repr__(self):
        return f"<Image {self.short_id} {' '.join(self.familiar_tags) or '<none>'}>"


def load(store: Store, manifest_desc: dict, tags=()) -> Image:
    manifest = store.read_json(manifest_desc["digest"], "manifest")
    if manifest.get("mediaType", manifest_desc.get("mediaType")) not in oci.MANIFEST_TYPES:
        raise MinidockerError(f"{manifest_desc['digest'][:19]} is not an image manifest")
    config_bytes = store.read(manifest["config"]["digest"])
    config = oci.loads(config_bytes, "image config")
    if len(config.get("rootfs", {}).get("diff_ids") or []) != len(manifest.get("layers") or []):
        raise MinidockerError(f"image {manifest['config']['digest'][:19]}: config and manifest disagree on layers")
    return Image(store, manifest_desc, manifest, config_bytes, config, list(tags))


def list_images(store: Store) -> list:
    """Every image in the store, once each, with all its tags."""
    by_digest = {}
    for entry in store.index()["manifests"]:
        tags, digests = by_digest.setdefault(entry["digest"], (entry, [], []))[1:]
        notes = entry.get("annotations") or {}
        if notes.get(oci.REF_NAME):
            tags.append(notes[oci.REF_NAME])
        if notes.get(REPO_DIGEST) and notes[REPO_DIGEST] not in digests:
            digests.append(notes[REPO_DIGEST])
    out = []
    for entry, tags, digests in by_digest.values():
        image = load(store, entry, tags)
        image.repo_digests = digests
        out.append(image)
    return out


def get(store: Store, name: str) -> Image:
    """Find an image by reference (busybox, busybox:1.36, ...@sha256:...) or by ID prefix."""
    images = list_images(store)
    try:
        ref = reference.parse(name)
    except MinidockerError:
        ref = None
    if ref is not None:
        for image in images:
            if str(ref) in image.tags or (ref.digest and ref.digest == image.manifest_desc["digest"]):
                return image
        # An index's digest names one image per platform: this machine's, as docker run picks.
        by_index = [i for i in images if ref.digest and f"{ref.name}@{ref.digest}" in i.repo_digests]
        os_, arch, _ = oci.host_platform()
        for image in sorted(by_index, key=lambda i: (i.config.get("os"), i.config.get("architecture")) != (os_, arch)):
            return image
    hexpart = name.removeprefix("sha256:")
    if hexpart and all(c in "0123456789abcdef" for c in hexpart):
        found = [i for i in images if i.id.split(":")[1].startswith(hexpart)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise MinidockerError(f"image ID prefix {name!r} is ambiguous")
    raise NotFound(f"No such image: {ref.familiar if ref else name}")


def add(store: Store, config: dict, layers: list, tag=None) -> Image:
    """Record a new image of ours from its config and its layer descriptors (blobs stored)."""
    diff_ids = config["rootfs"]["diff_ids"]
    for chain, layer, diff_id in zip(oci.chain_ids(diff_ids), layers, diff_ids):
        store.unpack(chain, layer["digest"], diff_id)   # a bad layer fails before any JSON is written
    config_desc = store.put(oci.dumps(config), oci.CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": oci.MANIFEST, "config": config_desc, "layers": layers}
    return register(store, store.put(oci.dumps(manifest), oci.MANIFEST), tag)


def register(store: Store, manifest_desc: dict, tag=None, repo_digest=None) -> Image:
    """Name a manifest whose blobs are all in the store (built, pulled or loaded).

    Its layers are unpacked first: a bad layer fails here, before the image has
    a name. The exact bytes of manifest and config are kept as they came.
    """
    image = load(store, manifest_desc)
    for chain, layer, diff_id in zip(image.chain_ids, image.layers, image.diff_ids):
        store.unpack(chain, layer["digest"], diff_id)
    with store.lock:
        # A concurrent rmi may have collected our blobs between writing and naming them.
        for desc in [image.manifest["config"]] + image.layers:
            if not store.has_blob(desc["digest"], desc["size"]):
                raise MinidockerError(f"blob {desc['digest'][:19]} vanished while the image was written; try again")
        notes = {REPO_DIGEST: repo_digest} if repo_digest else None
        if tag:
            store.set_tag(str(reference.parse(tag)), manifest_desc, notes)
        else:
            store.add_untagged(manifest_desc, notes)
    return get(store, tag) if tag else load(store, manifest_desc)


def add_layer(store: Store, tar_stream, compress: bool = True) -> tuple:
    """Store an uncompressed tar stream as a layer blob; returns (descriptor, diff_id).

    gzip through zlib with mtime 0 and a fixed level, so the same tar always
    gives the same blob digest.
    """
    diff_hash = hashlib.sha256()
    packer = zlib.compressobj(6, zlib.DEFLATED, 31) if compress else None
    with store.writer() as w:
        while chunk := tar_stream.read(1 << 20):
            diff_hash.update(chunk)
            w.write(packer.compress(chunk) if packer else chunk)
        if packer:
            w.write(packer.flush())
        size = w.written
        digest = w.commit()
    media = oci.LAYER_GZIP if compress else oci.LAYER
    return {"mediaType": media, "digest": digest, "size": size}, "sha256:" + diff_hash.hexdigest()


def new_config(base: dict = None, *, diff_ids=(), created_by="", comment="", author="", empty_layer=False,
               created=None) -> dict:
    """A config for a new image: the base's, plus layers and one more history entry."""
    base = base or {}
    created = created or now_iso()
    history = list(base.get("history") or [])
    entry = {"created": created, "created_by": created_by}
    if author:
        entry["author"] = author
    if comment:
        entry["comment"] = comment
    if empty_layer:
        entry["empty_layer"] = True
    history.append(entry)
    os_, arch, variant = oci.host_platform()
    config = {"created": created, "architecture": base.get("architecture", arch), "os": base.get("os", os_)}
    if author:
        config["author"] = author
    config["config"] = dict(base.get("config") or {})
    config["rootfs"] = {"type": "layers", "diff_ids": list((base.get("rootfs") or {}).get("diff_ids") or []) + list(diff_ids)}
    config["history"] = history
    return config


def tag(store: Store, source: str, target: str) -> None:
    image = get(store, source)
    store.set_tag(str(reference.parse(target)), image.manifest_desc)


def users(store: Store) -> dict:
    """Image ID -> IDs of containers created from it (a container pins its image)."""
    from .files import read_json
    found = {}
    for path in (store.root / "containers").glob("*/container.json"):
        try:
            found.setdefault(read_json(path)["Image"], []).append(path.parent.name)
        except (MinidockerError, KeyError, FileNotFoundError):
            continue
    return found


def remove(store: Store, name: str, force: bool = False) -> list:
    """docker rmi: untag, and delete the image once no tag and no container needs it."""
    image = get(store, name)
    used_by = users(store).get(image.id, [])
    out = []
    try:
        ref = str(reference.parse(name))
    except MinidockerError:
        ref = None
    by_tag = ref in image.tags
    if by_tag and len(image.tags) > 1:
        store.remove_tag(ref, keep_untagged=False)
        return [f"Untagged: {reference.parse(ref).familiar}"]
    if used_by and not force:
        what = f"repository reference {name!r}" if by_tag else image.short_id
        raise Conflict(f"conflict: unable to remove {what} (must force) - container {used_by[0][:12]} "
                       f"is using its referenced image {image.short_id}")
    if not by_tag and len(image.tags) > 1 and not force:
        raise Conflict(f"conflict: unable to delete {image.short_id} (must be forced) - "
                       "image is referenced in multiple repositories")
    with store.lock:
        for t in image.tags:
            store.remove_tag(t, keep_untagged=bool(used_by))
            out.append(f"Untagged: {reference.parse(t).familiar}")
        if not used_by:
            store.forget(image.manifest_desc["digest"])
            out.append(f"Deleted: {image.id}")
            collect(store)
    return out


def discard(store: Store, digests) -> None:
    """Remove blobs we just wrote for an image that failed, unless an image uses them."""
    with store.lock:
        used = set()
        for image in list_images(store):
            used.update([image.manifest_desc["digest"], image.id] + [l["digest"] for l in image.layers])
        for digest in set(digests) - used:
            store.remove_blob(digest)


def collect(store: Store) -> list:
    """Delete blobs and unpacked layers that no image in the index refers to.

    Except what is newer than another process's lease: that is a pull, commit
    or build on its way to naming it (Store.lease).
    """
    with store.lock:
        since = store.oldest_other_lease()

        def in_use(path):
            return since is not None and os.lstat(path).st_mtime_ns >= since

        keep, chains = {"sha256:" + "0" * 64}, set()
        for image in list_images(store):
            keep.add(image.manifest_desc["digest"])
            keep.add(image.id)
            keep.update(layer["digest"] for layer in image.layers)
            chains.update(image.chain_ids)
        removed = []
        for path in store.blobs.iterdir():
            if "sha256:" + path.name not in keep and not in_use(path):
                path.unlink()
                removed.append("sha256:" + path.name)
        from .files import remove_tree
        for path in store.layers.iterdir():
            if not path.name.startswith(".") and "sha256:" + path.name not in chains and not in_use(path):
                remove_tree(path)
        return removed


def history(image: Image) -> list:
    """Rows of docker history, newest first: (image, created, created_by, size, comment)."""
    rows, layer_index = [], 0
    sizes = [image.store.layer_size(c) for c in image.chain_ids]
    for entry in image.config.get("history") or []:
        size = 0
        if not entry.get("empty_layer"):
            size = sizes[layer_index] if layer_index < len(sizes) else 0
            layer_index += 1
        rows.append(["<missing>", entry.get("created", ""), entry.get("created_by", ""), size,
                     entry.get("comment", "")])
    if rows:
        rows[-1][0] = image.short_id
    return list(reversed(rows))


def inspect(image: Image) -> dict:
    """The image as docker image inspect shows it."""
    c = image.config
    return {
        "Id": image.id,
        "RepoTags": image.familiar_tags,
        "RepoDigests": sorted({reference.parse(d).familiar for d in image.repo_digests}
                              | {f"{reference.parse(t).familiar_name}@{image.manifest_desc['digest']}"
                                 for t in image.tags if not image.repo_digests}),
        "Parent": "",
        "Comment": ((c.get("history") or [{}])[-1]).get("comment", ""),
        "Created": c.get("created", ""),
        "Author": c.get("author", ""),
        "Config": c.get("config") or {},
        "Architecture": c.get("architecture", ""),
        "Variant": c.get("variant", ""),
        "Os": c.get("os", ""),
        "Size": image.size,
        "RootFS": {"Type": "layers", "Layers": image.diff_ids},
        "Descriptor": {k: image.manifest_desc[k] for k in ("mediaType", "digest", "size")},
    }
