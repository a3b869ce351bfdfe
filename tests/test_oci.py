"""Digests, chain IDs and platforms, checked against the spec's own vectors."""
import hashlib

import pytest

from minidocker import oci
from minidocker.errors import MinidockerError


def test_chain_id_follows_the_image_spec():
    a, b = "sha256:a", "sha256:b"
    expected = "sha256:" + hashlib.sha256(b"sha256:a sha256:b").hexdigest()
    assert oci.chain_ids([a, b]) == [a, expected]
    assert oci.chain_ids([]) == []


def test_a_digest_names_exact_bytes():
    assert oci.sha256(b"") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


@pytest.mark.parametrize("bad", ["sha256:../../x", "sha256:" + "A" * 64, "sha256:" + "a" * 63,
                                 "md5:" + "a" * 32, "sha256:" + "a" * 64 + "\0", None])
def test_digests_are_validated_before_they_become_paths(bad):
    with pytest.raises(MinidockerError):
        oci.check_digest(bad)


def test_platform_matching_skips_attestations():
    assert oci.platform_matches({"os": "linux", "architecture": "amd64"})
    assert not oci.platform_matches({"os": "unknown", "architecture": "unknown"})
    assert oci.platform_matches({"os": "linux", "architecture": "arm64", "variant": "v8"}, "linux", "arm64", "v8")
    assert not oci.platform_matches({"os": "linux", "architecture": "arm64"}, "linux", "arm64", "v8")


def test_oversized_or_non_object_json_is_refused():
    with pytest.raises(MinidockerError):
        oci.loads(b"[]", "manifest")
    with pytest.raises(MinidockerError):
        oci.loads(b"{" + b" " * oci.MAX_JSON_SIZE + b"}", "manifest")
    with pytest.raises(MinidockerError):
        oci.loads(b"{not json", "manifest")
