"""Builders of layer tars, benign and malicious, for the layer tests.

Each helper returns a (TarInfo, data) member; `tar_bytes(*members)` packs them
in the order given, so a test can place entries exactly where an attack needs
them. GNU format allows the out-of-range device numbers some attacks use.
"""
import gzip
import io
import tarfile

import zstandard

MTIME = 1700000000


def _info(name, type_, mode, uid=0, gid=0, mtime=MTIME, xattrs=None):
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.uid, info.gid, info.mtime = type_, mode, uid, gid, mtime
    if xattrs:
        # binary values travel as surrogate-escaped str, the way tarfile reads them
        info.pax_headers = {"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape")
                            for k, v in xattrs.items()}
    return info


def reg(name, data=b"", mode=0o644, **kw):
    info = _info(name, tarfile.REGTYPE, mode, **kw)
    info.size = len(data)
    return info, data


def dir_(name, mode=0o755, **kw):
    return _info(name, tarfile.DIRTYPE, mode, **kw), b""


def sym(name, target, **kw):
    info = _info(name, tarfile.SYMTYPE, 0o777, **kw)
    info.linkname = target
    return info, b""


def hard(name, target, mode=0o644, **kw):
    info = _info(name, tarfile.LNKTYPE, mode, **kw)
    info.linkname = target
    return info, b""


def dev(name, kind="c", major=1, minor=3, mode=0o666, **kw):
    info = _info(name, tarfile.CHRTYPE if kind == "c" else tarfile.BLKTYPE, mode, **kw)
    info.devmajor, info.devminor = major, minor
    return info, b""


def fifo(name, mode=0o644, **kw):
    return _info(name, tarfile.FIFOTYPE, mode, **kw), b""


def whiteout(path, **kw):
    """`.wh.NAME` for `dir/NAME`."""
    head, _, base = path.rpartition("/")
    return reg((head + "/" if head else "") + ".wh." + base, mode=0o600, **kw)


def opaque(dirpath):
    return reg(dirpath.rstrip("/") + "/.wh..wh..opq", mode=0o600)


def tar_bytes(*members, format=tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=format) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def gnu_tar_bytes(*members) -> bytes:
    """GNU format: base-256 numbers, so negative or huge device numbers can be written."""
    return tar_bytes(*members, format=tarfile.GNU_FORMAT)


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def zst(data: bytes, with_size=False) -> bytes:
    return zstandard.ZstdCompressor(write_content_size=with_size).compress(data)


def tree(root, times="all") -> dict:
    """Everything a layer can say about a tree: path -> (type, mode, owner, content, mtime, xattrs).

    times: "all", "files" (not directories, which overlay copy-up touches), "seconds"
    (files, whole seconds: what a layer tar keeps) or None.
    """
    import hashlib
    import os
    import stat
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(kind):
                with open(path, "rb") as f:
                    content = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(kind):
                content = os.readlink(path)
            elif stat.S_ISCHR(kind) or stat.S_ISBLK(kind):
                content = (os.major(st.st_rdev), os.minor(st.st_rdev))
            else:
                content = None
            xattrs = tuple(sorted((k, os.getxattr(path, k, follow_symlinks=False))
                                  for k in os.listxattr(path, follow_symlinks=False)
                                  if k.startswith("user.") or k == "security.capability"))
            mtime = st.st_mtime_ns if times == "all" or (times and not stat.S_ISDIR(kind)) else None
            if times == "seconds" and mtime is not None:
                mtime //= 10**9
            out[os.path.relpath(path, root)] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                                                content, mtime, xattrs)
    return out


def oci_layout(path, tars):
    """A minimal OCI image layout with `tars` as gzip layers, tagged `latest` (for umoci)."""
    import hashlib
    import json
    blobs = path / "blobs/sha256"
    blobs.mkdir(parents=True)

    def put(data):
        digest = hashlib.sha256(data).hexdigest()
        (blobs / digest).write_bytes(data)
        return "sha256:" + digest

    descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(gzip.compress(t, mtime=0)),
              "size": len(gzip.compress(t, mtime=0))} for t in tars]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(t).hexdigest()
                                                                   for t in tars]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": put(config), "size": len(config)},
                           "layers": descs}).encode()
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                "digest": put(manifest), "size": len(manifest),
                                                "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
    (path / "index.json").write_text(json.dumps(index))
    (path / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
