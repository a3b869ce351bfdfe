"""The content store: an OCI image layout, plus the unpacked layers.

    <root>/                         /var/lib/minidocker or $MINIDOCKER_ROOT, mode 0700
      images/                       an OCI image layout:
        oci-layout                    {"imageLayoutVersion": "1.0.0"}
        index.json                    one entry per tag (annotation ref.name), or untagged
        blobs/sha256/<hex>            manifests, configs and layer tars, named by digest
      ingest/                       blobs being written; never visible under blobs/
      leases/                       one locked file per process writing blobs (leases.py)
      layers/<chain hex>/diff       one unpacked directory per layer (an overlay lowerdir)
      containers/ volumes/ ...      the engine's

Because images/ *is* an OCI image layout, skopeo, umoci and oci-image-tool read
it as it is (`umoci unpack --image <root>/images:busybox:latest ...`). The
unpacked layers live beside it, not in it: they hold overlay whiteouts (0/0
character devices), which oci-image-tool would try to open and read. A blob appears under blobs/ only once its digest and size are
verified, and an unpacked layer appears under layers/ only once it is complete:
both are written elsewhere and renamed into place, so a crash leaves debris in
ingest/ or layers/.tmp-*, which the next command sweeps, never a broken blob.
"""
import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from pathlib import Path

from . import oci
from .errors import MinidockerError, NotFound
from .files import Lock, atomic_write, crash_point, fsync_dir, read_json, remove_tree

DEFAULT_ROOT = "/var/lib/minidocker"
LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


def default_root() -> Path:
    return Path(os.environ.get("MINIDOCKER_ROOT") or DEFAULT_ROOT)


