"""The client against a scripted registry on 127.0.0.1 (http.server): the cases a real one won't produce."""
import base64
import gzip
import io
import json
import os
import stat
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from minidocker import auth, images, oci, pull
from minidocker.errors import MinidockerError
from minidocker.registry import Client

REPO = "minidocker/fake"


class Fake:
    """A tiny HTTP server: routes[(method, path)] -> (status, headers, body); records every request."""

    def __init__(self, host="127.0.0.1"):
        self.routes, self.seen = {}, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def handle_one(self):
                fake.seen.append((self.command, self.path, dict(self.headers)))
                route = fake.routes.get((self.command, self.path.split("?")[0]))
                if callable(route):
                    route = route(self)
                status, headers, body = route or (404, {}, b'{"errors":[{"code":"NAME_UNKNOWN","message":"no"}]}')
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                if "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_PUT = do_POST = handle_one

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.host = f"{host}:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake():
    f = Fake()
    yield f
    f.stop()


@pytest.fixture
def elsewhere():
    """Another host (127.0.0.2) for redirects: it must never see our credentials."""
    f = Fake("127.0.0.2")
    yield f
    f.stop()


def small_image(config_extra=None, layer_media=oci.LAYER_GZIP):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"hello\n"))
    plain = buf.getvalue()
    layer = gzip.compress(plain, mtime=0)
    config = oci.dumps({"architecture": "amd64", "os": "linux", "config": {},
                        "rootfs": {"type": "layers", "diff_ids": [oci.sha256(plain)]}, **(config_extra or {})})
    manifest = oci.dumps({"schemaVersion": 2, "mediaType": oci.MANIFEST, "config": oci.descriptor(oci.CONFIG, config),
                          "layers": [oci.descriptor(layer_media, layer)]})
    return manifest, config, layer


def serve(fake, manifest, config, layer, tag="v1"):
    for data in (config, layer):
        fake.routes[("GET", f"/v2/{REPO}/blobs/{oci.sha256(data)}")] = (200, {}, data)
    headers = {"Content-Type": oci.MANIFEST, "Docker-Content-Digest": oci.sha256(manifest)}
    fake.routes[("GET", f"/v2/{REPO}/manifests/{tag}")] = (200, headers, manifest)
    fake.routes[("GET", f"/v2/{REPO}/manifests/{oci.sha256(manifest)}")] = (200, headers, manifest)


def left_nothing(store):
    assert images.list_images(store) == []
    assert list(store.blobs.iterdir()) == []
    assert list((store.root / "ingest").iterdir()) == []


# -- WWW-Authenticate ------------------------------------------------------------------

@pytest.mark.parametrize("header, scheme, params", [
    ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
     "bearer", {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                "scope": "repository:library/busybox:pull"}),
    ('Bearer realm="http://127.0.0.1:1/token",service="s",scope="repository:a/b:pull,push"',
     "bearer", {"realm": "http://127.0.0.1:1/token", "service": "s", "scope": "repository:a/b:pull,push"}),
    ('Bearer realm="r", scope="repository:a:pull repository:b:pull,push", error="insufficient_scope"',
     "bearer", {"realm": "r", "scope": "repository:a:pull repository:b:pull,push", "error": "insufficient_scope"}),
    ('Basic realm="minidocker-test"', "basic", {"realm": "minidocker-test"}),
    ('Bearer realm="http://h/token",service="only"', "bearer", {"realm": "http://h/token", "service": "only"}),
    ('Basic realm="say \\"hi\\""', "basic", {"realm": 'say "hi"'}),
])
def test_challenges_are_parsed_with_quoted_commas(header, scheme, params):
    assert auth.parse_challenge(header) == (scheme, params)


# -- platforms -----------------------------------------------------------------------------

def entry(arch, os_="linux", variant=None, **annotations):
    platform = {"architecture": arch, "os": os_, **({"variant": variant} if variant else {})}
    return {"mediaType": oci.MANIFEST, "digest": oci.sha256(arch.encode() + bytes(variant or "", "ascii")),
            "size": 1, "platform": platform, **({"annotations": annotations} if annotations else {})}


def test_the_host_platform_is_chosen_and_attestations_never_are():
    att = entry("unknown", "unknown", **{"vnd.docker.reference.type": "attestation-manifest"})
    index = {"manifests": [entry("arm64", variant="v8"), att, entry("amd64"), entry("amd64", variant="v2")]}
    assert pull.select_platform(index, ("linux", "amd64", None)) == index["manifests"][2]
    assert pull.select_platform(index, ("linux", "arm64", "v8")) == index["manifests"][0]
    with pytest.raises(MinidockerError, match="no matching manifest for linux/s390x.*offered: linux/amd64"):
        pull.select_platform(index, ("linux", "s390x", None))
    with pytest.raises(MinidockerError, match="no matching manifest"):
        pull.select_platform({"manifests": [att]}, ("linux", "amd64", None))


