"""The build cache: which image a build step made, by (parent image, step).

    buildcache/<sha256(parent manifest + step)>   {"manifest": ..., "parent": ..., "step": "RUN make"}

"step" is what the step depends on: the instruction after variable
expansion, plus the build-arg values a RUN sees or the digest of the files a
COPY reads. The images themselves are ordinary blobs; an entry whose blobs
were collected (rmi removes unnamed blobs) is a miss, and the step runs again.
"""
import hashlib

from . import images
from .errors import MinidockerError
from .files import read_json, write_json


def _path(store, parent: str, what: str):
    return store.root / "buildcache" / hashlib.sha256(f"{parent}\n{what}".encode()).hexdigest()


def lookup(store, parent: str, what: str):
    """The image this step made last time, if all its blobs are still in the store."""
    return _load(store, _path(store, parent, what))


def remember(store, parent: str, what: str, image) -> None:
    path = _path(store, parent, what)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    write_json(path, {"manifest": image.manifest_desc, "parent": parent, "step": what.splitlines()[0]})


def _load(store, path):
    try:
        image = images.load(store, read_json(path)["manifest"])
    except (FileNotFoundError, KeyError, MinidockerError):
        return None
    if all(store.has_blob(d["digest"], d["size"]) for d in image.layers):
        return image
    return None


def entries(store) -> list:
    """Every usable entry: (parent manifest digest or "scratch", step text, image)."""
    out = []
    for path in sorted((store.root / "buildcache").glob("*")):
        image = _load(store, path)
        if image is not None:
            entry = read_json(path)
            out.append((entry["parent"], entry["step"], image))
    return out


def graph(store, highlight=()):
    """The cache drawn as a tree: each step's image under its parent, the step on the edge."""
    from . import viz
    g = viz.new_graph("buildcache", "TB")
    tags = {}
    for img in images.list_images(store):
        tags.setdefault(img.manifest_desc["digest"], []).extend(img.familiar_tags)
    for parent, step, image in entries(store):
        for digest in (parent, image.manifest_desc["digest"]):
            label = "scratch" if digest == "scratch" else "image " + viz.short(digest)
            fill = viz.PALETTE["current"] if digest in highlight else viz.PALETTE["manifest"]
            g.node(digest, "\\n".join([label] + tags.get(digest, [])), fillcolor=fill)
        text = step if len(step) <= 40 else step[:37] + "..."
        g.edge(parent, image.manifest_desc["digest"], label=text.replace('"', "'"))
    return g
