"""How a container meets the network, from its --network setting.

    bridge (default) or a user network   its own namespace, a veth pair to the
                                         network's bridge, an address, names
    none                                 its own namespace with only lo
    host                                 the host's namespace (no isolation)
    container:NAME                       the namespace of another, running, container

The engine writes /etc/hosts, /etc/hostname and /etc/resolv.conf for each
container in its state directory and bind-mounts them in, as docker does, so
the image's own files are never changed and a restart rewrites them.
"""
from .errors import MinidockerError, NotFound

SPECIAL = ("none", "host")


def check(store, mode: str, ports=(), publish_all=False, exposed=None) -> list:
    """Validate --network and -p at create time (exit 125, nothing made); returns port specs."""
    from . import ports as portspec
    specs = [portspec.parse_publish(p) for p in ports]
    if publish_all:
        known = {(s["container_port"], s["proto"]) for s in specs}
        for key in exposed or {}:
            number, _, proto = key.partition("/")
            if (int(number), proto or "tcp") not in known:
                specs.append(portspec.parse_publish(f"{number}/{proto or 'tcp'}"))
    if mode in SPECIAL or mode.startswith("container:"):
        if specs and mode != "none":
            raise MinidockerError(f"published ports are discarded when using {mode} network mode", 125)
        return [] if mode == "none" else specs
    if mode != "bridge":
        from . import network
        try:
            network.inspect_network(mode, root=store.root)
        except NotFound:
            raise MinidockerError(f"network {mode} not found", 125) from None
    return specs


def bundle_parts(c) -> tuple:
    """(namespaces, extra mounts) for the container's OCI bundle."""
    from . import bundle, containers, etcfiles
    mode = c.record["HostConfig"]["NetworkMode"]
    namespaces = bundle.default_namespaces()
    files = c.dir
    if mode == "host":
        namespaces = [n for n in namespaces if n["type"] != "network"]
    elif mode.startswith("container:"):
        other = containers.get(c.store, mode.split(":", 1)[1])
        if other.status != "running":
            raise MinidockerError(f"cannot join the network of {other.name}: it is not running", 125)
        for n in namespaces:
            if n["type"] == "network":
                n["path"] = f"/proc/{other.state['Pid']}/ns/net"
        files = other.dir
    if not mode.startswith("container:"):
        etcfiles.write_container_files(c.dir, c.record["Config"]["Hostname"])
    if mode == "host":   # the host's names, as docker gives a --network host container
        etcfiles.write_in_place(c.dir / "hosts", open("/etc/hosts").read())
    mounts = [{"destination": f"/etc/{name}", "type": "bind", "source": str(files / name),
               "options": ["rbind", "rprivate"]} for name in ("hosts", "hostname", "resolv.conf")]
    return namespaces, mounts


def needs_endpoint(c) -> bool:
    mode = c.record["HostConfig"]["NetworkMode"]
    return not (mode in SPECIAL or mode.startswith("container:"))


def connect(c, pid: int) -> dict:
    """Plug a just-created container into its network; returns what to record in its state."""
    mode = c.record["HostConfig"]["NetworkMode"]
    if not needs_endpoint(c):
        return {"NetworkSettings": {"Networks": {}, "Ports": {}}, "Ports": []}
    from . import endpoints
    settings = endpoints.connect(c.id, f"/proc/{pid}/ns/net", mode, name=c.name,
                                 hostname=c.record["Config"]["Hostname"], ports=c.record["HostConfig"]["PortBindings"],
                                 hosts_path=str(c.dir / "hosts"), root=c.store.root)
    shown = [f"{b['HostIp']}:{b['HostPort']}->{port}" for port, binds in settings["Ports"].items() for b in binds or []]
    return {"AttachedNetworks": [mode], "NetworkSettings": settings, "Ports": shown}


def reserve_ports(settings: dict) -> list:
    """Sockets bound to every published host port; the monitor holds them while the container runs,
    so no host program can take a port whose traffic is redirected to the container."""
    from . import ports
    held = []
    for port, binds in (settings.get("Ports") or {}).items():
        number, _, proto = port.partition("/")
        for b in binds or []:
            held.append(ports.reserve({"host_ip": b["HostIp"], "host_port": int(b["HostPort"]), "proto": proto}))
    return held


def release(c) -> None:
    """Undo connect(), on stop and rm (idempotent).

    pyroute2 runs an asyncio loop of its own, which fails inside a thread that
    already runs one, as a notebook kernel's main thread does: so the work is
    done in a short-lived thread of its own.
    """
    import threading
    from . import endpoints
    failure = []

    def work():
        try:
            endpoints.release(c.id, root=c.store.root)
        except BaseException as e:   # handed to the caller below
            failure.append(e)
    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
