"""Diagrams: minidocker's state drawn as graphs, in one house style.

Every builder returns a `graphviz.Digraph`; its `.source` is plain DOT text
(what the tests read), and Jupyter shows it as SVG. Builders only read state:
the store, a container's directories, /proc/<pid>/ns. Nothing here mounts,
unshares or starts anything.

    image_graph(store)        index.json -> manifest -> config, layers (shared ones once),
                              containers as writable layers on top of their image
    overlay_stack(container)  lower layers, upper, merged; which layer supplies a path
    lifecycle(state)          created -> running -> exited -> removed, `state` highlighted
    namespaces({label: pid})  /proc/<pid>/ns/* inodes: equal inode = same namespace
    cgroup_tree, network      filled in by the cgroups and network chapters

Importing this module gives Image and Container a `_repr_svg_`, so a notebook
cell that ends in an image or a container draws it.
"""
import os

import graphviz

from . import changes
from .units import human_size


FONT = "Helvetica"
PALETTE = {   # one colour per kind of thing, the same in every diagram
    "index": "#e8e8e8", "manifest": "#cfe2f3", "config": "#fff2cc", "layer": "#d9ead3",
    "container": "#f4cccc", "upper": "#f4cccc", "merged": "#d9d2e9", "whiteout": "#999999",
    "current": "#e69138", "state": "#ffffff", "edge": "#555555", "ns": "#cfe2f3",
}
STATES = ("created", "running", "exited", "removed")
TRANSITIONS = [("created", "running", "start"), ("running", "exited", "exit / stop / kill"),
               ("exited", "running", "start"), ("exited", "removed", "rm"), ("created", "removed", "rm")]
NAMESPACES = ("cgroup", "ipc", "mnt", "net", "pid", "user", "uts")


def new_graph(name: str, rankdir: str = "TB") -> graphviz.Digraph:
    """An empty digraph in the house style (font, sizes, rounded filled boxes)."""
    g = graphviz.Digraph(name)
    g.attr(rankdir=rankdir, fontname=FONT, fontsize="11", nodesep="0.3", ranksep="0.35", bgcolor="white")
    g.attr("node", shape="box", style="rounded,filled", fontname=FONT, fontsize="10", color=PALETTE["edge"],
           fillcolor=PALETTE["state"], margin="0.12,0.05")
    g.attr("edge", fontname=FONT, fontsize="9", color=PALETTE["edge"], arrowsize="0.7")
    return g


def short(digest: str, n: int = 12) -> str:
    """sha256:abcd... -> abcd... (n hex digits), as docker prints IDs."""
    return digest.split(":", 1)[-1][:n]


def svg(graph: graphviz.Digraph) -> str:
    """Render with Graphviz's `dot` into SVG text."""
    return graph.pipe(format="svg", encoding="utf-8")


def save_svg(graph: graphviz.Digraph, path) -> None:
    """Write the graph's SVG to `path` (used by script/diagrams and the demo)."""
    with open(path, "w") as f:
        f.write(svg(graph))


# -- images and containers -------------------------------------------------------

def image_graph(store, images=None, containers=None, commits=()) -> graphviz.Digraph:
    """The content-addressed graph: index -> manifests -> config and layers; containers on top.

    `commits` pairs (container, image) to draw a commit edge from the container to the layer it
    became; an image whose config names its container (docker's "container" field) gets one too.
    """
    from . import containers as _containers, images as _images
    images = _images.list_images(store) if images is None else images
    containers = _containers.all_containers(store) if containers is None else containers
    g = new_graph("images", "BT")
    g.node("index", "index.json", fillcolor=PALETTE["index"], shape="folder")
    seen = set()
    for img in images:
        m = "m_" + short(img.manifest_desc["digest"])
        tags = "\\n".join(img.familiar_tags) or "<none>"
        g.node(m, f"manifest {short(img.manifest_desc['digest'])}\\n{tags}", fillcolor=PALETTE["manifest"])
        g.edge(m, "index", dir="back", style="dashed")
        cfg = "c_" + img.short_id
        if cfg not in seen:
            g.node(cfg, f"config {img.short_id}\\n(= image ID)", fillcolor=PALETTE["config"], shape="note")
        g.edge(cfg, m, dir="back")
        parent = None
        for chain, diff_id, desc in zip(img.chain_ids, img.diff_ids, img.layers):
            node = "l_" + short(chain)
            if node not in seen:   # a layer shared by two images is drawn once
                g.node(node, f"layer {short(diff_id)}\\n{human_size(desc.get('size', 0))} compressed",
                       fillcolor=PALETTE["layer"])
                if parent:
                    g.edge(parent, node, arrowhead="none", penwidth="2")
            g.edge(node, m, dir="back", style="dotted")
            seen.add(node)
            parent = node
        seen.add(cfg)
    by_id = {img.id: img for img in images}
    for c in containers:
        img = by_id.get(c.record.get("Image"))
        node = "k_" + c.short_id
        g.node(node, f"container {c.name}\\n{c.status}\\nwritable layer (upper)",
               fillcolor=PALETTE["container"], shape="box3d")
        if img and img.chain_ids:
            g.edge("l_" + short(img.chain_ids[-1]), node, arrowhead="none", penwidth="2")
    drawn = {c.id for c in containers}
    pairs = list(commits) + [(c, i) for i in images for c in containers if i.config.get("container") == c.id]
    for c, img in pairs:
        if c.id in drawn and img.chain_ids:
            g.edge("k_" + c.short_id, "l_" + short(img.chain_ids[-1]), label="commit", style="dashed",
                   color=PALETTE["current"], constraint="false")
    return g