class Store:
    """An OCI image layout on disk, with a lock for changes."""

    def __init__(self, root=None):
        self.root = Path(root) if root else default_root()
        self.layout = self.root / "images"
        self.blobs = self.layout / "blobs" / "sha256"
        self.layers = self.root / "layers"
        self._create_or_check()
        self.lock = Lock(self.root / "lock")
        self._lease = None
        self.sweep()

    def _create_or_check(self):
        layout = self.layout / "oci-layout"
        if self.root.exists():
            if not self.root.is_dir():
                raise MinidockerError(f"{self.root} is not a directory, so it cannot be a minidocker store")
            if not layout.exists() and any(self.root.iterdir()):
                raise MinidockerError(f"{self.root} is not a minidocker store (it has files but no images/oci-layout); "
                                      "point MINIDOCKER_ROOT at an empty directory")
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)   # image files may be setuid: keep host users out (CVE-2021-41091)
        if layout.exists():
            try:
                version = json.loads(layout.read_bytes())["imageLayoutVersion"]
            except (ValueError, KeyError, TypeError):
                raise MinidockerError(f"{layout} is damaged") from None
            if version != "1.0.0":
                raise MinidockerError(f"{self.root}: unsupported image layout version {version!r}")
        for d in (self.blobs, self.root / "ingest", self.layers, self.root / "containers"):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not (self.layout / "index.json").exists():
            atomic_write(self.layout / "index.json", oci.dumps(_empty_index()), 0o600)
        if not layout.exists():
            atomic_write(layout, LAYOUT, 0o600)

    # -- blobs -------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        return self.blobs / oci.check_digest(digest).split(":", 1)[1]

    def has_blob(self, digest: str, size: int = None) -> bool:
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def writer(self, digest: str = None, size: int = None) -> "BlobWriter":
        """A writer for one blob; the expected digest and size are checked on commit."""
        self.lease()
        return BlobWriter(self, digest, size)

    def lease(self) -> None:
        """Protect what this Store writes from now on until it is dropped (leases.py)."""
        if self._lease is None:
            from . import leases
            self._lease = leases.take(self.root)

    def oldest_other_lease(self):
        """mtime (ns) of the oldest lease another living writer holds, or None."""
        from . import leases
        return leases.oldest(self.root, self._lease)

    def put(self, data: bytes, media_type: str) -> dict:
        """Store bytes we hold in memory; returns their descriptor."""
        desc = oci.descriptor(media_type, data)
        if not self.has_blob(desc["digest"], desc["size"]):
            with self.writer(desc["digest"], desc["size"]) as w:
                w.write(data)
                w.commit()
        return desc

    def read(self, digest: str, limit: int = oci.MAX_JSON_SIZE) -> bytes:
        """The verified bytes of a (small) blob: a corrupt one is an error, never used."""
        path = self.blob_path(digest)
        try:
            if path.stat().st_size > limit:
                raise MinidockerError(f"blob {digest} is larger than {limit} bytes")
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFound(f"blob {digest} is missing from the store") from None
        if oci.sha256(data) != digest:
            raise MinidockerError(f"blob {digest} is corrupt (its content does not match its digest)")
        return data

    def read_json(self, digest: str, what: str) -> dict:
        return oci.loads(self.read(digest), f"{what} {digest[:19]}")

    def remove_blob(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.blob_path(digest).unlink()

    # -- index.json: which manifests the store holds, and their tags ----------

    def index(self) -> dict:
        index = read_json(self.layout / "index.json")
        index.setdefault("manifests", [])
        return index

    def write_index(self, index: dict) -> None:
        atomic_write(self.layout / "index.json", oci.dumps(index), 0o600)

    def set_tag(self, ref_name: str, desc: dict, annotations=None) -> None:
        """Point `ref_name` at a manifest, moving the tag if it pointed elsewhere."""
        with self.lock:
            index = self.index()
            keep = [m for m in index["manifests"] if _ref(m) != ref_name
                    and not (_ref(m) is None and m["digest"] == desc["digest"])]
            entry = {k: desc[k] for k in ("mediaType", "digest", "size")}
            entry["annotations"] = {**(annotations or {}), oci.REF_NAME: ref_name}
            index["manifests"] = keep + [entry]
            self.write_index(index)

    def remove_tag(self, ref_name: str, keep_untagged: bool) -> dict:
        """Drop a tag; keep the manifest as an untagged image if asked and nothing else names it."""
        with self.lock:
            index = self.index()
            entries = [m for m in index["manifests"] if _ref(m) == ref_name]
            if not entries:
                raise NotFound(f"No such image: {ref_name}")
            desc = entries[0]
            rest = [m for m in index["manifests"] if _ref(m) != ref_name]
            if keep_untagged and not any(m["digest"] == desc["digest"] for m in rest):
                rest.append({k: desc[k] for k in ("mediaType", "digest", "size")})
            index["manifests"] = rest
            self.write_index(index)
            return desc

    def add_untagged(self, desc: dict, annotations=None) -> None:
        with self.lock:
            index = self.index()
            if not any(m["digest"] == desc["digest"] for m in index["manifests"]):
                entry = {k: desc[k] for k in ("mediaType", "digest", "size")}
                if annotations:
                    entry["annotations"] = dict(annotations)
                index["manifests"].append(entry)
                self.write_index(index)

    def forget(self, manifest_digest: str) -> None:
        """Remove every index entry of a manifest (its blobs are collected separately)."""
        with self.lock:
            index = self.index()
            index["manifests"] = [m for m in index["manifests"] if m["digest"] != manifest_digest]
            self.write_index(index)

    # -- unpacked layers ------------------------------------------------------

    def layer_dir(self, chain_id: str) -> Path:
        return self.layers / oci.check_digest(chain_id).split(":", 1)[1]

    def unpack(self, chain_id: str, blob_digest: str, diff_id: str) -> Path:
        """Unpack a layer blob once; every image and container with it shares the result."""
        final = self.layer_dir(chain_id)
        if final.exists():
            return final / "diff"
        from . import layers   # the tar machinery: not for every start of a container
        self.lease()
        tmp = self.layers / f".tmp-{secrets.token_hex(8)}"
        tmp.mkdir(mode=0o700)
        fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        fcntl.flock(fd, fcntl.LOCK_EX)   # a held lock tells sweep() we are alive
        try:
            try:
                with open(self.blob_path(blob_digest), "rb") as f:
                    got = layers.unpack(layers.open_layer(f), tmp / "diff")
            except FileNotFoundError:
                raise NotFound(f"layer blob {blob_digest} is missing from the store") from None
            if got != diff_id:
                raise MinidockerError(f"layer {blob_digest[:19]} is corrupt: its content is {got[:19]}, "
                                      f"the image config says {diff_id[:19]}")
            atomic_write(tmp / "meta.json", oci.dumps({"diff_id": diff_id, "chain_id": chain_id,
                                                       "size": _disk_size(tmp / "diff")}))
            crash_point("layer-before-rename")
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.exists():
                    raise
                # Another process unpacked the same layer first: theirs is as good as ours.
            fsync_dir(self.layers)
        finally:
            os.close(fd)
            if tmp.exists():
                remove_tree(tmp)
        return final / "diff"

    def layer_size(self, chain_id: str) -> int:
        try:
            return read_json(self.layer_dir(chain_id) / "meta.json")["size"]
        except FileNotFoundError:
            return 0

    # -- crash recovery -------------------------------------------------------

    def sweep(self) -> None:
        """Delete what an interrupted writer left: partial blobs and partial layers.

        A live writer holds a flock on its file or directory, so anything we can
        lock belongs to a process that died.
        """
        for entry in list((self.root / "ingest").iterdir()) + list(self.layers.glob(".tmp-*")):
            try:
                fd = os.open(entry, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            finally:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                remove_tree(entry)


class BlobWriter:
    """Streams one blob into ingest/, hashing as it goes; commit() verifies and renames."""

    def __init__(self, store: Store, digest: str = None, size: int = None):
        self.store, self.digest, self.size = store, digest and oci.check_digest(digest), size
        self.path = store.root / "ingest" / secrets.token_hex(16)
        self.file = open(self.path, "xb")
        os.fchmod(self.file.fileno(), 0o600)
        fcntl.flock(self.file.fileno(), fcntl.LOCK_EX)
        self.hash = hashlib.sha256()
        self.written = 0
        self.committed = None

    def write(self, chunk: bytes) -> None:
        if self.size is not None and self.written + len(chunk) > self.size:
            raise MinidockerError(f"blob {self.digest} is larger than the {self.size} bytes announced")
        self.hash.update(chunk)
        self.written += len(chunk)
        self.file.write(chunk)

    def commit(self) -> str:
        """Check size and digest, then make the blob visible under blobs/."""
        digest = "sha256:" + self.hash.hexdigest()
        if self.size is not None and self.written != self.size:
            raise MinidockerError(f"blob {self.digest} is truncated: {self.written} of {self.size} bytes")
        if self.digest is not None and digest != self.digest:
            raise MinidockerError(f"blob {self.digest} failed verification: its content is {digest}")
        self.file.flush()
        os.fsync(self.file.fileno())
        os.rename(self.path, self.store.blob_path(digest))
        fsync_dir(self.store.blobs)
        self.committed = digest
        return digest

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()
        if self.committed is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)


def _ref(entry: dict):
    return (entry.get("annotations") or {}).get(oci.REF_NAME)


def _empty_index() -> dict:
    return {"schemaVersion": 2, "mediaType": oci.INDEX, "manifests": []}


def _disk_size(path: Path) -> int:
    """Bytes of file content under `path`, counting each hardlinked file once."""
    total, seen = 0, set()
    for dirpath, dirnames, filenames in os.walk(path):
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total
