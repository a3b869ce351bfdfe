"""Networks and endpoints, for real: namespaces made here play the containers.

Each "container" is a network namespace from pyroute2's netns.create, with
busybox run inside it through nsenter. Traffic only goes to 127.0.0.1 and to
those namespaces. Every test ends by checking that no link, rule, lease or
namespace it made is left on the host.
"""
import os
import socket
import subprocess
import sys
import time

import pytest
from pyroute2 import IPRoute, netns

from minidocker import endpoints, network, ports
from minidocker.errors import MinidockerError

pytestmark = pytest.mark.root
A, B, C = "a" * 64, "b" * 64, "c" * 64
NET = f"10.{os.getpid() % 200 + 30}"  # fixed subnets, but not the same in two runs at once


class Box:
    """A stand-in container: a named network namespace and the processes run in it."""

    def __init__(self, name):
        self.name, self.path, self.procs = name, f"/run/netns/{name}", []
        netns.create(name)

    def run(self, *cmd, timeout=10):
        return subprocess.run(["nsenter", f"--net={self.path}", *cmd], capture_output=True,
                              text=True, timeout=timeout)

    def spawn(self, *cmd):
        proc = subprocess.Popen(["nsenter", f"--net={self.path}", *cmd],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def links(self):
        with IPRoute(netns=self.path, flags=0) as ns:
            return {link.get_attr("IFLA_IFNAME") for link in ns.link("dump")}

    def close(self):
        for proc in self.procs:
            proc.kill()
            proc.wait()
        if os.path.exists(self.path):
            netns.remove(self.name)


def ours(root):
    """Links and iptables rules tagged for the store at `root`."""
    tag = network._tag(root) + ":"
    with IPRoute() as ipr:
        links = [link.get_attr("IFLA_IFALIAS") for link in ipr.link("dump")
                 if (link.get_attr("IFLA_IFALIAS") or "").startswith(tag)]
    return links, ports.tagged_rules(lambda t: t.startswith(tag))


def tagged(root, cid):
    """Rules and links that belong to container `cid`."""
    links, rules = ours(root)
    return [r for r in rules if f":{cid}:" in r[1]] + [a for a in links if f":{cid}:" in a]


@pytest.fixture
def lab(tmp_path, monkeypatch):
    """A temporary store root and a factory of boxes; checks that nothing leaks."""
    root = tmp_path / "root"
    monkeypatch.setenv("MINIDOCKER_ROOT", str(root))
    # a default bridge of our own, so that a concurrent test run elsewhere is no clash
    monkeypatch.setenv("MINIDOCKER_BRIDGE", f"minidockert{os.getpid() % 65536:04x}")
    forward = open("/proc/sys/net/ipv4/ip_forward").read()
    boxes = []

    def box():
        boxes.append(Box(f"mdt{os.getpid() % 100000}x{len(boxes)}"))
        return boxes[-1]

    box.root = str(root)
    try:
        yield box
    finally:  # whatever happens, take down what this store made
        try:
            for b in boxes:
                b.close()
        finally:
            network.remove_all()
    # Routing stays on while any minidocker bridge (another store's) still needs it.
    if not [name for name in os.listdir("/sys/class/net") if name.startswith("minidocker")]:
        open("/proc/sys/net/ipv4/ip_forward", "w").write(forward)
    assert ours(root) == ([], [])
    assert not [b.name for b in boxes if os.path.exists(b.path)]


def http_get(host, port, path="/index.html"):
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode()


def httpd(box, tmp_path, text):
    www = tmp_path / f"www-{box.name}"
    www.mkdir()
    (www / "index.html").write_text(text)
    box.spawn("busybox", "httpd", "-f", "-p", "80", "-h", str(www))
    for _ in range(50):  # until it listens
        if "LISTEN" in box.run("busybox", "netstat", "-ltn").stdout:
            return
        time.sleep(0.05)
    raise AssertionError("busybox httpd did not start")


def test_two_containers_on_the_default_bridge_ping_and_talk_tcp(lab, tmp_path):
    one, two = lab(), lab()
    s1 = network.connect(A, one.path, name="one")
    s2 = network.connect(B, two.path, name="two")
    assert s1["Networks"]["bridge"]["Gateway"] == s1["Gateway"]
    assert s1["IPAddress"] != s2["IPAddress"]
    assert one.links() == {"lo", "eth0"}
    with IPRoute(netns=one.path, flags=0) as ns:
        eth0 = ns.link("get", index=ns.link_lookup(ifname="eth0")[0])[0]
        assert eth0.get_attr("IFLA_ADDRESS") == s1["MacAddress"]
        gateways = [r.get_attr("RTA_GATEWAY") for r in ns.route("dump", family=2)]
    assert s1["Gateway"] in gateways
    ping = one.run("busybox", "ping", "-c", "1", "-W", "3", s2["IPAddress"])
    assert ping.returncode == 0, ping.stdout + ping.stderr
    httpd(two, tmp_path, "hello from two\n")
    page = one.run("busybox", "wget", "-q", "-O", "-", f"http://{s2['IPAddress']}/index.html")
    assert page.stdout == "hello from two\n"
    # the host reaches the container through the bridge too
    assert http_get(s2["IPAddress"], 80).endswith("hello from two\n")


def test_a_container_is_found_by_its_process_as_the_engine_passes_it(lab, tmp_path):
    init = subprocess.Popen(["unshare", "--net", "sleep", "60"])  # a container's init
    try:
        path = f"/proc/{init.pid}/ns/net"
        for _ in range(100):  # until unshare has made the new namespace
            if os.readlink(path) != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.01)
        got = network.connect(A, path)
        box = lab()
        network.connect(B, box.path)
        ping = box.run("busybox", "ping", "-c", "1", "-W", "3", got["IPAddress"])
        assert ping.returncode == 0, ping.stdout + ping.stderr
    finally:
        init.kill()
        init.wait()
    network.release(A)
    assert tagged(lab.root, A) == []