def container_graph(container) -> graphviz.Digraph:
    """One container on top of its image (what a container's _repr_svg_ draws)."""
    from . import images as _images
    imgs = [i for i in _images.list_images(container.store) if i.id == container.record.get("Image")]
    return image_graph(container.store, imgs, [container])


# -- overlay ------------------------------------------------------------------------

def is_whiteout(path) -> bool:
    """Overlay's whiteout: a character device with device number 0/0."""
    try:
        return changes.is_whiteout(os.lstat(path))
    except OSError:
        return False


def whiteouts(directory) -> list:
    """Paths (relative, sorted) of the whiteouts in a layer or upper directory."""
    found = []
    for top, dirs, files in os.walk(directory):
        for name in files:
            if is_whiteout(os.path.join(top, name)):
                found.append("/" + os.path.relpath(os.path.join(top, name), directory))
    return sorted(found)


def supplier(path: str, upper, lowers: list):
    """Which directory supplies `path` in the merged view, as overlayfs looks it up.

    Returns (directory, kind) with kind 'file', 'dir', 'symlink' or 'whiteout'
    (the path is deleted there), or None when no layer has it. `lowers` is top first.
    """
    parts = [p for p in path.split("/") if p]
    for directory in [upper, *lowers]:
        here = os.path.join(directory, *parts)
        if is_whiteout(here):
            return directory, "whiteout"
        if os.path.lexists(here):
            kind = "symlink" if os.path.islink(here) else "dir" if os.path.isdir(here) else "file"
            return directory, kind
        # an opaque parent directory or a whiteout of a parent stops the search going lower
        for i in range(1, len(parts)):
            parent = os.path.join(directory, *parts[:i])
            if is_whiteout(parent) or changes.is_opaque(parent):
                return (directory, "whiteout") if is_whiteout(parent) else None
    return None


def overlay_stack(container=None, path: str = None, *, upper=None, lowers=None, names=None) -> graphviz.Digraph:
    """The overlay mount as a stack: merged on top, then upper, then lowers (top first).

    With `path`, the layer that supplies it is highlighted (or the whiteout that hides it).
    """
    if container is not None:
        from . import images as _images
        img = _images.get(container.store, container.record["Image"])
        upper, lowers = container.dir / "upper", img.lower_dirs()
        names = [f"layer {short(d)}" for d in reversed(img.diff_ids)]
    names = names or [f"lower {i}" for i in range(len(lowers))]
    g = new_graph("overlay", "TB")
    found = supplier(path, upper, lowers) if path else None
    label = "merged (the container's /)" + (f"\\n{path}" if path else "")
    g.node("merged", label, fillcolor=PALETTE["merged"], shape="box3d")
    rows = [("upper", "upper (writable)", upper, PALETTE["upper"])]
    rows += [(f"lower{i}", f"lowerdir {i}: {n}", d, PALETTE["layer"]) for i, (n, d) in enumerate(zip(names, lowers))]
    prev = "merged"
    for key, title, directory, colour in rows:
        wh = whiteouts(directory)
        text = title + (f"\\nwhiteouts: {', '.join(wh[:4])}" + (" ..." if len(wh) > 4 else "") if wh else "")
        attrs = {}
        if found and str(found[0]) == str(directory):
            text += f"\\n{'hides' if found[1] == 'whiteout' else 'supplies'} {path} ({found[1]})"
            attrs = {"penwidth": "3", "color": PALETTE["current"]}
        g.node(key, text, fillcolor=colour, **attrs)
        g.edge(prev, key, arrowhead="none")
        prev = key
    if path and found is None:
        g.node("absent", f"{path}: in no layer", shape="plaintext", style="")
        g.edge("merged", "absent", style="dashed")
    return g


