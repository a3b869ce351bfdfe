"""The teaching verbs: `minidocker doctor` and `minidocker diagrams`.

The concept diagrams the chapters open with are generated here from code, in
viz's house style, so that `diagrams/*.svg` can always be regenerated and a
test can tell when a committed one is stale.
"""
import sys
from pathlib import Path

from .cli import arg, verb
from .errors import MinidockerError


def _content_store():
    from .viz import PALETTE, new_graph
    g = new_graph("content_store", "LR")
    g.attr(label="every box is a file under blobs/sha256/, named by the digest of its bytes", labelloc="b")
    g.node("index", "index.json\\n(tag -> manifest digest)", fillcolor=PALETTE["index"], shape="folder")
    g.node("manifest", "manifest\\nsha256:1f2e...", fillcolor=PALETTE["manifest"])
    g.node("config", "config\\nsha256:7813... = image ID", fillcolor=PALETTE["config"], shape="note")
    for i, d in enumerate(("3d0d...", "8aa9...")):
        g.node(f"layer{i}", f"layer {i}\\ntar+gzip sha256:{d}", fillcolor=PALETTE["layer"])
        g.edge("manifest", f"layer{i}", label="layers[%d]" % i)
    g.edge("index", "manifest", label="manifests[]")
    g.edge("manifest", "config", label="config")
    return g


def _image_vs_container():
    from .viz import PALETTE, new_graph
    g = new_graph("image_vs_container", "BT")
    g.attr(label="containers = instances: each adds its own writable layer and a process", labelloc="t")
    with g.subgraph(name="cluster_image") as image:
        image.attr(label="image = read-only layers + config (the class)", labelloc="b", style="rounded,dashed",
                   color=PALETTE["edge"])
        image.node("l0", "layer: base files", fillcolor=PALETTE["layer"])
        image.node("l1", "layer: busybox", fillcolor=PALETTE["layer"])
        image.node("config", "config: Cmd, Env", fillcolor=PALETTE["config"], shape="note")
        image.edge("l0", "l1", arrowhead="none", penwidth="2")
    for name in ("web", "worker"):
        g.node(name, f"container {name}\\nwritable layer + process", fillcolor=PALETTE["container"], shape="box3d")
        g.edge("l1", name, arrowhead="none", penwidth="2")
    return g


def _overlay():
    from .viz import PALETTE, new_graph
    g = new_graph("overlay", "TB")
    g.node("merged", "merged: the container's /  (mount -t overlay)", fillcolor=PALETTE["merged"], shape="box3d")
    g.node("upper", "upperdir: every write lands here (copy-up, whiteouts)", fillcolor=PALETTE["upper"])
    g.node("lower0", "lowerdir 0: top image layer (read-only)", fillcolor=PALETTE["layer"])
    g.node("lower1", "lowerdir 1: base image layer (read-only)", fillcolor=PALETTE["layer"])
    g.node("work", "workdir: overlay's scratch space\\n(same filesystem as upper)", fillcolor=PALETTE["index"])
    g.edge("merged", "upper", arrowhead="none")
    g.edge("upper", "lower0", arrowhead="none")
    g.edge("lower0", "lower1", arrowhead="none")
    g.edge("upper", "work", style="dashed", arrowhead="none")
    return g


def concept_diagrams() -> dict:
    """{file stem: Digraph} for every generated concept diagram under diagrams/."""
    from . import viz
    return {"00_image_vs_container": _image_vs_container(), "00_lifecycle": viz.lifecycle(),
            "01_content_store": _content_store(), "02_overlay": _overlay()}


def write_diagrams(out) -> list:
    """Write <stem>.dot and <stem>.svg for every concept diagram; the paths written."""
    from . import viz
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, graph in concept_diagrams().items():
        (out / f"{stem}.dot").write_text(graph.source)
        viz.save_svg(graph, out / f"{stem}.svg")
        written += [out / f"{stem}.dot", out / f"{stem}.svg"]
    return written


@verb("doctor", "Check that this machine can run minidocker containers",
      arg("--json", action="store_true", help="rows as JSON"))
def cmd_doctor(a):
    from dataclasses import asdict
    import json
    from . import doctor
    report = doctor.check()
    if a.json:
        print(json.dumps([{**asdict(r), "mark": r.mark} for r in report], indent=2))
    else:
        print(report)
    if not report.ok:
        raise MinidockerError("a required check failed: apply the fix shown above", 1)


@verb("diagrams", "Regenerate the concept diagrams (DOT and SVG)",
      arg("--out", default="diagrams", help="directory to write into (default: ./diagrams)"))
def cmd_diagrams(a):
    import shutil
    if not shutil.which("dot"):
        raise MinidockerError("graphviz's dot is not installed: apt-get install graphviz", 1)
    for path in write_diagrams(a.out):
        print(path, file=sys.stdout)
