"""Container networks: a Linux bridge per network, a veth pair per container.

    container netns              host netns
    ┌──────────────┐
    │ lo           │
    │ eth0 ────────┼─ veth pair ─ mdv1a2b3c4d ─┐ bridge minidocker0 172.30.0.1/16
    │ 172.30.0.2   │                           ├─ routing + NAT (ports.py) ─ eth0
    └──────────────┘   another container ─ ...─┘

`connect` is `ip link add ... type veth peer ... netns ...`, `ip link set
master`, `ip addr add` and `ip route add default` done over netlink with
pyroute2, plus the firewall rules from ports.py. The address comes from our
own IPAM: the network's record lists every endpoint (lease), and the next
free address after the last one handed out is taken, so a restarted
container usually gets a new address (names, not addresses, are stable).

State: <root>/networks/<name>.json, changed only under <root>/networks/.lock.
An endpoint is recorded *before* its links and rules exist ("connecting"),
so a crash halfway leaves a record that `reconcile` can clean up. Every link
and rule we make is tagged "minidocker:<store hash>:..." (a link alias, an
iptables comment), so cleanup never touches anything that is not ours.
"""
import hashlib
import ipaddress
import os
import re
import secrets
import time
from pathlib import Path

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from . import ports
from .errors import Conflict, MinidockerError, NotFound
from .files import Lock, read_json, write_json

DEFAULT = "bridge"  # docker's name for the default network
DEFAULT_BRIDGE = "minidocker0"
# Candidate subnets, checked against every host address and route before use.
POOL = [f"172.{n}.0.0/16" for n in (30, 31)] + [f"192.168.{n}.0/20" for n in range(0, 256, 16)]
NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")
_locks = {}


def _root(root=None) -> Path:
    return Path(root or os.environ.get("MINIDOCKER_ROOT") or "/var/lib/minidocker")


def _dir(root) -> Path:
    d = _root(root) / "networks"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def _lock(root) -> Lock:
    path = str(_dir(root) / ".lock")
    return _locks.setdefault(path, Lock(path))  # one Lock object per file keeps it re-entrant


def _tag(root, *parts) -> str:
    """The label on our links and rules: which store made it, for what."""
    store = hashlib.sha256(os.path.realpath(_root(root)).encode()).hexdigest()[:8]
    return ":".join(["minidocker", store, *parts])


def _all(root) -> list:
    return [read_json(p) for p in sorted(_dir(root).glob("*.json"))]


def _save(root, net) -> None:
    write_json(_dir(root) / f"{net['name']}.json", net)


def _load(root, name, exit_code=1) -> dict:
    if NAME.fullmatch(name) and (_dir(root) / f"{name}.json").exists():
        return read_json(_dir(root) / f"{name}.json")
    if name == DEFAULT:  # created on first use, as dockerd creates docker0 at start
        return _new(root, DEFAULT, None, None, _default_bridge())
    raise NotFound(f"network {name} not found", exit_code)


def _default_bridge() -> str:
    """minidocker0, or $MINIDOCKER_BRIDGE (like dockerd --bridge), e.g. one per test run."""
    name = os.environ.get("MINIDOCKER_BRIDGE") or DEFAULT_BRIDGE
    if not re.fullmatch(r"minidocker[a-z0-9]{1,5}", name):
        raise MinidockerError(f"MINIDOCKER_BRIDGE={name}: the name must be minidocker + 1 to 5 "
                              "letters or digits (interface names have 15 characters at most)")
    return name