# -- lifecycle ------------------------------------------------------------------------

def lifecycle(current: str = None) -> graphviz.Digraph:
    """docker's container state machine, with `current` (a status or a Container) highlighted."""
    if current is not None and not isinstance(current, str):
        current = current.status
    g = new_graph("lifecycle", "LR")
    g.node("start", "", shape="point", width="0.12")
    for s in STATES:
        on = s == current
        g.node(s, s, fillcolor=PALETTE["current"] if on else PALETTE["state"],
               penwidth="2.5" if on else "1", shape="doublecircle" if s == "removed" else "box")
    g.edge("start", "created", label="create")
    for a, b, label in TRANSITIONS:
        g.edge(a, b, label=label)
    return g


# -- namespaces --------------------------------------------------------------------

def ns_inodes(pid) -> dict:
    """{namespace type: inode} for a process, read from the /proc/<pid>/ns/* links."""
    out = {}
    for ns in NAMESPACES:
        try:
            out[ns] = os.stat(f"/proc/{pid}/ns/{ns}").st_ino
        except OSError:
            continue
    return out


def namespaces(processes: dict) -> graphviz.Digraph:
    """A table of namespace inodes per process ({label: pid}); shared inodes share a colour."""
    table = {label: ns_inodes(pid) for label, pid in processes.items()}
    colours = ["#cfe2f3", "#f4cccc", "#d9ead3", "#fff2cc", "#d9d2e9", "#fce5cd"]
    owner = {}
    for label, inodes in table.items():
        for ns, ino in inodes.items():
            owner.setdefault((ns, ino), len({k for k in owner if k[0] == ns}))
    head = "".join(f"<td><b>{label}</b><br/>pid {processes[label]}</td>" for label in table)
    rows = [f"<tr><td></td>{head}</tr>"]
    for ns in NAMESPACES:
        cells = ""
        for label, inodes in table.items():
            ino = inodes.get(ns)
            colour = colours[owner[(ns, ino)] % len(colours)] if ino else "white"
            cells += f'<td bgcolor="{colour}">{ino or "-"}</td>'
        rows.append(f"<tr><td><b>{ns}</b></td>{cells}</tr>")
    g = new_graph("namespaces")
    g.node("table", "<<table border='0' cellborder='1' cellspacing='0' cellpadding='4'>" + "".join(rows)
           + "</table>>", shape="plaintext", style="")
    return g


# -- placeholders the cgroups and network chapters fill ---------------------------

def cgroup_tree(tree: dict, name: str = "/") -> graphviz.Digraph:
    """A cgroup hierarchy from {"name": str, "files": {file: value}, "children": [...]} dicts."""
    g = new_graph("cgroups", "TB")

    def add(node, key):
        files = "\\l".join(f"{k} = {v}" for k, v in (node.get("files") or {}).items())
        g.node(key, node.get("name", name) + ("\\n" + files + "\\l" if files else ""), fillcolor=PALETTE["config"])
        for i, child in enumerate(node.get("children") or []):
            add(child, f"{key}_{i}")
            g.edge(key, f"{key}_{i}")
    add(tree, "root")
    return g


def network(topology: dict) -> graphviz.Digraph:
    """Bridges, veth pairs and namespaces from {"nodes": [{id, label, kind}], "links": [(a, b, label)]}."""
    g = new_graph("network", "LR")
    kinds = {"bridge": PALETTE["manifest"], "veth": PALETTE["layer"], "netns": PALETTE["container"]}
    for n in topology.get("nodes", []):
        g.node(n["id"], n.get("label", n["id"]), fillcolor=kinds.get(n.get("kind"), PALETTE["state"]))
    for a, b, *label in topology.get("links", []):
        g.edge(a, b, label=label[0] if label else "", dir="none")
    return g


# -- objects that draw themselves ---------------------------------------------------

def draw(obj) -> graphviz.Digraph:
    """The natural diagram of an Image, a Container, a Store or a state name."""
    from . import containers as _containers, images as _images, store as _store
    if isinstance(obj, _images.Image):
        return image_graph(obj.store, [obj], [])
    if isinstance(obj, _containers.Container):
        return container_graph(obj)
    if isinstance(obj, _store.Store):
        return image_graph(obj)
    if isinstance(obj, str) and obj in STATES:
        return lifecycle(obj)
    raise TypeError(f"viz.draw cannot draw a {type(obj).__name__}")


def install() -> None:
    """Give Image and Container a _repr_svg_ (Jupyter then draws them instead of printing)."""
    from . import containers as _containers, images as _images
    for cls in (_images.Image, _containers.Container):
        cls._repr_svg_ = lambda self: svg(draw(self))


install()
