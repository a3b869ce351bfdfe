"""A container's /etc/hosts, /etc/resolv.conf and /etc/hostname.

Each container gets its own three files in its state directory, bind-mounted
over the image's. The host's files are never changed. /etc/hosts is how
containers on a user-defined network find each other by name: when a
container joins or leaves, minidocker rewrites the hosts file of every
container on that network. It rewrites it in place, because a bind mount
pins the inode: a new file renamed over the old one would not be seen inside.
"""
import ipaddress
import os
from pathlib import Path

# The lines docker's /etc/hosts always starts with.
HOSTS_HEADER = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::\tip6-localnet
ff00::\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""
SYSTEMD_STUB = "127.0.0.53"
SYSTEMD_UPSTREAM = "/run/systemd/resolve/resolv.conf"


def hosts_text(entries=()) -> str:
    """/etc/hosts content: the localhost lines, then one "ip name alias..." line per entry."""
    lines = [f"{ip}\t{' '.join(names)}\n" for ip, *names in entries]
    return HOSTS_HEADER + "".join(lines)


def resolv_conf_text(host_text: str, fallback=()) -> str:
    """The host's resolv.conf without loopback nameservers, which a netns cannot reach.

    127.0.0.53 (systemd-resolved) or a local dnsmasq listen on the host's
    loopback, and a container has a loopback of its own. When nothing is left,
    `fallback` servers are used; it is empty by default, so a container never
    talks to a public resolver unless asked to.
    """
    kept, servers = [], []
    for line in host_text.splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            if _is_loopback(words[1]):
                continue
            servers.append(words[1])
        kept.append(line)
    if not servers:
        kept += [f"nameserver {s}" for s in fallback]
    return "\n".join(kept) + "\n"


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def host_resolv_conf(path="/etc/resolv.conf", upstream=SYSTEMD_UPSTREAM) -> str:
    """The host's resolv.conf, or systemd-resolved's upstream list behind its 127.0.0.53 stub."""
    text = Path(path).read_text()
    servers = [line.split()[1] for line in text.splitlines()
               if line.split()[:1] == ["nameserver"] and len(line.split()) > 1]
    if servers == [SYSTEMD_STUB] and os.path.exists(upstream):
        return Path(upstream).read_text()
    return text


def dns_fallback() -> list:
    """Fallback nameservers from $MINIDOCKER_DNS_FALLBACK ("8.8.8.8,8.8.4.4"); none by default."""
    return [s for s in os.environ.get("MINIDOCKER_DNS_FALLBACK", "").split(",") if s.strip()]


def write_in_place(path, text: str) -> None:
    """Overwrite `path` keeping its inode, so a bind mount of it sees the new content."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_container_files(state_dir, hostname: str, resolv_conf="/etc/resolv.conf") -> dict:
    """Create hosts, hostname and resolv.conf for a new container; returns their paths."""
    state_dir = Path(state_dir)
    paths = {name: state_dir / name for name in ("hosts", "hostname", "resolv.conf")}
    write_in_place(paths["hosts"], hosts_text())  # connect() adds the container's addresses
    write_in_place(paths["hostname"], hostname + "\n")
    write_in_place(paths["resolv.conf"],
                   resolv_conf_text(host_resolv_conf(resolv_conf), dns_fallback()))
    return {k: str(v) for k, v in paths.items()}