def test_networks_are_isolated_from_each_other(lab, tmp_path):
    network.create_network("red")
    network.create_network("blue")
    red, blue = lab(), lab()
    to_red = network.connect(A, red.path, "red", ports=[f"127.0.0.1:{free_port()}:80"])
    network.connect(B, blue.path, "blue")
    red_ip = to_red["Networks"]["red"]["IPAddress"]
    assert open("/proc/sys/net/ipv4/ip_forward").read() == "1\n"  # the host routes between them...
    httpd(red, tmp_path, "red\n")
    assert http_get(red_ip, 80).endswith("red\n")
    ping = blue.run("busybox", "ping", "-c", "1", "-W", "1", red_ip)
    assert ping.returncode != 0  # ...but the firewall does not let one network reach another
    # (timeout rather than wget -T: Debian's static busybox wget crashes with -T)
    page = blue.run("timeout", "2", "busybox", "wget", "-q", "-O", "-", f"http://{red_ip}/index.html")
    assert page.returncode == 124 and page.stdout == ""  # no answer, not even a refusal


def resolve_and_ping(box, hosts, name):
    """Ping `name` from `box` with `hosts` bind-mounted on /etc/hosts, as in a container."""
    script = f"mount --bind {hosts} /etc/hosts && exec nsenter --net={box.path} " \
             f"busybox ping -c 1 -W 3 {name}"
    return subprocess.run(["unshare", "--mount", "sh", "-c", script], capture_output=True,
                          text=True, timeout=10)


