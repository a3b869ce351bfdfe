"""OCI vocabulary: media types, digests, descriptors, chain IDs, platforms.

An image is a small tree of JSON documents joined by digests:

    index (optional, one per platform)  ->  manifest  ->  config  (the image ID is its digest)
                                                     \\->  layers  (compressed tars, in order)

A *digest* names bytes: "sha256:" + the hex SHA-256 of exactly those bytes.
A *descriptor* points at a blob: {"mediaType", "digest", "size"}.
A layer has two names: its digest (of the compressed blob) and its diff_id
(of the uncompressed tar, listed in the config). Unpacked layers are keyed by
*chain ID*, which names a layer together with everything under it.
"""
import hashlib
import json
import os
import re

from .errors import MinidockerError

Digest = str  # "sha256:<64 hex>"

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

INDEX_TYPES = (INDEX, DOCKER_LIST)
MANIFEST_TYPES = (MANIFEST, DOCKER_MANIFEST)
CONFIG_TYPES = (CONFIG, DOCKER_CONFIG)
LAYER_TYPES = (LAYER, LAYER_GZIP, LAYER_ZSTD, DOCKER_LAYER_GZIP,
               "application/vnd.oci.image.layer.nondistributable.v1.tar",
               "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
               "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
               "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip")

# Manifests and configs are small; a bigger one is an attack on our memory.
MAX_JSON_SIZE = 4 * 1024 * 1024
REF_NAME = "org.opencontainers.image.ref.name"

_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")


def sha256(data: bytes) -> Digest:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(digest: str) -> Digest:
    """Refuse anything but sha256:<64 hex> before it is used to build a path."""
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise MinidockerError(f"invalid digest {digest!r}")
    return digest


def descriptor(media_type: str, data: bytes, **extra) -> dict:
    return {"mediaType": media_type, "digest": sha256(data), "size": len(data), **extra}


def chain_ids(diff_ids: list) -> list:
    """ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln))."""
    chain = []
    for diff_id in diff_ids:
        chain.append(diff_id if not chain else sha256(f"{chain[-1]} {diff_id}".encode()))
    return chain


def dumps(obj) -> bytes:
    """Serialise a document we create. Done once: its bytes are then what we hash and keep."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=False).encode()


def loads(data: bytes, what: str) -> dict:
    """Parse a JSON document from a blob, with a clear error when it is not one."""
    if len(data) > MAX_JSON_SIZE:
        raise MinidockerError(f"{what} is larger than {MAX_JSON_SIZE} bytes")
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise MinidockerError(f"{what} is not valid JSON") from None
    if not isinstance(doc, dict):
        raise MinidockerError(f"{what} is not a JSON object")
    return doc


def platform_matches(platform: dict, os_: str = "linux", arch: str = "amd64", variant=None) -> bool:
    """Does an index entry's platform fit? Attestations (unknown/unknown) never do."""
    if not platform or platform.get("os") != os_ or platform.get("architecture") != arch:
        return False
    return variant is None or platform.get("variant") == variant


def host_platform() -> tuple:
    """(os, architecture, variant) of this machine in OCI's words."""
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386",
            "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}.get(machine, machine)
    variant = {"arm64": "v8", "arm": "v7"}.get(arch)
    return "linux", arch, variant


def parse_platform(text: str) -> tuple:
    """'linux/arm64/v8' -> ('linux', 'arm64', 'v8')."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise MinidockerError(f"invalid platform {text!r}: expected os/arch[/variant]")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else None
