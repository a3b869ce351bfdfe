"""Diagrams say what the store and the kernel say: DOT text checked against real state."""
import io
import os
import re
import subprocess
import tarfile

import pytest

from minidocker import containers, images, viz
from minidocker.bootstrap import bootstrap


def _one_file_layer(store, name, data: bytes):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return images.add_layer(store, buf)


def _node_ids(dot: str, prefix: str) -> list:
    return re.findall(rf"^\s*({prefix}\w+) \[", dot, re.M)


def test_a_layer_shared_by_two_images_is_drawn_once(store):
    base = bootstrap(store)
    desc, diff_id = _one_file_layer(store, "hello.txt", b"hi\n")
    child = images.add(store, images.new_config(base.config, diff_ids=[diff_id], created_by="COPY hello.txt"),
                       base.layers + [desc], tag="hello:1")
    dot = viz.image_graph(store).source
    assert sorted(_node_ids(dot, "l_")) == sorted("l_" + viz.short(c) for c in child.chain_ids)
    assert len(_node_ids(dot, "m_")) == 2 and len(_node_ids(dot, "c_")) == 2
    # the new layer sits on busybox's top layer: the stack edge exists once
    top, new = viz.short(base.chain_ids[-1]), viz.short(child.chain_ids[-1])
    assert dot.count(f"l_{top} -> l_{new}") == 1


def test_two_tags_of_one_image_share_one_config_node(store):
    img = bootstrap(store)
    images.tag(store, "busybox", "copy:latest")
    dot = viz.image_graph(store).source
    assert len(_node_ids(dot, "c_")) == 1
    assert f"config {img.short_id}" in dot


def test_a_container_is_a_writable_layer_on_its_images_top_layer(store):
    img = bootstrap(store)
    c = containers.create(store, "busybox", ["true"], name="on-top")
    try:
        dot = viz.image_graph(store).source
        assert f"l_{viz.short(img.chain_ids[-1])} -> k_{c.short_id}" in dot
        assert "container on-top\\ncreated" in dot
        assert viz.draw(c).source.count("k_") >= 1
    finally:
        c.remove()


def test_images_and_containers_draw_themselves_as_svg(store):
    img = bootstrap(store)
    c = containers.create(store, "busybox", ["true"])
    try:
        for obj in (img, c):
            svg = obj._repr_svg_()
            assert "<svg" in svg and img.short_id in svg
    finally:
        c.remove()


def test_lifecycle_highlights_only_the_current_state():
    dot = viz.lifecycle("running").source
    lit = re.findall(r"^\s*(\w+) \[.*fillcolor=\"" + viz.PALETTE["current"], dot, re.M)
    assert lit == ["running"]
    assert "exited -> removed [label=rm]" in dot
    assert viz.PALETTE["current"] not in viz.lifecycle().source


@pytest.fixture
def layers(tmp_path):
    """Three directories with the files, a whiteout and an opaque dir overlayfs understands."""
    lower1, lower0, upper = (tmp_path / n for n in ("lower1", "lower0", "upper"))
    for d in (lower1, lower0, upper, tmp_path / "work", tmp_path / "merged"):
        d.mkdir()
    (lower1 / "etc").mkdir()
    (lower1 / "etc" / "motd").write_text("base motd\n")
    (lower1 / "etc" / "issue").write_text("base issue\n")
    (lower1 / "opt").mkdir()
    (lower1 / "opt" / "old").write_text("old\n")
    (lower0 / "etc").mkdir()
    (lower0 / "etc" / "issue").write_text("layer issue\n")
    os.mknod(lower0 / "etc" / "motd", 0o600 | 0o020000, os.makedev(0, 0))   # whiteout: motd deleted
    (upper / "opt").mkdir()
    os.setxattr(upper / "opt", "trusted.overlay.opaque", b"y")              # rm -rf /opt && mkdir /opt
    (upper / "opt" / "new").write_text("new\n")
    (upper / "hello").write_text("upper\n")
    return tmp_path, upper, [lower0, lower1]


@pytest.mark.root
def test_supplier_agrees_with_a_real_overlay_mount(layers):
    tmp, upper, lowers = layers
    merged = tmp / "merged"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={tmp / 'work'}", str(merged)],
                   check=True)
    try:
        for path in ("/etc/motd", "/etc/issue", "/opt/old", "/opt/new", "/hello", "/nope"):
            found = viz.supplier(path, upper, lowers)
            visible = (merged / path.lstrip("/")).exists()
            assert visible == (found is not None and found[1] != "whiteout"), path
            if visible and found[1] == "file":
                assert (merged / path.lstrip("/")).read_text() == (found[0] / path.lstrip("/")).read_text()
    finally:
        subprocess.run(["umount", str(merged)], check=True)
    assert viz.supplier("/etc/motd", upper, lowers) == (lowers[0], "whiteout")
    assert viz.supplier("/opt/old", upper, lowers) is None
    assert viz.whiteouts(lowers[0]) == ["/etc/motd"]


