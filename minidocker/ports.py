"""Published ports and the firewall rules behind every minidocker network.

`-p 8080:80` is not a process listening on 8080: it is a DNAT rule that
rewrites the destination of packets for host port 8080 to the container's
address and port, so the kernel does the forwarding at full speed.

    host 127.0.0.1:8080 ──nat OUTPUT DNAT──► 172.30.0.2:80 (container)
    other host ──► eth0:8080 ──nat PREROUTING DNAT──► 172.30.0.2:80
    container ──► internet: nat POSTROUTING MASQUERADE (source = host's address)

A packet from 127.0.0.1 may only leave through the bridge if the bridge has
`route_localnet=1`, and its source is then masqueraded to the bridge address
so the container can answer. An INPUT rule stops containers from using that
setting to reach services listening on the host's 127.0.0.1.

We shell out to iptables (Debian's nft backend) for these rules because
pyroute2 has no iptables API and hand-built nftables expressions would hide
the rules a learner can read with `iptables-save`. Every rule carries a
comment starting with "minidocker:" so cleanup finds exactly ours.
"""
import ipaddress
import shlex
import socket
import subprocess
import warnings

from .errors import MinidockerError


def parse_publish(text: str) -> dict:
    """Parse docker's -p syntax "[IP:][HOST:]CONTAINER[/tcp|udp]" into a port spec."""
    raw = text
    text, _, proto = text.partition("/")
    proto = proto or "tcp"
    if proto not in ("tcp", "udp"):
        raise MinidockerError(f"invalid proto: {proto} (in -p {raw}; use tcp or udp)", 125)
    parts = text.rsplit(":", 2)
    if "-" in text:
        raise MinidockerError(f"port ranges are not supported: {raw}", 125)
    ip, host = "", ""
    if len(parts) == 3:
        ip, host, container = parts
    elif len(parts) == 2:
        host, container = parts
    else:
        container = parts[0]
    if ip:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise MinidockerError(f"invalid IP address in -p {raw}: {ip} (IPv4 only)",
                                  125) from None
    spec = {"host_ip": ip or "0.0.0.0", "host_port": _port(host, "hostPort", raw, allow_empty=True),
            "container_port": _port(container, "containerPort", raw), "proto": proto}
    return spec


def _port(text, what, raw, allow_empty=False) -> int:
    if text == "" and allow_empty:
        return 0  # like docker: the kernel picks a free host port
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise MinidockerError(f"Invalid {what}: {text!r} in -p {raw} (ports are 1-65535)", 125)
    return int(text)


def claim_host_port(spec: dict) -> dict:
    """Fail clearly if the host port is taken; pick one when it is 0 (docker's -p 80)."""
    kind = socket.SOCK_STREAM if spec["proto"] == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        # SO_REUSEADDR so that old TIME_WAIT connections do not count as "in use";
        # a live listener still makes bind() fail.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((spec["host_ip"], spec["host_port"]))
        except OSError as e:
            raise MinidockerError(f"Bind for {spec['host_ip']}:{spec['host_port']} failed: "
                                  f"port is already in use ({e.strerror})", 125) from None
        return dict(spec, host_port=s.getsockname()[1])


def reserve(spec: dict) -> socket.socket:
    """A socket bound to the host port, so no host program can take it while it is published.

    DNAT never hands packets to this socket (they are rewritten before the
    host would deliver them); it only makes a later bind() by anyone else
    fail, as docker does. Whoever outlives the container (its monitor)
    keeps it open. No SO_REUSEADDR, which would let another such socket in.
    """
    kind = socket.SOCK_STREAM if spec["proto"] == "tcp" else socket.SOCK_DGRAM
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind((spec["host_ip"], spec["host_port"]))
    except OSError as e:
        s.close()
        raise MinidockerError(f"Bind for {spec['host_ip']}:{spec['host_port']} failed: "
                              f"port is already in use ({e.strerror})", 125) from None
    return s


def docker_ports(specs) -> dict:
    """The "Ports" map of docker inspect: {"80/tcp": [{"HostIp":..., "HostPort":...}]}."""
    ports = {}
    for s in specs:
        ports.setdefault(f"{s['container_port']}/{s['proto']}", []).append(
            {"HostIp": s["host_ip"], "HostPort": str(s["host_port"])})
    return ports


# --- iptables -----------------------------------------------------------------