def _new(root, name, subnet, gateway, bridge) -> dict:
    subnet, gateway = _choose_subnet(root, subnet, gateway)
    net = {"name": name, "id": secrets.token_hex(32), "bridge": bridge, "subnet": subnet,
           "gateway": gateway, "mtu": 1500, "last": gateway, "endpoints": {},
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _save(root, net)
    return net


def _taken_networks(root) -> list:
    """Every IPv4 network already in use: host addresses, host routes, our networks."""
    taken = [ipaddress.ip_network(n["subnet"]) for n in _all(root)]
    with IPRoute() as ipr:
        for a in ipr.addr("dump", family=2):
            address = f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
            taken.append(ipaddress.ip_interface(address).network)
        for r in ipr.route("dump", family=2):
            if r["dst_len"] and r.get_attr("RTA_DST"):
                taken.append(ipaddress.ip_network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}"))
    return taken


def _choose_subnet(root, subnet, gateway):
    taken = _taken_networks(root)
    if subnet:
        try:
            net = ipaddress.IPv4Network(subnet)
        except ValueError as e:
            raise MinidockerError(f"invalid subnet {subnet}: {e}") from None
        if net.prefixlen > 30:
            raise MinidockerError(f"invalid subnet {subnet}: too small, use /30 or larger")
        clash = [t for t in taken if net.overlaps(t)]
        if clash:
            raise Conflict(f"Pool overlaps with other one on this address space: "
                           f"{subnet} overlaps {clash[0]}")
    else:
        free = [p for p in POOL if not any(ipaddress.ip_network(p).overlaps(t) for t in taken)]
        if not free:
            raise MinidockerError("no free subnet left for a new network; pass --subnet")
        net = ipaddress.IPv4Network(free[0])
    try:
        gw = ipaddress.IPv4Address(gateway) if gateway else net.network_address + 1
    except ValueError:
        raise MinidockerError(f"invalid gateway {gateway}") from None
    if gw not in net or gw in (net.network_address, net.broadcast_address):
        raise MinidockerError(f"no matching subnet for gateway {gateway} (subnet {net})")
    return str(net), str(gw)


def create_network(name: str, subnet=None, gateway=None, *, root=None) -> dict:
    """Create a user-defined bridge network (docker network create)."""
    if not NAME.fullmatch(name or ""):
        raise MinidockerError(f"invalid network name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]*")
    with _lock(root):
        if (_dir(root) / f"{name}.json").exists() or name in (DEFAULT, "host", "none"):
            raise Conflict(f"network with name {name} already exists")
        _load(root, DEFAULT)  # the default network takes the first free subnet
        used = {n["bridge"] for n in _all(root)}
        with IPRoute() as ipr:
            bridge = next(b for b in (f"minidocker{i}" for i in range(1, 10000))
                          if b not in used and not ipr.link_lookup(ifname=b))
        net = _new(root, name, subnet, gateway, bridge)
        try:
            _ensure_bridge(root, net)
        except BaseException:
            _drop_network(root, net)
            raise
    return inspect_network(name, root=root)


def _ensure_bridge(root, net) -> None:
    """Make the network's bridge, its address and its firewall rules exist (idempotent)."""
    tag = _tag(root, "net", net["name"])
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=net["bridge"])
        if found:
            if ipr.link("get", index=found[0])[0].get_attr("IFLA_IFALIAS") != tag:
                raise Conflict(f"bridge {net['bridge']} already exists and does not belong to "
                               f"network {net['name']} of this store ({_root(root)}); another "
                               "store uses it? set MINIDOCKER_BRIDGE for another default bridge")
        else:
            ipr.link("add", ifname=net["bridge"], kind="bridge")
            index = ipr.link_lookup(ifname=net["bridge"])[0]
            ipr.link("set", index=index, ifalias=tag, mtu=net["mtu"], state="up")
            ipr.addr("add", index=index, address=net["gateway"],
                     prefixlen=ipaddress.ip_network(net["subnet"]).prefixlen)
    # Packets DNATed from 127.0.0.1 keep that source on their way to the bridge.
    Path(f"/proc/sys/net/ipv4/conf/{net['bridge']}/route_localnet").write_text("1")
    # Containers reach the outside through the host: docker turns routing on too.
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1")
    if not ports.tagged_rules(lambda t: t == tag):
        ports.add_rules(tag, ports.bridge_rules(net["bridge"], net["subnet"]))
    ports.warn_if_forward_drops()