@pytest.mark.root
def test_overlay_stack_highlights_the_layer_that_supplies_a_path(layers):
    _, upper, lowers = layers
    dot = viz.overlay_stack(upper=upper, lowers=lowers, path="/etc/issue").source
    assert re.search(r'lower0 \[label="[^"]*supplies /etc/issue \(file\)"[^\]]*penwidth=3', dot)
    assert "whiteouts: /etc/motd" in dot
    assert "hides /etc/motd" in viz.overlay_stack(upper=upper, lowers=lowers, path="/etc/motd").source


@pytest.mark.root
def test_namespace_map_shows_the_inodes_the_kernel_shows(tmp_path):
    child = subprocess.Popen(["unshare", "--uts", "sleep", "30"])
    try:
        for _ in range(100):   # unshare has execed sleep once its uts inode differs
            if os.stat(f"/proc/{child.pid}/ns/uts").st_ino != os.stat("/proc/self/ns/uts").st_ino:
                break
            subprocess.run(["sleep", "0.02"])
        table = {"me": os.getpid(), "child": child.pid}
        dot = viz.namespaces(table).source
        for label, pid in table.items():
            for ns in ("uts", "mnt", "net"):
                assert str(os.stat(f"/proc/{pid}/ns/{ns}").st_ino) in dot
        cells = re.findall(r'<td bgcolor="([^"]+)">(\d+)</td>', dot)
        colour = {ino: col for col, ino in cells}
        me, ch = viz.ns_inodes(os.getpid()), viz.ns_inodes(child.pid)
        assert me["uts"] != ch["uts"] and colour[str(me["uts"])] != colour[str(ch["uts"])]
        assert me["mnt"] == ch["mnt"]
    finally:
        child.kill()
        child.wait()


def test_placeholders_draw_the_data_they_are_given():
    tree = {"name": "/", "children": [{"name": "minidocker", "files": {"pids.max": 2048}}]}
    assert 'pids.max = 2048' in viz.cgroup_tree(tree).source
    net = viz.network({"nodes": [{"id": "br", "label": "md0", "kind": "bridge"}], "links": [("br", "c1", "veth")]})
    assert "br -> c1 [label=veth dir=none]" in net.source


@pytest.mark.root
def test_the_lifecycle_panel_drives_a_real_container_through_every_state(store):
    from minidocker.widgets import LifecyclePanel
    bootstrap(store)
    panel = LifecyclePanel("busybox", ["sleep", "60"], name="panel-test")
    assert panel.do("start") == "removed"            # nothing created yet: nothing happens
    assert [panel.do(a) for a in ("create", "start")] == ["created", "running"]
    pid = panel.container.state["Pid"]
    assert os.path.exists(f"/proc/{pid}") and 'fillcolor="%s"' % viz.PALETTE["current"] in panel.diagram().source
    assert [panel.do(a) for a in ("stop", "rm")] == ["exited", "removed"]
    assert containers.all_containers(store) == []
    assert re.search(r'removed \[[^\]]*fillcolor="%s"' % viz.PALETTE["current"], panel.diagram().source)
    with pytest.raises(ValueError):
        panel.do("pause")
    panel.widget()   # the same panel as buttons: builds without a front end


def test_a_commit_is_drawn_from_the_container_to_the_new_layer(store):
    base = bootstrap(store)
    c = containers.create(store, "busybox", ["true"], name="committer")
    try:
        desc, diff_id = _one_file_layer(store, "changed.txt", b"x\n")
        config = images.new_config(base.config, diff_ids=[diff_id], created_by="true")
        config["container"] = c.id   # what docker records in a committed image's config
        new = images.add(store, config, base.layers + [desc], tag="committed:1")
        dot = viz.image_graph(store).source
        assert f"k_{c.short_id} -> l_{viz.short(new.chain_ids[-1])} [label=commit" in dot
        explicit = viz.image_graph(store, [base, new], [c], commits=[(c, base)]).source
        assert f"k_{c.short_id} -> l_{viz.short(base.chain_ids[-1])} [label=commit" in explicit
    finally:
        c.remove()


def test_the_layer_explorer_traces_paths_in_a_containers_stack(store):
    from minidocker.widgets import LayerExplorer
    img = bootstrap(store)
    c = containers.create(store, "busybox", ["true"], name="explored")
    try:
        explorer = LayerExplorer(c)
        motd = explorer.show("/etc/motd").source     # layer 2 replaced layer 1's motd
        assert re.search(r'lower0 \[label="lowerdir 0: layer %s[^"]*supplies /etc/motd' % viz.short(img.diff_ids[-1]),
                         motd)
        assert "hides /etc/issue (whiteout)" in explorer.show("/etc/issue").source
        assert "/nope: in no layer" in explorer.show("/nope").source
        explorer.widget()
    finally:
        c.remove()
