"""The store is an OCI image layout; blobs appear only once verified."""
import json
import os
import stat

import pytest

from minidocker import oci
from minidocker.errors import MinidockerError
from minidocker.store import Store


def test_a_new_store_is_an_oci_layout_closed_to_other_users(store_root):
    Store(store_root)
    assert json.loads((store_root / "images" / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    assert json.loads((store_root / "images" / "index.json").read_text())["manifests"] == []
    assert stat.S_IMODE(os.stat(store_root).st_mode) == 0o700


def test_a_directory_that_is_not_a_store_is_refused_and_left_alone(tmp_path):
    (tmp_path / "precious.txt").write_text("mine")
    with pytest.raises(MinidockerError, match="not a minidocker store"):
        Store(tmp_path)
    assert os.listdir(tmp_path) == ["precious.txt"]


def test_put_then_read_round_trips(store):
    desc = store.put(b'{"a":1}', oci.CONFIG)
    assert desc["digest"] == oci.sha256(b'{"a":1}') and desc["size"] == 7
    assert store.read(desc["digest"]) == b'{"a":1}'


@pytest.mark.parametrize("data, size, digest_of", [
    (b"truncated", 100, b"truncated" + b"x" * 91),
    (b"tampered!", 9, b"original!"),
])
def test_a_blob_that_fails_verification_never_appears(store, data, size, digest_of):
    with pytest.raises(MinidockerError):
        with store.writer(oci.sha256(digest_of), size) as w:
            w.write(data)
            w.commit()
    assert list(store.blobs.iterdir()) == []
    assert list((store.root / "ingest").iterdir()) == []


def test_a_corrupted_blob_is_detected_on_read(store):
    desc = store.put(b"hello", oci.CONFIG)
    path = store.blob_path(desc["digest"])
    os.chmod(path, 0o600)
    path.write_bytes(b"jello")
    with pytest.raises(MinidockerError, match="corrupt"):
        store.read(desc["digest"])


def test_debris_of_a_dead_writer_is_swept_but_a_live_one_is_not(store_root):
    store = Store(store_root)
    live = store.writer()
    live.write(b"in progress")
    dead = store_root / "ingest" / "deadbeef"
    dead.write_bytes(b"half a blob")
    (store_root / "layers" / ".tmp-dead").mkdir()
    Store(store_root)   # every command opens the store, and sweeps
    assert not dead.exists() and not (store_root / "layers" / ".tmp-dead").exists()
    assert live.path.exists()
    live.__exit__(None, None, None)


def test_tags_move_and_untagged_images_stay_listed(store):
    a = store.put(b"{}", oci.MANIFEST)
    b = store.put(b"{ }", oci.MANIFEST)
    store.set_tag("docker.io/library/x:1", a)
    store.set_tag("docker.io/library/x:1", b)
    refs = [(m["digest"], (m.get("annotations") or {}).get(oci.REF_NAME)) for m in store.index()["manifests"]]
    assert refs == [(b["digest"], "docker.io/library/x:1")]
    store.remove_tag("docker.io/library/x:1", keep_untagged=True)
    assert [m["digest"] for m in store.index()["manifests"]] == [b["digest"]]


def test_what_a_living_writer_has_not_named_yet_is_not_collected(store_root):
    """A pull or commit writes blobs before naming them; an rmi elsewhere must not take them."""
    import gc
    from minidocker import images
    writer = Store(store_root)
    pending = writer.put(b'{"pending":true}', oci.CONFIG)
    images.collect(Store(store_root))   # another process's rmi, in effect
    assert writer.has_blob(pending["digest"])
    del writer
    gc.collect()   # the writer is gone, and its lease with it
    images.collect(Store(store_root))
    assert not Store(store_root).has_blob(pending["digest"])
    assert list((store_root / "leases").iterdir()) == []
