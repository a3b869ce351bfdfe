"""Registry authentication: challenges, tokens and stored credentials.

A registry answers a request it will not serve anonymously with 401 and a
challenge in the WWW-Authenticate header:

    Basic realm="minidocker-test"                      send user:password on every request
    Bearer realm="https://auth.docker.io/token",       ask the realm for a token, then send
           service="registry.docker.io",               "Authorization: Bearer <token>"
           scope="repository:library/busybox:pull"

The token dance: GET <realm>?service=<service>&scope=<scope>, anonymously or
with Basic credentials; the JSON answer carries `token` (or `access_token`) and
`expires_in`. The server silently grants only the actions it allows, so asking
for "pull,push" may return a pull-only token: the next 401 is the only sign.

`minidocker login` checks credentials against the registry and keeps them in
<store root>/auth.json (mode 0600, docker's config.json shape: base64 of
user:password per registry). They are never printed.
"""
import base64
import json
import re
import time

from .errors import MinidockerError
from .files import atomic_write, read_json
from .store import default_root

# key="value" or key=token, separated by commas; quoted values may hold commas
_PARAM = re.compile(r'\s*([a-zA-Z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')


def parse_challenge(header: str) -> tuple:
    """'Bearer realm="r",scope="a:b:pull,push"' -> ("bearer", {"realm": "r", "scope": "a:b:pull,push"})."""
    scheme, _, rest = (header or "").strip().partition(" ")
    params, pos = {}, 0
    rest = rest.strip()
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m:
            break
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
        pos = m.end()
    return scheme.lower(), params


# -- stored credentials --------------------------------------------------------

def credentials_path(root=None):
    return (root or default_root()) / "auth.json"


def _hub_key(registry: str) -> str:
    return "docker.io" if registry in ("docker.io", "index.docker.io", "registry-1.docker.io") else registry


def get_credentials(registry: str, root=None):
    """(user, password) stored for `registry` by login, or None."""
    path = credentials_path(root)
    if not path.exists():
        return None
    entry = (read_json(path).get("auths") or {}).get(_hub_key(registry))
    if not entry:
        return None
    try:
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    except (KeyError, ValueError, UnicodeDecodeError):
        raise MinidockerError(f"{path}: the entry for {registry} is damaged; run minidocker login again") from None
    return user, password


def store_credentials(registry: str, user: str, password: str, root=None) -> None:
    path = credentials_path(root)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    data = read_json(path) if path.exists() else {}
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    data.setdefault("auths", {})[_hub_key(registry)] = {"auth": token}
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode(), 0o600)


def remove_credentials(registry: str, root=None) -> bool:
    """Forget a registry's credentials; False if there were none."""
    path = credentials_path(root)
    data = read_json(path) if path.exists() else {}
    if _hub_key(registry) not in (data.get("auths") or {}):
        return False
    del data["auths"][_hub_key(registry)]
    atomic_write(path, (json.dumps(data, indent=2) + "\n").encode(), 0o600)
    return True


# -- answering challenges ------------------------------------------------------

class Authenticator:
    """Answers a registry's challenges, caching one token per scope until it expires."""

    def __init__(self, session, registry: str, credentials=None):
        self.session, self.registry, self.credentials = session, registry, credentials
        self.challenge = None       # (scheme, params) from the last 401
        self.tokens = {}            # scope -> (token, expiry time)
        self.trace = []             # shared with the Client: what was asked, and how it went

    def header(self, scope: str):
        """The Authorization header for a request needing `scope`, if we know how to make one."""
        if self.challenge is None:
            return None
        scheme, _ = self.challenge
        if scheme == "basic":
            return self._basic() if self.credentials else None
        token, expiry = self.tokens.get(scope, (None, 0))
        if token and time.monotonic() < expiry:
            return "Bearer " + token
        return None

    def _basic(self) -> str:
        user, password = self.credentials
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def answer(self, www_authenticate: str, scope: str, sent: bool) -> bool:
        """Handle a 401; True if the request is worth sending again."""
        scheme, params = parse_challenge(www_authenticate)
        if scheme not in ("basic", "bearer"):
            raise MinidockerError(f"{self.registry}: unsupported authentication scheme {scheme or '(none)'!r}")
        self.challenge = (scheme, params)
        if scheme == "basic":
            return self.credentials is not None and not sent
        if sent and scope in self.tokens and time.monotonic() < self.tokens[scope][1]:
            return False   # a fresh token for this very scope was refused: asking again won't help
        self.tokens[scope] = self.fetch_token(params, scope)
        return True

    def fetch_token(self, params: dict, scope: str) -> tuple:
        """GET the realm for a token covering `scope` (the server may grant less)."""
        import requests
        realm = params.get("realm")
        if not realm:
            raise MinidockerError(f"{self.registry}: Bearer challenge without a realm")
        # one scope parameter per resource; none at all just checks who we are (login)
        query = [("scope", s) for s in scope.split()]
        if params.get("service"):
            query.append(("service", params["service"]))
        auth = self.credentials if self.credentials else None
        try:
            r = self.session.get(realm, params=query, auth=auth, timeout=30)
            self.trace.append(("GET", r.url, r.status_code, "Basic" if auth else None))
        except requests.RequestException as e:
            raise MinidockerError(f"cannot reach the token server {realm}: {reason(e)}") from None
        if r.status_code == 401:
            raise MinidockerError(f"{self.registry}: unauthorized: incorrect username or password", 1)
        if r.status_code != 200:
            raise MinidockerError(f"{self.registry}: token server {realm} answered {r.status_code}")
        try:
            body = r.json()
        except ValueError:
            raise MinidockerError(f"token server {realm} sent no JSON") from None
        token = body.get("token") or body.get("access_token")
        if not token:
            raise MinidockerError(f"token server {realm} sent no token")
        lifetime = int(body.get("expires_in") or 60)
        return token, time.monotonic() + max(lifetime - 5, 1)


def reason(exc) -> str:
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "timed out" in text.lower():
        return "timed out"
    if "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return "unknown host"
    return text.splitlines()[0][:200] if text else type(exc).__name__