def test_containers_on_a_user_network_find_each_other_by_name_also_after_a_restart(lab, tmp_path):
    network.create_network("appnet")
    web, client = lab(), lab()
    hosts = {cid: tmp_path / f"hosts-{cid[0]}" for cid in (A, B, C)}
    for path in hosts.values():
        path.write_text("")
    first = network.connect(A, web.path, "appnet", name="web", aliases=["www"],
                            hosts_path=str(hosts[A]))
    network.connect(B, client.path, "appnet", name="client", hosts_path=str(hosts[B]))
    old_ip = first["Networks"]["appnet"]["IPAddress"]
    assert f"{old_ip}\tweb www\n" in hosts[B].read_text()
    assert hosts[B].read_text().startswith("127.0.0.1\tlocalhost\n")
    result = resolve_and_ping(client, hosts[B], "web")
    assert result.returncode == 0 and old_ip in result.stdout, result.stdout + result.stderr

    # A process that holds the hosts file bind-mounted, as a running container does.
    inode = os.stat(hosts[B]).st_ino
    holder = subprocess.Popen(["unshare", "--mount", "sh", "-c",
                               f"mount --bind {hosts[B]} /etc/hosts && exec sleep 60"])
    try:
        network.release(A)  # web stops...
        assert "web" not in hosts[B].read_text()
        web.close()
        again = lab()  # ...and starts again in a new namespace, with a new address
        new = network.connect(C, again.path, "appnet", name="web", hosts_path=str(hosts[C]))
        new_ip = new["Networks"]["appnet"]["IPAddress"]
        assert new_ip != old_ip
        assert os.stat(hosts[B]).st_ino == inode  # rewritten in place
        time.sleep(0.2)
        inside = subprocess.run(["nsenter", f"--mount=/proc/{holder.pid}/ns/mnt", "cat",
                                 "/etc/hosts"], capture_output=True, text=True).stdout
        assert f"{new_ip}\tweb\n" in inside and old_ip not in inside
    finally:
        holder.kill()
        holder.wait()
    result = resolve_and_ping(client, hosts[B], "web")
    assert result.returncode == 0 and new_ip in result.stdout, result.stdout + result.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_host_fetches_a_page_through_a_published_port_on_127_0_0_1(lab, tmp_path):
    box = lab()
    local, anywhere = free_port(), free_port()
    got = network.connect(A, box.path, ports=[f"127.0.0.1:{local}:80", f"{anywhere}:80"])
    assert got["Ports"]["80/tcp"] == [{"HostIp": "127.0.0.1", "HostPort": str(local)},
                                      {"HostIp": "0.0.0.0", "HostPort": str(anywhere)}]
    httpd(box, tmp_path, "published\n")
    assert http_get("127.0.0.1", local).endswith("published\n")
    assert http_get("127.0.0.1", anywhere).endswith("published\n")
    network.release(A)
    with pytest.raises(OSError):  # nothing answers on the port any more
        http_get("127.0.0.1", local)


def test_containers_reach_a_published_port_through_the_host_address(lab, tmp_path):
    server, client = lab(), lab()
    port = free_port()
    got = network.connect(A, server.path, ports=[f"{port}:80"])
    network.connect(B, client.path)
    httpd(server, tmp_path, "via the host\n")
    url = f"http://{got['Gateway']}:{port}/index.html"
    for box in (client, server):  # another container, and the server itself (hairpin)
        page = box.run("timeout", "5", "busybox", "wget", "-q", "-O", "-", url)
        assert page.stdout == "via the host\n", (box.name, page.stderr)


UDP_ECHO = """
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5353))
data, peer = s.recvfrom(100)
s.sendto(data.upper(), peer)
"""


def test_a_udp_port_is_published_too(lab):
    box = lab()
    port = free_port()
    network.connect(A, box.path, ports=[f"127.0.0.1:{port}:5353/udp"])
    echo = box.spawn(sys.executable, "-c", UDP_ECHO)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        for _ in range(50):  # until the echo server has bound its port
            s.sendto(b"ping", ("127.0.0.1", port))
            try:
                assert s.recvfrom(100)[0] == b"PING"
                break
            except socket.timeout:
                continue
        else:
            raise AssertionError("no answer through the published UDP port")
    echo.wait(timeout=5)