# -- redirects and credentials ------------------------------------------------------------------

def test_a_redirect_to_another_host_does_not_carry_the_credentials(fake, elsewhere, store):
    manifest, config, layer = small_image()
    serve(fake, manifest, config, layer)
    layer_path = f"/v2/{REPO}/blobs/{oci.sha256(layer)}"
    elsewhere.routes[("GET", "/cdn/layer")] = (200, {}, layer)
    expected = "Basic " + base64.b64encode(b"student:s3cret").decode()

    def guarded(route):
        def handler(h):
            if h.headers.get("Authorization") != expected:
                return 401, {"WWW-Authenticate": 'Basic realm="fake"'}, b""
            return route
        return handler
    for key, route in list(fake.routes.items()):
        fake.routes[key] = guarded(route)
    fake.routes[("GET", layer_path)] = guarded((307, {"Location": f"http://{elsewhere.host}/cdn/layer"}, b""))
    client = Client(fake.host, REPO, credentials=("student", "s3cret"))
    image = pull.pull(store, f"{fake.host}/{REPO}:v1", progress=False, client=client)
    assert image.layers[0]["digest"] == oci.sha256(layer)
    assert [p for _, p, _ in elsewhere.seen] == ["/cdn/layer"]
    assert "Authorization" not in elsewhere.seen[0][2]
    assert any(h.get("Authorization") == expected for _, p, h in fake.seen if p == layer_path)


def test_layer_urls_are_ignored(fake, elsewhere, store):
    manifest, config, layer = small_image()
    doc = json.loads(manifest)
    doc["layers"][0]["urls"] = [f"http://{elsewhere.host}/foreign"]
    manifest = oci.dumps(doc)
    serve(fake, manifest, config, layer)
    pull.pull(store, f"{fake.host}/{REPO}:v1", progress=False)
    assert elsewhere.seen == []


def test_credentials_are_kept_in_a_private_file_and_forgotten_on_logout(store_root):
    auth.store_credentials("127.0.0.1:5000", "student", "s3cret", store_root)
    path = auth.credentials_path(store_root)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert b"s3cret" not in path.read_bytes()   # base64, as docker keeps it: not plain text at a glance
    assert auth.get_credentials("127.0.0.1:5000", store_root) == ("student", "s3cret")
    assert auth.remove_credentials("127.0.0.1:5000", store_root)
    assert auth.get_credentials("127.0.0.1:5000", store_root) is None
    assert not auth.remove_credentials("127.0.0.1:5000", store_root)


# -- retries ---------------------------------------------------------------------------------------

def test_429_and_503_are_retried_honouring_retry_after(fake, store):
    manifest, config, layer = small_image()
    serve(fake, manifest, config, layer)
    answers = [(429, {"Retry-After": "1"}, b""), (503, {"Retry-After": "2"}, b"")]
    ok = fake.routes[("GET", f"/v2/{REPO}/manifests/v1")]
    fake.routes[("GET", f"/v2/{REPO}/manifests/v1")] = lambda h: answers.pop(0) if answers else ok
    client = Client(fake.host, REPO)
    waits = []
    client.retry_sleep = waits.append
    pull.pull(store, f"{fake.host}/{REPO}:v1", progress=False, client=client)
    assert waits == [1.0, 2.0]


def test_retries_are_bounded(fake, store):
    fake.routes[("GET", f"/v2/{REPO}/manifests/v1")] = (429, {"Retry-After": "1", "ratelimit-limit": "100;w=21600"}, b"")
    client = Client(fake.host, REPO)
    waits = []
    client.retry_sleep = waits.append
    with pytest.raises(MinidockerError, match=r"toomanyrequests.*\(100 pulls per 21600 seconds\)"):
        pull.pull(store, f"{fake.host}/{REPO}:v1", progress=False, client=client)
    assert len(waits) == 4
    fake.routes[("GET", f"/v2/{REPO}/manifests/v1")] = (429, {"Retry-After": "3600"}, b"")
    with pytest.raises(MinidockerError, match="retry after 3600 s"):
        pull.pull(store, f"{fake.host}/{REPO}:v1", progress=False, client=client)


# -- bad input from the registry: one line, nothing left --------------------------------------------

