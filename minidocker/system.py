"""The whole installation at once: reconcile after a crash, disk usage, prune, reset.

A minidocker command can be killed at any point (SIGKILL, a power cut, the
notebook's kernel restarted). Nothing is lost: every change is written so
that the next command can tell what was half done, and `reconcile` finishes
or undoes it, as dockerd does when it starts again:

    partial blobs and layers (ingest/, layers/.tmp-*)   swept (Store.sweep)
    a container whose monitor died                     shown as exited (containers.reconcile)
    a container directory without its record           removed (crash mid-create or mid-rm)
    overlay mounts of stopped containers               unmounted
    runtime state, cgroups, inits of dead containers   deleted, killed (runtime.delete)
    veths, bridges' endpoints and iptables rules       released (endpoints.reconcile)
"""
import os
from pathlib import Path

from . import containers, images, overlay, units, volumes
from .errors import MinidockerError, NotFound
from .files import remove_tree


def _runtime():
    from . import runtime
    return runtime


def _forget_runtime(store, cid) -> bool:
    try:
        _runtime().delete(cid, force=True, root=containers.runtime_root(store))
        return True
    except NotFound:
        return False


def reconcile(store) -> dict:
    """Make the store and the host agree again after a crash; returns what was fixed."""
    fixed = {"containers": [], "mounts": [], "runtime": [], "records": []}
    store.sweep()
    cdir = store.root / "containers"
    with store.lock:
        for path in list(cdir.iterdir()):
            if not (path / "container.json").exists():   # create or rm died half way
                _release_dir(store, path)
                remove_tree(path)
                fixed["records"].append(path.name)
    known = set()
    for c in containers.all_containers(store):   # each load marks dead monitors exited
        known.add(c.id)
        with c.lock:
            c.reload()
            if c.status == "running":
                continue
            if c.state.get("Error", "").startswith("the container's monitor died"):
                fixed["containers"].append(c.id)
            if _forget_runtime(store, c.id):
                fixed["runtime"].append(c.id)
            if overlay.is_mounted(c.dir / "rootfs"):
                overlay.unmount(c.dir / "rootfs")
                fixed["mounts"].append(str(c.dir / "rootfs"))
    rt = Path(containers.runtime_root(store))
    for path in list(rt.iterdir()) if rt.is_dir() else ():
        if path.name not in known and _forget_runtime(store, path.name):
            fixed["runtime"].append(path.name)
    _reconcile_network(store, known)
    return fixed


def _release_dir(store, path) -> None:
    _forget_runtime(store, path.name)
    if overlay.is_mounted(path / "rootfs"):
        overlay.unmount(path / "rootfs")
    _release_network(store, path.name)


def _release_network(store, cid) -> None:
    try:
        from . import network
        network.release(cid, root=store.root)
    except (ImportError, NotFound):
        pass


def _reconcile_network(store, known) -> None:
    try:
        from . import network
    except ImportError:
        return
    running = {c.id for c in containers.all_containers(store) if c.status == "running"}
    network.reconcile(store.root, alive=lambda cid: cid in running)


# -- disk usage and pruning ---------------------------------------------------------

def _du(path) -> int:
    total = 0
    for top, dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(top, name)).st_blocks * 512
            except OSError:
                continue
    return total


def df(store) -> list:
    """docker system df: rows of (TYPE, TOTAL, ACTIVE, SIZE, RECLAIMABLE) with sizes in bytes."""
    imgs, users = images.list_images(store), images.users(store)
    cs = containers.all_containers(store)
    vols = volumes.list_volumes(store)
    img_size = sum(i.size for i in imgs)
    unused = sum(i.size for i in imgs if not users.get(i.id))
    c_sizes = {c.id: _du(c.dir / "upper") for c in cs}
    stopped = sum(s for cid, s in c_sizes.items() if next(c for c in cs if c.id == cid).status != "running")
    v_sizes = {v["Name"]: _du(v["Mountpoint"]) for v in vols}
    v_used = {v["Name"] for v in vols if volumes.users(store, v["Name"])}
    return [("Images", len(imgs), sum(1 for i in imgs if users.get(i.id)), img_size, unused),
            ("Containers", len(cs), sum(1 for c in cs if c.status == "running"), sum(c_sizes.values()), stopped),
            ("Local Volumes", len(vols), len(v_used), sum(v_sizes.values()),
             sum(s for n, s in v_sizes.items() if n not in v_used))]


def prune(store, all_images=False, with_volumes=False) -> dict:
    """docker system prune: stopped containers, dangling (or all unused) images, anonymous volumes."""
    reconcile(store)
    gone = {"containers": [], "images": [], "volumes": []}
    for c in containers.all_containers(store):
        if c.status != "running":
            c.remove()
            gone["containers"].append(c.id)
    used = images.users(store)
    for image in images.list_images(store):
        if (all_images or not image.tags) and not used.get(image.id):
            images.remove(store, image.id, force=True)
            gone["images"].append(image.id)
    if with_volumes:
        gone["volumes"] = volumes.prune(store)
    images.collect(store)
    return gone


def reset(store) -> list:
    """Remove everything minidocker made: containers, images, volumes, networks, the store itself,
    and the host-wide minidocker cgroup parents and default bridge when no other store uses them."""
    from . import serve
    done = ["resident helper"] if serve.stop(store.root) else []
    for c in containers.all_containers(store):
        c.remove(force=True)
        done.append(f"container {c.id[:12]}")
    reconcile(store)
    try:
        from . import network
        network.remove_all(root=store.root)
        done.append("networks")
    except ImportError:
        pass
    live = [p for p in (store.root / "containers").rglob("*") if overlay.is_mounted(p)]
    if live:
        raise MinidockerError(f"system reset: {live[0]} is still mounted; nothing more removed")
    remove_tree(store.root)
    done.append(f"store {store.root}")
    done += _host_parents(store.root)
    return done


def _host_parents(root) -> list:
    """The /sys/fs/cgroup/*/minidocker parents and our bridge: only when nothing else uses them."""
    done = []
    for top in Path("/sys/fs/cgroup").iterdir():
        for name in ("minidocker", "minidocker-runtime"):
            parent = top / name
            if parent.is_dir():
                try:
                    os.rmdir(parent)
                    done.append(str(parent))
                except OSError:
                    continue   # another store's containers still live below it
    try:
        from pyroute2 import IPRoute
        from .network import _default_bridge, _tag
        bridge = _default_bridge()
        with IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=bridge):
                # another store's bridge (its tag names that store) is that store's business
                alias = ipr.link("get", index=index)[0].get_attr("IFLA_IFALIAS") or ""
                mine = not alias or alias.startswith(_tag(root) + ":")
                if mine and not [link for link in ipr.get_links() if link.get_attr("IFLA_MASTER") == index]:
                    ipr.link("del", index=index)
                    done.append(bridge)
    except ImportError:
        pass
    return done


def human_df(store) -> list:
    """df() with sizes as docker prints them and the reclaimable percentage."""
    rows = []
    for kind, total, active, size, reclaim in df(store):
        pct = f" ({reclaim * 100 // size}%)" if size else ""
        rows.append([kind, total, active, units.human_size(size), units.human_size(reclaim) + pct])
    return rows