def _delete_link(name, tag) -> None:
    with IPRoute() as ipr:
        for index in ipr.link_lookup(ifname=name):
            if ipr.link("get", index=index)[0].get_attr("IFLA_IFALIAS") == tag:
                try:
                    ipr.link("del", index=index)
                except NetlinkError as e:
                    if e.code != 19:  # ENODEV: the container's netns took it with it
                        raise


def remove_network(name: str, *, root=None) -> None:
    """Remove a user-defined network that no container uses (docker network rm)."""
    if name == DEFAULT:
        raise MinidockerError(f"{DEFAULT} is a pre-defined network and cannot be removed")
    with _lock(root):
        net = _load(root, name)
        if net["endpoints"]:
            users = ", ".join(e["name"] for e in net["endpoints"].values())
            raise Conflict(f"error while removing network: network {name} has active endpoints "
                           f"({users})")
        _drop_network(root, net)


def _drop_network(root, net) -> None:
    tag = _tag(root, "net", net["name"])
    ports.delete_rules(lambda t: t == tag)
    _delete_link(net["bridge"], tag)
    (_dir(root) / f"{net['name']}.json").unlink()


def inspect_network(name: str, *, root=None) -> dict:
    """A network as docker network inspect shows it."""
    with _lock(root):
        net = _load(root, name)
    return {"Name": net["name"], "Id": net["id"], "Created": net["created"], "Scope": "local",
            "Driver": "bridge", "Options": {"com.docker.network.bridge.name": net["bridge"]},
            "IPAM": {"Driver": "default",
                     "Config": [{"Subnet": net["subnet"], "Gateway": net["gateway"]}]},
            "Containers": {cid: {"Name": ep["name"], "EndpointID": ep["id"],
                                 "MacAddress": ep["mac"],
                                 "IPv4Address": f"{ep['ip']}/{net['subnet'].split('/')[1]}"}
                           for cid, ep in net["endpoints"].items()}}


def list_networks(*, root=None) -> list:
    """Every network of this store, the default "bridge" first (docker network ls)."""
    with _lock(root):
        _load(root, DEFAULT)  # makes its record on first use
        names = [n["name"] for n in _all(root)]
    names.sort(key=lambda n: (n != DEFAULT, n))
    return [inspect_network(n, root=root) for n in names]


def to_dot(*, root=None) -> str:
    """Graphviz DOT text of the networks: host, bridges, veth pairs, containers."""
    lines = ['digraph network {', '  rankdir="LR";',
             '  node [shape=box, fontname="Helvetica"]; edge [fontname="Helvetica"];',
             '  host [label="host netns\\nrouting + NAT", shape=ellipse];']
    with _lock(root):
        nets = _all(root)
    for net in nets:
        lines.append(f'  "{net["bridge"]}" [label="{net["bridge"]}\\n{net["gateway"]}/'
                     f'{net["subnet"].split("/")[1]}\\nnetwork {net["name"]}"];')
        lines.append(f'  "{net["bridge"]}" -> host [dir=both];')
        for cid, ep in sorted(net["endpoints"].items()):
            lines.append(f'  "{cid}" [label="container {cid[:12]}", style=rounded];')
            lines.append(f'  "{cid}" -> "{net["bridge"]}" [dir=both, '
                         f'label="{ep["ifname"]} {ep["ip"]}\\nveth {ep["veth"]}"];')
    return "\n".join(lines + ["}"]) + "\n"


ENDPOINT_API = ("connect", "disconnect", "release", "settings", "reconcile", "remove_all")


def __getattr__(name):
    """network.connect & co.: the other half of the chapter, in endpoints.py.

    Looked up lazily because endpoints.py imports this module's helpers.
    """
    if name in ENDPOINT_API:
        from . import endpoints
        return getattr(endpoints, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
