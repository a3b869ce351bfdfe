"""minidocker: a small, real Docker in Python.

The command line is `minidocker` (cli.py). The same verbs are Python functions
in minidocker.api, which notebooks import as `from minidocker import api as docker`
(docker.run, docker.ps, docker.images, docker.pull, ...). The commonest ones
are here too: minidocker.run("busybox", ["echo", "hi"]).
"""
from .errors import MinidockerError  # noqa: F401

_API = {"run", "create", "ps", "container", "image", "Container", "Image"}


def __getattr__(name):
    # Loaded on first use, so that `minidocker ps` on the command line does not pay for it.
    if name in _API:
        import importlib
        return getattr(importlib.import_module("minidocker.api"), name)
    raise AttributeError(f"module 'minidocker' has no attribute {name!r}")