def iptables(*args, check=True) -> str:
    """Run iptables -w with `args`; a failure is a MinidockerError naming the rule."""
    run = subprocess.run(["iptables", "-w", *args], capture_output=True, text=True)
    if check and run.returncode:
        raise MinidockerError(f"iptables {' '.join(args)}: {run.stderr.strip()}")
    return run.stdout


def add_rules(tag: str, rules) -> None:
    """Insert (table, chain, match...) rules at the top of their chains, in the given order.

    Inserting rather than appending puts them before a DROP rule some other
    firewall may have appended; we insert in reverse to keep our own order.
    """
    for table, chain, *spec in reversed(list(rules)):
        iptables("-t", table, "-I", chain, *spec, "-m", "comment", "--comment", tag)


def tagged_rules(match):
    """(table, tag, rule args) of every rule whose comment `match(comment)` accepts."""
    found = []
    for table in ("filter", "nat"):
        for line in subprocess.run(["iptables-save", "-t", table], capture_output=True,
                                   text=True, check=True).stdout.splitlines():
            if not line.startswith("-A "):
                continue
            args = shlex.split(line)
            if "--comment" in args:
                tag = args[args.index("--comment") + 1]
                if match(tag):
                    found.append((table, tag, args[1:]))
    return found


def delete_rules(match) -> None:
    """Delete every rule whose comment `match(comment)` accepts."""
    for table, _, args in tagged_rules(match):
        iptables("-t", table, "-D", *args, check=False)


def bridge_rules(bridge: str, subnet: str):
    """The rules one network needs: forwarding, isolation, masquerade, localnet guard."""
    return [
        ("filter", "FORWARD", "-i", bridge, "-o", bridge, "-j", "ACCEPT"),
        # one minidocker network cannot reach another, as docker isolates its bridges
        ("filter", "FORWARD", "-i", bridge, "-o", "minidocker+", "-j", "DROP"),
        ("filter", "FORWARD", "-i", bridge, "-j", "ACCEPT"),
        ("filter", "FORWARD", "-o", bridge, "-m", "conntrack", "--ctstate",
         "RELATED,ESTABLISHED", "-j", "ACCEPT"),
        ("filter", "INPUT", "-i", bridge, "-d", "127.0.0.0/8", "-m", "conntrack", "!",
         "--ctstate", "RELATED,ESTABLISHED", "-j", "DROP"),
        ("nat", "POSTROUTING", "-s", subnet, "!", "-o", bridge, "-j", "MASQUERADE"),
        ("nat", "POSTROUTING", "-s", "127.0.0.0/8", "-o", bridge, "-j", "MASQUERADE"),
    ]


def port_rules(bridge: str, address: str, spec: dict):
    """DNAT from the host port (from this host and from outside) to the container."""
    to = ["-j", "DNAT", "--to-destination", f"{address}:{spec['container_port']}"]
    if spec["host_ip"] == "0.0.0.0":
        dst = ["-m", "addrtype", "--dst-type", "LOCAL"]
    else:
        dst = ["-d", spec["host_ip"]]
    match = ["-p", spec["proto"], *dst, "--dport", str(spec["host_port"])]
    return [
        ("nat", "OUTPUT", *match, *to),
        ("nat", "PREROUTING", *match, *to),
        # a container that reaches its own published port through the host (hairpin)
        # must see the host as the sender, or its answer would go to itself
        ("nat", "POSTROUTING", "-s", address, "-d", address, "-p", spec["proto"],
         "--dport", str(spec["container_port"]), "-j", "MASQUERADE"),
        # not from another minidocker bridge: that traffic meets the isolation rule
        ("filter", "FORWARD", "!", "-i", "minidocker+", "-o", bridge, "-d", address,
         "-p", spec["proto"], "--dport", str(spec["container_port"]), "-j", "ACCEPT"),
    ]


def warn_if_forward_drops() -> None:
    """Warn when the host's FORWARD policy is DROP (docker sets it; it breaks other bridges)."""
    if "-P FORWARD DROP" in iptables("-S", "FORWARD"):
        warnings.warn("the host's iptables FORWARD policy is DROP (docker or a firewall set it): "
                      "minidocker adds ACCEPT rules for its own bridges only; other bridges and "
                      "VMs on this host stay blocked", RuntimeWarning, stacklevel=3)
