"""Image references, parsed and normalised the way docker does.

    busybox                  -> docker.io/library/busybox:latest
    user/app:v1              -> docker.io/user/app:v1
    localhost:5000/a/b       -> localhost:5000/a/b:latest
    ubuntu@sha256:<64 hex>   -> docker.io/library/ubuntu@sha256:...

The first path component is a registry only if it looks like a host: it has a
dot or a port, or it is `localhost`. Otherwise the image lives on Docker Hub,
where one-component names are official images under `library/`.
"""
import re
from collections import namedtuple

from .errors import MinidockerError

DOCKER_HUB = "docker.io"
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_REPOSITORY = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST = re.compile(r"^sha256:[a-f0-9]{64}$")
_HOST = re.compile(r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?$")


# A tuple rather than a dataclass: importing dataclasses costs every command ~5 ms.
class Reference(namedtuple("Reference", "registry repository tag digest", defaults=(None, None))):
    """registry ("docker.io", "localhost:5000"), repository ("library/busybox"), tag, and
    digest ("sha256:<64 hex>", which wins over the tag when pulling)."""
    __slots__ = ()

    @property
    def name(self) -> str:
        """registry/repository, without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The short name docker shows: busybox, user/app, localhost:5000/a/b."""
        if self.registry == DOCKER_HUB:
            return self.repository.removeprefix("library/")
        return self.name

    def __str__(self) -> str:
        return self.name + self._suffix()

    @property
    def familiar(self) -> str:
        """How docker prints it: busybox:latest, localhost:5000/a/b:v1."""
        return self.familiar_name + self._suffix()

    def _suffix(self) -> str:
        return (":" + self.tag if self.tag else "") + ("@" + self.digest if self.digest else "")


def parse(text: str, default_tag: "str | None" = "latest") -> Reference:
    """Parse and normalise `text`; a bad reference is a one-line error."""
    if not text or text != text.strip() or "\0" in text:
        raise MinidockerError(f"invalid reference format: {text!r}")
    rest, digest = text, None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        if not _DIGEST.match(digest):
            raise MinidockerError(f"invalid reference format: bad digest in {text!r}")
    tag = None
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        rest, tag = rest[:colon], rest[colon + 1:]
        if not _TAG.match(tag):
            raise MinidockerError(f"invalid reference format: bad tag {tag!r}")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, remainder
        if not _HOST.match(registry):
            raise MinidockerError(f"invalid reference format: bad registry {registry!r}")
    else:
        registry, repository = DOCKER_HUB, rest
    if registry in ("index.docker.io", "registry-1.docker.io"):
        registry = DOCKER_HUB
    if repository != repository.lower():
        raise MinidockerError(f"invalid reference format: repository name must be lowercase: {text!r}")
    if not _REPOSITORY.match(repository):
        raise MinidockerError(f"invalid reference format: {text!r}")
    if registry == DOCKER_HUB and "/" not in repository:
        repository = "library/" + repository
    if tag is None and digest is None:
        tag = default_tag
    return Reference(registry, repository, tag, digest)


def is_digest(text: str) -> bool:
    return bool(_DIGEST.match(text))