def test_a_reserved_published_port_cannot_be_taken_by_a_host_program(lab, tmp_path):
    box = lab()
    port = free_port()
    got = network.connect(A, box.path, ports=[f"{port}:80"])
    held = [ports.reserve(ports.parse_publish(f"{port}:80"))]  # what the monitor would hold
    try:
        with socket.socket() as intruder, pytest.raises(OSError):
            intruder.bind(("127.0.0.1", port))
        httpd(box, tmp_path, "still ours\n")  # and the traffic still goes to the container
        assert http_get("127.0.0.1", port).endswith("still ours\n")
    finally:
        held[0].close()
    assert got["Ports"]["80/tcp"][0]["HostPort"] == str(port)


def test_a_port_already_in_use_is_an_error_and_nothing_is_set_up(lab):
    box, other = lab(), lab()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(MinidockerError, match="already in use") as e:
            network.connect(A, box.path, ports=[f"{port}:80"])
    assert e.value.exit_code == 125
    assert box.links() == {"lo"}
    assert A not in network.inspect_network("bridge")["Containers"]
    assert tagged(lab.root, A) == []
    # a port another container published is taken as well
    port = free_port()
    network.connect(A, box.path, ports=[f"127.0.0.1:{port}:80"])
    with pytest.raises(MinidockerError, match="already allocated"):
        network.connect(B, other.path, ports=[f"{port}:80"])
    assert other.links() == {"lo"}


def test_user_mistakes_are_clear_errors(lab):
    box = lab()
    network.create_network("one", subnet=f"{NET}.1.0/24")
    cases = [
        (lambda: network.create_network("two", subnet=f"{NET}.1.128/25"), "overlaps", 1),
        (lambda: network.create_network("two", subnet="127.0.0.0/16"), "overlaps", 1),
        (lambda: network.create_network("two", subnet="10.9.0.0/33"), "invalid subnet", 1),
        (lambda: network.create_network("two", subnet="ten.net"), "invalid subnet", 1),
        (lambda: network.create_network("two", subnet="10.9.0.0/24", gateway="10.8.0.1"),
         "no matching subnet", 1),
        (lambda: network.create_network("one"), "already exists", 1),
        (lambda: network.create_network("bad/name"), "invalid network name", 1),
        (lambda: network.connect(A, box.path, "nope"), "network nope not found", 125),
        (lambda: network.connect(A, "/run/netns/does-not-exist"), "no network namespace", 125),
        (lambda: network.connect(A, box.path, ports=["70000:80"]), "1-65535", 125),
        (lambda: network.remove_network("bridge"), "pre-defined", 1),
        (lambda: network.inspect_network("nope"), "not found", 1),
    ]
    for call, message, code in cases:
        with pytest.raises(MinidockerError, match=message) as e:
            call()
        assert e.value.exit_code == code
    assert box.links() == {"lo"}
    network.connect(A, box.path, "one", name="x")
    with pytest.raises(MinidockerError, match="already connected"):
        network.connect(A, box.path, "one")
    with pytest.raises(MinidockerError, match="already exists in network one"):
        network.connect(B, lab().path, "one", name="x")
    with pytest.raises(MinidockerError, match="active endpoints"):
        network.remove_network("one")
    assert [n["Name"] for n in network.list_networks()] == ["bridge", "one"]
    network.release(A)
    network.remove_network("one")
    assert [n["Name"] for n in network.list_networks()] == ["bridge"]


def test_addresses_are_handed_out_in_turn_so_a_restart_gets_a_new_one():
    net = {"name": "tiny", "subnet": "10.1.0.0/29", "gateway": "10.1.0.1", "last": "10.1.0.1",
           "endpoints": {}}
    handed = [endpoints._allocate(net) for _ in range(3)]
    assert handed == ["10.1.0.2", "10.1.0.3", "10.1.0.4"]
    net["endpoints"] = {"x": {"ip": "10.1.0.5"}, "y": {"ip": "10.1.0.6"}}
    assert endpoints._allocate(net) == "10.1.0.2"  # wraps past the gateway to a free one
    net["endpoints"].update(z={"ip": "10.1.0.2"}, w={"ip": "10.1.0.3"}, v={"ip": "10.1.0.4"})
    with pytest.raises(MinidockerError, match="no free address"):
        endpoints._allocate(net)