def test_corrupt_and_truncated_blobs_leave_nothing(fake, store):
    manifest, config, layer = small_image()
    serve(fake, manifest, config, layer)
    path = ("GET", f"/v2/{REPO}/blobs/{oci.sha256(layer)}")
    fake.routes[path] = (200, {}, bytes([layer[0] ^ 1]) + layer[1:])
    with pytest.raises(MinidockerError, match="failed verification"):
        pull.pull(store, f"{fake.host}/{REPO}:v1", progress=False)
    left_nothing(store)
    fake.routes[path] = (200, {}, layer[:-10])
    with pytest.raises(MinidockerError, match="truncated"):
        pull.pull(store, f"{fake.host}/{REPO}:v1", progress=False)
    left_nothing(store)


def test_a_layer_whose_content_is_not_its_diff_id_leaves_nothing(fake, store):
    manifest, config, layer = small_image({"rootfs": {"type": "layers", "diff_ids": [oci.sha256(b"other")]}})
    serve(fake, manifest, config, layer)
    with pytest.raises(MinidockerError, match="corrupt"):
        pull.pull(store, f"{fake.host}/{REPO}:v1", progress=False)
    left_nothing(store)


@pytest.mark.parametrize("mutate, message", [
    (lambda m, h: (m + b" " * (4 * 1024 * 1024), h), "larger than 4194304"),
    (lambda m, h: (m, dict(h, **{"Docker-Content-Digest": oci.sha256(b"x")})), "failed verification"),
    (lambda m, h: (m, dict(h, **{"Content-Type": oci.DOCKER_MANIFEST})), "does not match its mediaType"),
    (lambda m, h: (oci.dumps(dict(json.loads(m), manifests=[])), {"Content-Type": oci.MANIFEST}),
     "both manifests and layers"),
    (lambda m, h: (b'{"schemaVersion":1,"name":"x"}', {"Content-Type": "application/vnd.docker.distribution.manifest.v1+prettyjws"}),
     "schema 1"),
    (lambda m, h: (b"not json", {"Content-Type": oci.MANIFEST}), "not valid JSON"),
    (lambda m, h: (m.replace(b'"digest":"sha256:', b'"digest":"sha256:../../', 2), {"Content-Type": oci.MANIFEST}),
     "invalid digest"),
])
def test_bad_manifests_are_refused(fake, store, mutate, message):
    manifest, config, layer = small_image()
    serve(fake, manifest, config, layer)
    status, headers, _ = fake.routes[("GET", f"/v2/{REPO}/manifests/v1")]
    body, headers = mutate(manifest, headers)
    fake.routes[("GET", f"/v2/{REPO}/manifests/v1")] = (status, headers, body)
    with pytest.raises(MinidockerError, match=message):
        pull.pull(store, f"{fake.host}/{REPO}:v1", progress=False)
    left_nothing(store)


def test_a_digest_pull_checks_the_bytes(fake, store):
    manifest, config, layer = small_image()
    serve(fake, manifest, config, layer)
    other = manifest.replace(b'"schemaVersion":2', b'"schemaVersion": 2')
    fake.routes[("GET", f"/v2/{REPO}/manifests/{oci.sha256(manifest)}")] = (200, {"Content-Type": oci.MANIFEST}, other)
    with pytest.raises(MinidockerError, match="failed verification"):
        pull.pull(store, f"{fake.host}/{REPO}@{oci.sha256(manifest)}", progress=False)
    left_nothing(store)


def test_an_artifact_is_not_a_runnable_image(fake, store):
    empty = b"{}"
    manifest = oci.dumps({"schemaVersion": 2, "mediaType": oci.MANIFEST, "artifactType": "application/vnd.cncf.helm.chart",
                          "config": oci.descriptor("application/vnd.oci.empty.v1+json", empty), "layers": []})
    fake.routes[("GET", f"/v2/{REPO}/manifests/v1")] = (200, {"Content-Type": oci.MANIFEST}, manifest)
    with pytest.raises(MinidockerError, match="not a runnable image.*helm"):
        pull.pull(store, f"{fake.host}/{REPO}:v1", progress=False)
    left_nothing(store)


def test_unauthorized_without_credentials(fake, store):
    fake.routes[("GET", f"/v2/{REPO}/manifests/v1")] = (401, {"WWW-Authenticate": 'Basic realm="x"'}, b"")
    with pytest.raises(MinidockerError, match="unauthorized: anonymous"):
        pull.pull(store, f"{fake.host}/{REPO}:v1", progress=False)
    left_nothing(store)


@pytest.mark.parametrize("name", ["127.0.0.1:1/a/../../b:v1", "127.0.0.1:1/a:../x", "127.0.0.1:1/Upper:v1",
                                  "127.0.0.1:1/a:" + "x" * 129, "127.0.0.1:1/a@sha256:abc"])
def test_bad_names_are_refused_before_any_request(store, name):
    with pytest.raises(MinidockerError, match="invalid reference format"):
        pull.pull(store, name, progress=False)
