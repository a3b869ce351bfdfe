"""The registry client: the OCI distribution API (Docker Registry HTTP API V2).

    GET  /v2/                                   is this a v2 registry? (and its auth challenge)
    GET  /v2/<repo>/manifests/<tag|digest>      an index or a manifest, exact bytes
    GET  /v2/<repo>/blobs/<digest>              a config or a layer (may redirect to a CDN)
    HEAD /v2/<repo>/blobs/<digest>              does the registry have it? (push)
    POST/PATCH/PUT /v2/<repo>/blobs/uploads/    upload a blob (push)
    PUT  /v2/<repo>/manifests/<tag>             name the image, last (push)

Every request goes through Client.request, which answers 401 challenges (see
auth.py), retries 429 and 5xx a few times honouring Retry-After, and follows
redirects itself so that the Authorization header never goes to another host.

Settings, in <store root>/daemon.json (docker's daemon.json keys) or the
environment (comma-separated lists; the environment wins):

    registry-mirrors      MINIDOCKER_REGISTRY_MIRRORS     tried first for docker.io images,
                                                          e.g. http://127.0.0.1:5000
    insecure-registries   MINIDOCKER_INSECURE_REGISTRIES  hosts spoken to over plain HTTP

localhost and 127.0.0.0/8 always use plain HTTP; every other registry uses HTTPS
unless it is listed as insecure.
"""
import ipaddress
import os
import sys
import threading
import time
from urllib.parse import urljoin, urlsplit

from . import oci
from .auth import Authenticator, reason, get_credentials
from .errors import MinidockerError, NotFound
from .files import read_json
from .store import default_root

ACCEPT = ", ".join([oci.INDEX, oci.MANIFEST, oci.DOCKER_LIST, oci.DOCKER_MANIFEST])
SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
           "application/vnd.docker.distribution.manifest.v1+prettyjws")
HUB_API = "registry-1.docker.io"
RETRIES = 4
MAX_WAIT = 30          # seconds; a longer Retry-After is an error, not a wait
MAX_ERROR_BODY = 1 << 20


def settings(root=None) -> dict:
    """registry-mirrors and insecure-registries, from daemon.json and the environment."""
    path = (root or default_root()) / "daemon.json"
    conf = read_json(path) if path.exists() else {}
    out = {"registry-mirrors": list(conf.get("registry-mirrors") or []),
           "insecure-registries": list(conf.get("insecure-registries") or [])}
    for key, env in (("registry-mirrors", "MINIDOCKER_REGISTRY_MIRRORS"),
                     ("insecure-registries", "MINIDOCKER_INSECURE_REGISTRIES")):
        if os.environ.get(env):
            out[key] = [v.strip() for v in os.environ[env].split(",") if v.strip()]
    return out


def is_local(host: str) -> bool:
    """localhost and 127.0.0.0/8 (with or without a port) may use plain HTTP."""
    name = urlsplit("//" + host).hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def base_url(registry: str, root=None) -> str:
    if registry.startswith(("http://", "https://")):
        return registry.rstrip("/")
    host = HUB_API if registry == "docker.io" else registry
    plain = is_local(host) or registry in settings(root)["insecure-registries"]
    return ("http://" if plain else "https://") + host


