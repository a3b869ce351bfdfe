"""docker push: blobs first, the manifest last, so the tag never names a partial image.

For each blob (layers, then config):
    HEAD blobs/<digest>                 200: the registry has it, skip
    POST blobs/uploads/?mount=&from=    201: mounted from another repository, no bytes sent
    POST blobs/uploads/                 202 + Location: an upload session
      monolithic:  PUT <Location>&digest=<d>  with the whole blob
      chunked:     PATCH <Location> (Content-Range) ... then PUT <Location>&digest=<d>
Then PUT manifests/<tag> with the manifest's exact bytes, so its digest is unchanged.
"""
from urllib.parse import urlencode, urljoin

from . import images, oci, reference
from .errors import MinidockerError
from .registry import Client

CHUNK = 16 << 20      # blobs above this go in chunks of this size


def push(store, name: str, progress=True, chunk_size=None, client=None) -> dict:
    """Push a local image to the registry its name points at; returns the manifest descriptor."""
    image = images.get(store, name)
    ref = reference.parse(name)
    if ref.digest:
        raise MinidockerError("cannot push a digest reference: push a tag")
    client = client or Client(ref.registry, ref.repository, root=store.root)
    mount_from = [r.repository for r in map(reference.parse, image.tags)
                  if r.registry == ref.registry and r.repository != ref.repository]
    bars = _bars(image.layers, progress)
    try:
        for desc in image.layers + [image.manifest["config"]]:
            upload(client, store, desc, mount_from, chunk_size, bars.get(desc["digest"]))
    finally:
        for bar in bars.values():
            bar.close()
    data = store.read(image.manifest_desc["digest"])
    media = image.manifest.get("mediaType") or image.manifest_desc["mediaType"]
    r = client.request("PUT", f"/v2/{ref.repository}/manifests/{ref.tag}", push=True, ok=(201, 200),
                       headers={"Content-Type": media}, data=data, what=str(ref))
    digest = oci.sha256(data)
    if r.headers.get("Docker-Content-Digest", digest) != digest:
        raise MinidockerError(f"{ref}: the registry stored the manifest as {r.headers['Docker-Content-Digest']}, not {digest}")
    return {"mediaType": media, "digest": digest, "size": len(data)}


def upload(client: Client, store, desc: dict, mount_from=(), chunk_size=None, bar=None) -> str:
    """Send one blob unless the registry has it; returns 'exists', 'mounted' or 'uploaded'."""
    digest, size = desc["digest"], desc["size"]
    if client.has_blob(digest, push=True):
        if bar:
            bar.update(size)
        return "exists"
    uploads = f"/v2/{client.repository}/blobs/uploads/"
    for source in mount_from:
        scope = f"{client.scope(True)} repository:{source}:pull"
        r = client.request("POST", uploads + "?" + urlencode({"mount": digest, "from": source}), push=True,
                           scope=scope, ok=(201, 202), headers={"Content-Length": "0"})
        if r.status_code == 201:
            if bar:
                bar.update(size)
            return "mounted"
        _cancel(client, r)   # 202: the registry started a plain upload instead; we start our own
    r = client.request("POST", uploads, push=True, ok=(202,), headers={"Content-Length": "0"})
    location = urljoin(r.url, r.headers["Location"])
    path = store.blob_path(digest)
    chunk = chunk_size or (CHUNK if size > CHUNK else None)
    if chunk:
        location = _patch_chunks(client, path, size, location, chunk, bar)
        body = b""
    else:
        def body():
            return _Reader(path, bar)
    client.request("PUT", _with_digest(location, digest), push=True, ok=(201,), data=body,
                       headers={"Content-Type": "application/octet-stream"},
                       what=f"upload of blob {digest[:19]}")
    return "uploaded"


def _patch_chunks(client, path, size, location, chunk, bar) -> str:
    with open(path, "rb") as f:
        start = 0
        while start < size:
            data = f.read(chunk)
            end = start + len(data) - 1
            r = client.request("PATCH", location, push=True, ok=(202,), data=data,
                               headers={"Content-Type": "application/octet-stream",
                                        "Content-Range": f"{start}-{end}", "Content-Length": str(len(data))})
            location = urljoin(r.url, r.headers["Location"])   # always the newest Location
            start = end + 1
            if bar:
                bar.update(len(data))
    return location


def _with_digest(location: str, digest: str) -> str:
    # The Location may carry its own query (_state=...): append, never replace.
    return location + ("&" if "?" in location else "?") + urlencode({"digest": digest})


def _cancel(client, r) -> None:
    if "Location" in r.headers:
        client.request("DELETE", urljoin(r.url, r.headers["Location"]), push=True, ok=(202, 204, 404))


class _Reader:
    """A blob file that counts what is read on a progress bar; its len() sets Content-Length."""

    def __init__(self, path, bar):
        self.file, self.bar = open(path, "rb"), bar
        self.size = self.file.seek(0, 2)
        self.file.seek(0)

    def __len__(self):
        return self.size

    def read(self, n=-1):
        piece = self.file.read(n)
        if self.bar:
            self.bar.update(len(piece))
        if not piece:
            self.file.close()
        return piece


def _bars(layers, enabled) -> dict:
    if not enabled:
        return {}
    from tqdm.auto import tqdm
    return {l["digest"]: tqdm(total=l["size"], unit="B", unit_scale=True, position=i, desc=l["digest"][7:19])
            for i, l in enumerate(layers)}
