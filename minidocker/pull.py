"""docker pull: reference -> (index -> platform ->) manifest -> config -> layers.

    busybox:latest ──GET manifests/latest──► index      (one entry per platform)
                   ──GET manifests/<digest>─► manifest   (config + layers, for linux/amd64)
                   ──GET blobs/<config>─────► config     (its digest is the image ID)
                   ──GET blobs/<layer>...───► layers     (skipped when already in the store)

Every blob is verified by digest and size while it streams, and appears in the
store only once verified. The image gets its name last (images.register), so a
pull killed halfway leaves no broken image, and the next pull finds the blobs
that were finished and does not download them again.
"""
from concurrent.futures import ThreadPoolExecutor

from . import images, oci, reference
from .errors import MinidockerError
from .files import crash_point
from .registry import Client, settings

PARALLEL = 3   # layers downloaded at once, as docker does


def select_platform(index: dict, platform=None) -> dict:
    """The index entry for `platform` (os, arch, variant); attestations never match."""
    os_, arch, variant = platform or oci.host_platform()
    entries = [m for m in index.get("manifests") or []
               if (m.get("annotations") or {}).get("vnd.docker.reference.type") != "attestation-manifest"]
    for want_variant in ([variant] if platform else [variant, None]):
        found = [m for m in entries if oci.platform_matches(m.get("platform"), os_, arch, want_variant)]
        if found:
            return found[0]   # several matches: the first wins (image-index.md)
    offered = sorted({"/".join(filter(None, [(m.get("platform") or {}).get(k) for k in ("os", "architecture", "variant")]))
                      for m in entries} - {"unknown/unknown", ""})
    wanted = "/".join(filter(None, [os_, arch, variant]))
    raise MinidockerError(f"no matching manifest for {wanted} in the manifest list entries "
                          f"(offered: {', '.join(offered) or 'none'})")


def resolve(client: Client, ref: str, platform=None) -> tuple:
    """Walk indexes down to one image manifest: (manifest bytes, media type, digest, chain of documents)."""
    chain = []
    for _ in range(4):   # an index of an index of ... is allowed, but not forever
        data, media, digest = client.manifest(ref)
        chain.append({"mediaType": media, "digest": digest, "size": len(data), "bytes": data})
        if media not in oci.INDEX_TYPES:
            return data, media, digest, chain
        entry = select_platform(oci.loads(data, f"index {digest[:19]}"), platform)
        ref = oci.check_digest(entry["digest"])
    raise MinidockerError(f"{ref}: indexes nested too deeply")


def check_runnable(manifest: dict, digest: str) -> None:
    """Refuse artifacts (Helm charts, signatures, SBOMs...) that share the manifest format."""
    config_type = (manifest.get("config") or {}).get("mediaType")
    if manifest.get("artifactType") or config_type not in oci.CONFIG_TYPES:
        kind = manifest.get("artifactType") or config_type
        raise MinidockerError(f"{digest[:19]} is not a runnable image (it is an artifact of type {kind})")
    for layer in manifest.get("layers") or []:
        if layer.get("mediaType") not in oci.LAYER_TYPES:
            raise MinidockerError(f"{digest[:19]} is not a runnable image (layer type {layer.get('mediaType')})")
        oci.check_digest(layer.get("digest"))


def client_for(ref, root=None) -> Client:
    """A client for the reference's registry; docker.io goes to the first mirror if one is set."""
    mirrors = settings(root)["registry-mirrors"] if ref.registry == reference.DOCKER_HUB else []
    if mirrors:
        return Client(ref.registry, ref.repository, url=mirrors[0].rstrip("/"), root=root)
    return Client(ref.registry, ref.repository, root=root)


def fetch(store, name: str, platform=None, progress=True, client=None) -> dict:
    """Download and verify everything an image needs, without naming it; returns what was done.

    The result: ref, manifest_desc, manifest, chain (index and manifest documents),
    config, downloaded (blob digests fetched now) and present (already here).
    """
    ref = reference.parse(name)
    client = client or client_for(ref, store.root)
    client.cancelled.clear()
    data, media, digest, chain = resolve(client, ref.digest or ref.tag, platform)
    manifest = oci.loads(data, f"manifest {digest[:19]}")
    check_runnable(manifest, digest)
    written = []
    try:
        manifest_desc = store.put(data, media)
        written.append(digest)
        config_desc = manifest["config"]
        if not isinstance(config_desc.get("size"), int) or config_desc["size"] > oci.MAX_JSON_SIZE:
            raise MinidockerError(f"image config {config_desc['digest'][:19]} is larger than {oci.MAX_JSON_SIZE} bytes")
        if client.download(store, config_desc):
            written.append(config_desc["digest"])
        config = store.read_json(config_desc["digest"], "image config")
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        if len(diff_ids) != len(manifest.get("layers") or []):
            raise MinidockerError(f"image {config_desc['digest'][:19]}: config lists {len(diff_ids)} layers, "
                                  f"the manifest {len(manifest.get('layers') or [])}")
        layers = manifest.get("layers") or []
        present = [l["digest"] for l in layers if store.has_blob(l["digest"], l["size"])]
        missing = [l for l in layers if l["digest"] not in present]
        bars = _Bars(missing, progress)

        def get(layer):
            if client.download(store, layer, bars.update(layer)):
                written.append(layer["digest"])   # from any thread: list.append is atomic
                crash_point("pull-after-blob")
        try:
            with ThreadPoolExecutor(PARALLEL) as pool:
                try:
                    list(pool.map(get, missing))
                except BaseException:
                    client.cancelled.set()   # Ctrl-C or a failed layer: don't wait for the others to finish
                    raise
        finally:
            bars.close()
    except MinidockerError:
        images.discard(store, written)   # verified but now useless: leave the store as it was
        raise
    return {"ref": ref, "manifest_desc": {"mediaType": media, "digest": digest, "size": len(data)},
            "manifest": manifest, "chain": chain, "config": config,
            "downloaded": written[1:], "present": present}


def finish(store, done: dict) -> images.Image:
    """Unpack and name what fetch() brought; a layer that fails takes this pull's blobs with it."""
    ref = done["ref"]
    try:
        return images.register(store, done["manifest_desc"], None if ref.digest else str(ref),
                               repo_digest=f"{ref.name}@{done['chain'][0]['digest']}")   # an index's, if any
    except MinidockerError:
        images.discard(store, [done["manifest_desc"]["digest"]] + done["downloaded"])
        raise


def pull(store, name: str, platform=None, progress=True, client=None) -> images.Image:
    """docker pull: fetch, unpack and name an image; returns it."""
    return finish(store, fetch(store, name, platform, progress, client))


class _Bars:
    """One tqdm bar per layer being downloaded: terminal or notebook widget (tqdm.auto)."""

    def __init__(self, layers, enabled):
        self.bars = {}
        if not enabled or not layers:
            return
        from tqdm.auto import tqdm
        for i, layer in enumerate(layers):
            self.bars[layer["digest"]] = tqdm(total=layer["size"], unit="B", unit_scale=True, position=i,
                                              desc=layer["digest"][7:19], leave=True, mininterval=0.2)

    def update(self, layer):
        bar = self.bars.get(layer["digest"])
        return bar.update if bar else None

    def close(self):
        for bar in self.bars.values():
            bar.close()
