"""Plugging a container into a network: veth pair, address lease, routes, names.

The engine calls `connect` once the container's init exists (its network
namespace is /proc/<pid>/ns/net), and `release` when it stops or is removed.
Everything here is undone by deleting the host end of the veth pair (the
kernel deletes the other end, and the address and routes on it, with it),
the iptables rules tagged for the endpoint, and the lease in the record.
"""
import hashlib
import ipaddress
import os
import secrets

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from . import etcfiles
from .errors import Conflict, MinidockerError
from .files import crash_point
from .network import (DEFAULT, _all, _delete_link, _drop_network, _ensure_bridge, _load, _lock,
                      _save, _tag)
from .ports import add_rules, claim_host_port, delete_rules, docker_ports, parse_publish, port_rules


def connect(container_id: str, netns_path: str, network: str = DEFAULT, *, name=None,
            hostname=None, aliases=(), ports=(), hosts_path=None, root=None) -> dict:
    """Plug the container whose network namespace is `netns_path` in; its NetworkSettings."""
    specs = [p if isinstance(p, dict) else parse_publish(p) for p in ports]
    with _lock(root):
        net = _load(root, network, exit_code=125)
        if container_id in net["endpoints"]:
            raise Conflict(f"container {container_id[:12]} is already connected to network "
                           f"{network}", 125)
        if not os.path.exists(netns_path):
            raise MinidockerError(f"no network namespace at {netns_path}", 125)
        name = name or container_id[:12]
        if network != DEFAULT and name in [e["name"] for e in net["endpoints"].values()]:
            raise Conflict(f"endpoint with name {name} already exists in network {network}", 125)
        specs = _claim_ports(root, specs)
        ip = _allocate(net)
        key = hashlib.sha256(f"{_tag(root)}/{container_id}/{network}".encode()).hexdigest()
        net["endpoints"][container_id] = {
            "id": secrets.token_hex(32), "name": name, "hostname": hostname or container_id[:12],
            "aliases": list(aliases), "ip": ip, "mac": "02:42:" + ":".join(
                f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed),
            "veth": "mdv" + key[:8], "ifname": _free_ifname(netns_path), "netns": netns_path,
            "hosts_path": hosts_path, "ports": specs, "state": "connecting"}
        _save(root, net)  # the lease first: a crash from here on leaves a trace for reconcile
        try:
            crash_point("network.connect.recorded")
            _ensure_bridge(root, net)
            tag = _tag(root, container_id, network)
            _plug(net, net["endpoints"][container_id], tag)
            crash_point("network.connect.plugged")
            add_rules(tag, [rule for s in specs for rule in port_rules(net["bridge"], ip, s)])
            crash_point("network.connect.published")
        except BaseException:
            _unplug(root, net, container_id)
            _save(root, net)
            raise
        net["endpoints"][container_id]["state"] = "connected"
        _save(root, net)
        _refresh_hosts(root, _hosts_paths(net))
        return settings(container_id, root=root)


def _claim_ports(root, specs) -> list:
    """Check the host ports against our other containers and the host, before any change."""
    claimed = [s for n in _all(root) for e in n["endpoints"].values() for s in e["ports"]]
    result = []
    for spec in specs:
        for other in claimed + result:
            same_ip = "0.0.0.0" in (other["host_ip"], spec["host_ip"]) or \
                other["host_ip"] == spec["host_ip"]
            same_port = (other["proto"], other["host_port"]) == (spec["proto"], spec["host_port"])
            if same_ip and same_port:
                raise MinidockerError(f"Bind for {spec['host_ip']}:{spec['host_port']} failed: "
                                      "port is already allocated", 125)
        result.append(claim_host_port(spec))
    return result


def _allocate(net) -> str:
    """The next free address after the last one handed out (wrapping), as docker's IPAM does."""
    subnet = ipaddress.ip_network(net["subnet"])
    used = {e["ip"] for e in net["endpoints"].values()} | {net["gateway"]}
    first, size = int(subnet.network_address) + 1, subnet.num_addresses - 2
    start = int(ipaddress.IPv4Address(net["last"])) - first + 1
    for step in range(size):
        candidate = str(ipaddress.IPv4Address(first + (start + step) % size))
        if candidate not in used:
            net["last"] = candidate
            return candidate
    raise MinidockerError(f"no free address left in network {net['name']} ({subnet})", 125)


def _free_ifname(netns_path) -> str:
    with IPRoute(netns=netns_path, flags=0) as ns:
        names = {link.get_attr("IFLA_IFNAME") for link in ns.link("dump")}
    return next(f"eth{i}" for i in range(len(names) + 1) if f"eth{i}" not in names)


def _plug(net, ep, tag) -> None:
    """ip link add <veth> type veth peer <ethN> netns <ns>; master, address, up, default route."""
    prefix = ipaddress.ip_network(net["subnet"]).prefixlen
    with IPRoute() as ipr:
        ipr.link("add", ifname=ep["veth"], kind="veth",
                 peer={"ifname": ep["ifname"], "net_ns_fd": ep["netns"]})
        index = ipr.link_lookup(ifname=ep["veth"])[0]
        bridge = ipr.link_lookup(ifname=net["bridge"])[0]
        ipr.link("set", index=index, master=bridge, mtu=net["mtu"], state="up",
                 ifalias=tag)
        # hairpin: the bridge may send a frame back out of the port it came in by,
        # which a container reaching its own published port needs
        ipr.brport("set", index=index, mode=1)
    with IPRoute(netns=ep["netns"], flags=0) as ns:
        ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
        index = ns.link_lookup(ifname=ep["ifname"])[0]
        ns.link("set", index=index, address=ep["mac"], mtu=net["mtu"])
        ns.addr("add", index=index, address=ep["ip"], prefixlen=prefix)
        ns.link("set", index=index, state="up")
        try:  # the first network's gateway becomes the default route, as in docker
            ns.route("add", dst="0.0.0.0/0", gateway=net["gateway"])
        except NetlinkError as e:
            if e.code != 17:  # EEXIST: another network already gave one
                raise