class Client:
    """One registry, one repository: authenticated, retrying HTTP."""

    def __init__(self, registry: str, repository: str, credentials=None, url=None, root=None):
        import requests
        self.registry, self.repository = registry, repository
        self.url = url or base_url(registry, root)
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "minidocker/0.1"
        if credentials is None:
            credentials = get_credentials(registry, root)
        self.auth = Authenticator(self.session, registry, credentials)
        # Every exchange as (method, url, status, credentials sent): the token dance, for the notebook.
        self.trace = self.auth.trace = []
        self.retry_sleep = time.sleep   # tests may speed this up
        self.cancelled = threading.Event()   # set on Ctrl-C: the download threads stop at their next chunk

    def scope(self, push=False, repository=None) -> str:
        return f"repository:{repository or self.repository}:{'pull,push' if push else 'pull'}"

    def request(self, method, path, *, push=False, scope=None, ok=(200,), headers=None, data=None,
                stream=False, what=None):
        """Send one API request; returns the response whose status is in `ok`, else raises."""
        import requests
        scope = self.scope(push) if scope is None else scope
        url = path if path.startswith(("http://", "https://")) else self.url + path
        sent_auth, attempt, hops = False, 0, 0
        while True:
            h = dict(headers or {})
            authorization = self.auth.header(scope)
            if authorization and _same_host(url, self.url):
                h["Authorization"] = authorization
            try:
                body = data() if callable(data) else data   # a callable gives a fresh stream per try
                r = self.session.request(method, url, headers=h, data=body, stream=True,
                                         allow_redirects=False, timeout=(10, 120))
                self.trace.append((method, url, r.status_code, h.get("Authorization", "").split(" ")[0] or None))
            except requests.RequestException as e:
                attempt += 1
                transient = isinstance(e, (requests.ConnectionError, requests.Timeout))
                if attempt > RETRIES or not transient or "Connection refused" in str(e):
                    raise MinidockerError(f"cannot reach registry {self.registry}: {reason(e)}") from None
                self.retry_sleep(min(2 ** attempt, MAX_WAIT))
                continue
            if r.status_code in ok:
                if r.headers.get("Warning", "").startswith("299"):   # the registry has something to tell the user
                    print(f"{self.registry}: warning: {r.headers['Warning'][4:]}", file=sys.stderr)
                if not stream:
                    r.content
                return r
            if r.status_code in (301, 302, 303, 307, 308) and "Location" in r.headers and hops < 5:
                # Follow by hand: a CDN on another host must not see our token.
                url, hops = urljoin(url, r.headers["Location"]), hops + 1
                if urlsplit(url).scheme not in ("http", "https"):
                    raise MinidockerError(f"{self.registry} redirected to {url.split(':')[0]}:, which is not HTTP")
                if r.status_code == 303:
                    method, data = "GET", None
                r.close()
                continue
            if r.status_code == 401:
                challenge = r.headers.get("WWW-Authenticate", "")
                r.close()
                if challenge and self.auth.answer(challenge, scope, sent_auth):
                    sent_auth = True
                    continue
                raise self._unauthorized(push)
            if (r.status_code == 429 or r.status_code >= 500) and attempt < RETRIES:
                attempt += 1
                wait = _retry_after(r.headers.get("Retry-After"), 2 ** attempt)
                r.close()
                if wait > MAX_WAIT:
                    raise MinidockerError(f"{self.registry}: too many requests; retry after {wait:.0f} s")
                self.retry_sleep(wait)
                continue
            raise self.error(r, what)

    def _unauthorized(self, push):
        who = "anonymous" if not self.auth.credentials else f"user {self.auth.credentials[0]!r}"
        if not self.repository:
            return MinidockerError(f"unauthorized: {self.registry} refused {who}: incorrect username or password")
        if push:
            return MinidockerError(f"denied: {who} may not push to {self.registry}/{self.repository} "
                                   "(insufficient scope; try minidocker login)")
        return MinidockerError(f"unauthorized: {who} may not pull {self.registry}/{self.repository}: the repository "
                               "does not exist or needs `minidocker login` (with the right password)")

    def error(self, r, what=None):
        """A one-line error from a registry's {"errors": [...]} answer."""
        text = r.raw.read(MAX_ERROR_BODY, decode_content=True) if r.raw else b""
        r.close()
        code, message = "", ""
        try:
            first = (oci.loads(text, "error").get("errors") or [{}])[0]
            code, message = first.get("code", ""), first.get("message", "")
        except MinidockerError:
            pass
        what = what or f"{self.registry}/{self.repository}"
        if r.status_code == 429 or code == "TOOMANYREQUESTS":
            # Docker Hub says how many pulls a window allows: "ratelimit-limit: 100;w=21600"
            limit = r.headers.get("ratelimit-limit", "")
            window = f" ({limit.replace(';w=', ' pulls per ')} seconds)" if ";w=" in limit else ""
            return MinidockerError(f"{what}: toomanyrequests: the registry's rate limit was reached{window}")
        if r.status_code == 404 or code in ("MANIFEST_UNKNOWN", "NAME_UNKNOWN", "BLOB_UNKNOWN"):
            hint = f" ({message})" if "accept" in message.lower() else ""
            return NotFound(f"{what}: not found{hint}", 1)
        detail = f"{code}: {message}" if code else f"HTTP {r.status_code}"
        return MinidockerError(f"{what}: {detail}")

    # -- reading -------------------------------------------------------------

    def ping(self) -> None:
        """GET /v2/: reachable, speaks v2, and (when we have them) accepts our credentials."""
        self.request("GET", "/v2/", scope="", what=f"registry {self.registry}")

    def manifest(self, ref: str, accept: str = ACCEPT) -> tuple:
        """(exact bytes, media type, digest) of a manifest or index, checked."""
        r = self.request("GET", f"/v2/{self.repository}/manifests/{ref}", headers={"Accept": accept},
                         stream=True, what=f"{self.registry}/{self.repository}:{ref}"
                         if not ref.startswith("sha256:") else f"{self.registry}/{self.repository}@{ref}")
        data = _read_capped(r, f"manifest {ref}")
        digest = oci.sha256(data)
        announced = r.headers.get("Docker-Content-Digest")
        if ref.startswith("sha256:") and digest != ref:
            raise MinidockerError(f"manifest {ref} failed verification: the registry sent {digest}")
        if announced and announced.startswith("sha256:") and announced != digest:
            raise MinidockerError(f"manifest {ref} failed verification: header says {announced}, content is {digest}")
        content_type = r.headers.get("Content-Type", "").split(";")[0].strip()
        doc = oci.loads(data, f"manifest {ref}")
        media = doc.get("mediaType") or content_type
        if content_type in SCHEMA1 or media in SCHEMA1 or doc.get("schemaVersion") == 1:
            raise MinidockerError(f"{ref}: Docker schema 1 manifests are no longer supported; push the image again")
        if doc.get("mediaType") and content_type and content_type != doc["mediaType"] \
                and content_type in oci.INDEX_TYPES + oci.MANIFEST_TYPES:
            raise MinidockerError(f"manifest {ref}: Content-Type {content_type} does not match its mediaType {doc['mediaType']}")
        if "manifests" in doc and "layers" in doc:
            raise MinidockerError(f"manifest {ref} is ambiguous: it has both manifests and layers")
        if media not in oci.INDEX_TYPES + oci.MANIFEST_TYPES:
            media = oci.INDEX if "manifests" in doc else oci.MANIFEST if "layers" in doc else media
        return data, media, digest

    def blob_stream(self, digest: str):
        """The response streaming a blob (follow redirects, keep the token at home)."""
        return self.request("GET", f"/v2/{self.repository}/blobs/{oci.check_digest(digest)}", stream=True,
                            what=f"blob {digest[:19]}")

    def download(self, store, desc: dict, progress=None) -> bool:
        """Fetch one blob into the store, hashed and counted as it streams; False if already there."""
        if store.has_blob(desc["digest"], desc["size"]):
            return False
        r = self.blob_stream(desc["digest"])
        try:
            with store.writer(desc["digest"], desc["size"]) as w:
                for chunk in r.raw.stream(1 << 20, decode_content=False):
                    if self.cancelled.is_set():
                        raise MinidockerError("pull cancelled")
                    w.write(chunk)
                    if progress:
                        progress(len(chunk))
                w.commit()
        except OSError as e:
            raise MinidockerError(f"blob {desc['digest'][:19]}: download failed: {reason(e)}") from None
        except Exception as e:   # urllib3 errors when the connection drops mid-blob
            if isinstance(e, MinidockerError):
                raise
            raise MinidockerError(f"blob {desc['digest'][:19]}: download failed: {reason(e)}") from None
        finally:
            r.close()
        return True

    def has_blob(self, digest: str, push=False) -> bool:
        r = self.request("HEAD", f"/v2/{self.repository}/blobs/{digest}", push=push, ok=(200, 404))
        return r.status_code == 200


def _read_capped(r, what) -> bytes:
    size = r.headers.get("Content-Length")
    if size and size.isdigit() and int(size) > oci.MAX_JSON_SIZE:
        r.close()
        raise MinidockerError(f"{what} is larger than {oci.MAX_JSON_SIZE} bytes")
    data = r.raw.read(oci.MAX_JSON_SIZE + 1, decode_content=True)
    r.close()
    if len(data) > oci.MAX_JSON_SIZE:
        raise MinidockerError(f"{what} is larger than {oci.MAX_JSON_SIZE} bytes")
    return data


def _retry_after(value, default: float) -> float:
    if value and value.strip().isdigit():
        return float(value.strip())
    return float(default)


def _same_host(url: str, base: str) -> bool:
    return urlsplit(url).netloc == urlsplit(base).netloc