def test_the_networks_can_be_drawn(lab):
    box = lab()
    network.create_network("web", subnet=f"{NET}.2.0/24")
    network.connect(A, box.path, "web", name="shop")
    bridge = network.inspect_network("web")["Options"]["com.docker.network.bridge.name"]
    dot = network.to_dot()
    assert dot.startswith("digraph network {") and dot.endswith("}\n")
    assert f'"{bridge}" -> host' in dot and f"eth0 {NET}.2.2\\nveth mdv" in dot
    assert f'"{A}" -> "{bridge}"' in dot


def test_release_gives_back_everything_and_can_be_repeated(lab):
    box = lab()
    network.create_network("side")
    network.connect(A, box.path, ports=[f"127.0.0.1:{free_port()}:80"])
    network.connect(A, box.path, "side")
    assert box.links() == {"lo", "eth0", "eth1"}
    assert tagged(lab.root, A)
    network.release(A)
    network.release(A)
    network.disconnect(A, "side")
    assert box.links() == {"lo"}
    assert tagged(lab.root, A) == []
    assert all(not n["Containers"] for n in network.list_networks())


def connect_and_crash(box, point, root):
    code = f"from minidocker import network; network.connect({A!r}, {box.path!r}, " \
           f"ports=['127.0.0.1:{free_port()}:80'])"
    env = dict(os.environ, MINIDOCKER_ROOT=root, MINIDOCKER_CRASH_AT=point)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


@pytest.mark.parametrize("point", ["network.connect.recorded", "network.connect.plugged",
                                   "network.connect.published"])
def test_reconcile_after_a_crash_in_the_middle_of_connect(lab, point):
    box = lab()
    crashed = connect_and_crash(box, point, lab.root)
    assert crashed.returncode == 137, crashed.stderr
    record = network._load(lab.root, "bridge")
    assert record["endpoints"][A]["state"] == "connecting"
    network.reconcile(lab.root)
    assert A not in network.inspect_network("bridge")["Containers"]
    assert box.links() == {"lo"}
    assert tagged(lab.root, A) == []


def test_reconcile_drops_dead_containers_and_keeps_live_ones(lab):
    dead, live = lab(), lab()
    network.connect(A, dead.path, ports=[f"127.0.0.1:{free_port()}:80"])
    network.connect(B, live.path, ports=[f"127.0.0.1:{free_port()}:80"])
    dead.close()  # the container died and minidocker was not told
    network.reconcile(lab.root, alive=lambda cid: cid == B)
    assert list(network.inspect_network("bridge")["Containers"]) == [B]
    assert tagged(lab.root, A) == []
    assert live.links() == {"lo", "eth0"} and tagged(lab.root, B)
    # without being told, a vanished veth is enough to know
    live.close()
    for _ in range(100):  # the kernel deletes a dead netns' links asynchronously
        if not endpoints._link_exists(network._load(lab.root, "bridge")
                                              ["endpoints"][B]["veth"]):
            break
        time.sleep(0.05)
    network.reconcile(lab.root)
    assert network.inspect_network("bridge")["Containers"] == {}
    assert tagged(lab.root, B) == []


def test_forward_policy_drop_gives_a_warning(lab):
    box = lab()  # its own netns, so the host's firewall is not touched
    code = "from minidocker import ports; ports.warn_if_forward_drops(); print('checked')"
    calm = box.run(sys.executable, "-c", code)
    assert calm.stdout == "checked\n" and "Warning" not in calm.stderr
    assert box.run("iptables", "-P", "FORWARD", "DROP").returncode == 0
    warned = box.run(sys.executable, "-c", code)
    assert "FORWARD policy is DROP" in warned.stderr and warned.stdout == "checked\n"
