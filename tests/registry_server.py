"""Real registries for the tests: Debian's docker-registry on 127.0.0.1 at a free port.

Three flavours, as a module-scoped fixture each: no auth, htpasswd (Basic), and
token auth with a small token server (http.server + PyJWT, RS256, x5c header)
whose policy is: anonymous may pull, `student` may pull and push.
"""
import base64
import datetime
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

USER, PASSWORD = "student", "s3cret"
SERVICE, ISSUER = "minidocker-registry", "minidocker-token-issuer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Registry:
    """A docker-registry process; `host` is 127.0.0.1:<port>."""

    def __init__(self, workdir: Path, auth: str = "none"):
        self.dir, self.auth = Path(workdir), auth
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        self.proc = self.token_server = None

    def config(self) -> str:
        lines = ["version: 0.1", "log: {level: warn}",
                 f"storage: {{filesystem: {{rootdirectory: {self.dir}/data}}, delete: {{enabled: true}}}}",
                 f"http: {{addr: '{self.host}', secret: minidocker-test-secret}}"]
        if self.auth == "htpasswd":
            out = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True)
            (self.dir / "htpasswd").write_text(out.stdout)
            lines.append(f"auth: {{htpasswd: {{realm: minidocker-test, path: {self.dir}/htpasswd}}}}")
        elif self.auth == "token":
            self.token_server = TokenServer(self.dir)
            lines.append(f"auth: {{token: {{realm: '{self.token_server.url}/token', service: {SERVICE}, "
                         f"issuer: {ISSUER}, rootcertbundle: {self.token_server.cert_path}}}}}")
        return "\n".join(lines) + "\n"

    def start(self):
        (self.dir / "config.yml").write_text(self.config())
        self.log = open(self.dir / "log", "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.dir / "config.yml")],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/v2/", timeout=1).status_code in (200, 401):
                    return self
            except requests.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("docker-registry did not start: " + (self.dir / "log").read_text()[-2000:])

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.log.close()
            self.proc = None
        if self.token_server:
            self.token_server.stop()


class TokenServer:
    """Issues registry tokens: anonymous gets pull, student:s3cret gets pull and push."""

    def __init__(self, workdir: Path):
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
        self.cert_path = Path(workdir) / "token.crt"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.key = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
        self.x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        self.requests = []       # (user, scopes) per token request, for the tests
        self.expires_in = 300
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.handle(self)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def handle(self, h):
        import jwt
        query = parse_qs(urlsplit(h.path).query)
        user = None
        header = h.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if (user, password) != (USER, PASSWORD):
                h.send_response(401)
                h.end_headers()
                return
        scopes = query.get("scope", [])
        self.requests.append((user, scopes))
        access = []
        for scope in scopes:
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            allowed = {"pull", "push"} if user == USER else {"pull"}
            granted = [a for a in actions.split(",") if a in allowed]
            access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": query.get("service", [""])[0], "sub": user or "", "iat": now,
                  "nbf": now - 10, "exp": now + self.expires_in, "jti": uuid.uuid4().hex, "access": access}
        token = jwt.encode(claims, self.key, algorithm="RS256", headers={"x5c": [self.x5c]})
        body = json.dumps({"token": token, "access_token": token, "expires_in": self.expires_in}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _registry(tmp_path_factory, auth):
    if not shutil.which("docker-registry"):
        pytest.fail("docker-registry is not installed (script/bootstrap installs it)")
    reg = Registry(tmp_path_factory.mktemp(f"registry-{auth}"), auth).start()
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A registry without authentication."""
    yield from _registry(tmp_path_factory, "none")


@pytest.fixture(scope="module")
def htpasswd_registry(tmp_path_factory):
    yield from _registry(tmp_path_factory, "htpasswd")


@pytest.fixture(scope="module")
def token_registry(tmp_path_factory):
    yield from _registry(tmp_path_factory, "token")


@pytest.fixture
def podman(tmp_path):
    """podman with storage of its own under tmp_path; removed (and unmounted) afterwards."""
    runroot = tempfile.mkdtemp(prefix="mdpodman-")   # podman wants a runroot under 50 characters
    base = ["podman", "--root", str(tmp_path / "podman-store"), "--runroot", runroot,
            "--storage-driver", "overlay", "--cgroup-manager", "cgroupfs", "--events-backend", "file"]

    def run(*args, check=True):
        r = subprocess.run(base + list(args), capture_output=True, text=True)
        assert r.returncode == 0 or not check, r.stderr
        return r
    yield run
    run("rmi", "-a", "-f", check=False)
    subprocess.run(base + ["system", "reset", "-f"], capture_output=True)
    for line in reversed(open("/proc/self/mountinfo").read().splitlines()):
        point = line.split()[4]
        if point.startswith((str(tmp_path), runroot)):
            subprocess.run(["umount", "-l", point])
    shutil.rmtree(runroot, ignore_errors=True)


_POLICY = []


def skopeo(*args, check=True):
    """Run skopeo with its own policy (accept anything: these are our own test images)."""
    if not _POLICY:
        import atexit
        fd, path = tempfile.mkstemp(prefix="minidocker-skopeo-policy-", suffix=".json")
        os.write(fd, b'{"default":[{"type":"insecureAcceptAnything"}]}')
        os.close(fd)
        atexit.register(os.unlink, path)   # leave nothing behind on the host
        _POLICY.append(path)
    return subprocess.run(["skopeo", "--policy", _POLICY[0], *args], capture_output=True, text=True, check=check)


def build_image(store, tag: str):
    """A small runnable image of our own: busybox + applet links, then a layer with a whiteout.

    layer 1: bin/busybox, bin/{sh,cat,ls,echo,id}, etc/motd, etc/issue, tmp (1777)
    layer 2: a new etc/motd, etc/.wh.issue (deletes issue), usr/bin/su-like (4755)
    """
    import io
    import tarfile

    from minidocker import images
    from minidocker.bootstrap import find_busybox

    def layer(entries):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, kind, mode, data in entries:
                info = tarfile.TarInfo(name)
                info.type, info.mode, info.mtime = kind, mode, 1700000000
                if kind == tarfile.SYMTYPE:
                    info.linkname = data
                elif kind == tarfile.REGTYPE:
                    info.size = len(data)
                tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        buf.seek(0)
        return images.add_layer(store, buf)

    d, f, s = tarfile.DIRTYPE, tarfile.REGTYPE, tarfile.SYMTYPE
    first = [("bin", d, 0o755, None), ("bin/busybox", f, 0o755, find_busybox().read_bytes())]
    first += [(f"bin/{a}", s, 0o777, "busybox") for a in ("sh", "cat", "ls", "echo", "id")]
    first += [("etc", d, 0o755, None), ("etc/motd", f, 0o644, b"layer 1\n"), ("etc/issue", f, 0o644, b"gone\n"),
              ("tmp", d, 0o1777, None)]
    second = [("etc", d, 0o755, None), ("etc/.wh.issue", f, 0o644, b""), ("etc/motd", f, 0o644, b"layer 2\n"),
              ("usr", d, 0o755, None), ("usr/bin", d, 0o755, None), ("usr/bin/setuid", f, 0o4755, b"#!/bin/sh\n")]
    (l1, id1), (l2, id2) = layer(first), layer(second)
    config = images.new_config(diff_ids=[id1], created_by="test layer 1", created="2023-11-14T22:13:20Z")
    config = images.new_config(config, diff_ids=[id2], created_by="test layer 2", created="2023-11-14T22:13:20Z")
    config["config"] = {"Env": ["PATH=/bin"], "Cmd": ["sh"]}
    return images.add(store, config, [l1, l2], tag)