def _unplug(root, net, container_id) -> None:
    """Undo connect for one endpoint, whatever point it reached. Idempotent."""
    ep = net["endpoints"].pop(container_id, None)
    if ep is None:
        return
    tag = _tag(root, container_id, net["name"])
    delete_rules(lambda t: t == tag)
    _delete_link(ep["veth"], tag)
    _delete_link(ep["veth"], None)  # made, but crashed before it was tagged


def disconnect(container_id: str, network: str, *, root=None) -> None:
    """Disconnect a container from one network; doing it twice is not an error."""
    with _lock(root):
        net = _load(root, network)
        paths = _hosts_paths(net)
        _unplug(root, net, container_id)
        _save(root, net)
        _refresh_hosts(root, paths)


def release(container_id: str, *, root=None) -> None:
    """Give back everything the container holds on every network (on stop and rm)."""
    with _lock(root):
        for net in _all(root):
            if container_id in net["endpoints"]:
                paths = _hosts_paths(net)
                _unplug(root, net, container_id)
                _save(root, net)
                _refresh_hosts(root, paths)


def settings(container_id: str, *, root=None) -> dict:
    """The container's NetworkSettings, as in docker inspect."""
    result = {"Networks": {}, "Ports": {}}
    for net in _all(root):
        ep = net["endpoints"].get(container_id)
        if not ep or ep["state"] != "connected":
            continue
        result["Networks"][net["name"]] = {
            "NetworkID": net["id"], "EndpointID": ep["id"], "Gateway": net["gateway"],
            "IPAddress": ep["ip"], "IPPrefixLen": int(net["subnet"].split("/")[1]),
            "MacAddress": ep["mac"], "Aliases": [ep["name"], *ep["aliases"]]}
        result["Ports"].update(docker_ports(ep["ports"]))
    default = result["Networks"].get(DEFAULT, {})
    for key in ("IPAddress", "IPPrefixLen", "Gateway", "MacAddress"):
        result[key] = default.get(key, "")
    return result


def _hosts_paths(net) -> dict:
    return {cid: e["hosts_path"] for cid, e in net["endpoints"].items() if e["hosts_path"]}


def _refresh_hosts(root, paths: dict) -> None:
    """Rewrite each container's hosts file: its own addresses, then its peers by name."""
    nets = _all(root)
    for cid, path in paths.items():
        entries = []
        for net in nets:
            me = net["endpoints"].get(cid)
            if not me or me["state"] != "connected":
                continue
            entries.append((me["ip"], me["hostname"]))
            if net["name"] != DEFAULT:  # docker resolves names on user networks only
                entries += [(e["ip"], e["name"], *e["aliases"]) for c, e in net["endpoints"].items()
                            if c != cid and e["state"] == "connected"]
        if os.path.exists(path):
            etcfiles.write_in_place(path, etcfiles.hosts_text(entries))


def reconcile(store_root=None, alive=None) -> None:
    """After a crash: drop dead containers' endpoints and any link or rule no record explains.

    A container is dead when `alive(container_id)` says so (the engine knows),
    or when the host end of its veth pair is gone: the kernel deletes it
    when the container's network namespace dies.
    """
    root = store_root
    with _lock(root):
        live = set()
        for net in _all(root):
            paths = _hosts_paths(net)
            for cid, ep in list(net["endpoints"].items()):
                if ep["state"] != "connected" or not _link_exists(ep["veth"]) or \
                        (alive is not None and not alive(cid)):
                    _unplug(root, net, cid)
                else:
                    live.add(_tag(root, cid, net["name"]))
            live.add(_tag(root, "net", net["name"]))
            _save(root, net)
            _refresh_hosts(root, paths)
        _sweep(root, keep=live)


def _link_exists(name) -> bool:
    with IPRoute() as ipr:
        return bool(ipr.link_lookup(ifname=name))


def _sweep(root, keep) -> None:
    """Delete links and rules tagged for this store, except the tags in `keep`."""
    ours = _tag(root) + ":"
    delete_rules(lambda t: t.startswith(ours) and t not in keep)
    with IPRoute() as ipr:
        for link in ipr.link("dump"):
            alias = link.get_attr("IFLA_IFALIAS") or ""
            if alias.startswith(ours) and alias not in keep:
                try:
                    ipr.link("del", index=link["index"])
                except NetlinkError as e:
                    if e.code != 19:  # ENODEV: gone with its peer already
                        raise


def remove_all(*, root=None) -> None:
    """Remove every endpoint, network, bridge and rule of this store (tests, uninstall)."""
    with _lock(root):
        for net in _all(root):
            for cid in list(net["endpoints"]):
                _unplug(root, net, cid)
            _drop_network(root, net)
        _sweep(root, keep=())
