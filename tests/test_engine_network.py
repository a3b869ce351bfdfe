"""Networking through the engine: containers on the default bridge and on a
user network, by address and by name; a published port from the host; none;
nothing left after rm or after a monitor is killed."""
import json
import os
import signal
import time
import urllib.request

import pytest

from helpers import md

pytestmark = pytest.mark.root


@pytest.fixture
def root(engine):
    return engine


def _ip(root, name, network="bridge"):
    return json.loads(md("inspect", name, root=root, check=True).stdout)[0]["NetworkSettings"]["Networks"][network]["IPAddress"]


def test_two_containers_on_the_default_bridge_ping_and_talk_tcp(root):
    md("run", "-d", "--name", "server", "busybox", "sh", "-c", "echo pong | nc -l -p 7000", root=root, check=True)
    server_ip = _ip(root, "server")
    assert md("run", "--rm", "busybox", "ping", "-c", "1", "-W", "3", server_ip, root=root).returncode == 0
    time.sleep(0.3)
    r = md("run", "--rm", "busybox", "sh", "-c", f"echo ping | nc {server_ip} 7000", root=root, check=True)
    assert r.stdout.strip() == "pong"


def test_a_user_network_resolves_names_also_after_a_restart(root):
    md("network", "create", "--subnet", "10.213.0.0/24", "lab", root=root, check=True)
    md("run", "-d", "--name", "db", "--network", "lab", "busybox", "sleep", "60", root=root, check=True)
    r = md("run", "--rm", "--network", "lab", "busybox", "ping", "-c", "1", "-W", "3", "db", root=root)
    assert r.returncode == 0, r.stdout + r.stderr
    first = _ip(root, "db", "lab")
    md("stop", "-t", "0", "db", root=root, check=True)
    md("run", "-d", "--name", "other", "--network", "lab", "busybox", "sleep", "60", root=root, check=True)
    md("start", "db", root=root, check=True)   # comes back with the next free address
    assert _ip(root, "db", "lab") != first
    r = md("run", "--rm", "--network", "lab", "busybox", "ping", "-c", "1", "-W", "3", "db", root=root)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_host_reaches_busybox_httpd_through_a_published_port(root):
    md("run", "-d", "--name", "web", "-p", "127.0.0.1:18088:80", "busybox", "sh", "-c",
       "mkdir -p /www && echo hello > /www/index.html && httpd -f -p 80 -h /www", root=root, check=True)
    assert "127.0.0.1:18088->80/tcp" in md("ps", root=root).stdout
    import socket
    with socket.socket() as s:   # the monitor holds the port: no host program can take it
        with pytest.raises(OSError):
            s.bind(("127.0.0.1", 18088))
    deadline = time.monotonic() + 10
    while True:
        try:
            assert urllib.request.urlopen("http://127.0.0.1:18088/", timeout=3).read() == b"hello\n"
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_network_none_has_only_lo(root):
    r = md("run", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net", root=root, check=True)
    assert r.stdout.split() == ["lo"]


def test_a_port_in_use_fails_before_the_container_starts(root):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        r = md("run", "--rm", "-p", f"127.0.0.1:{port}:80", "busybox", "true", root=root)
        assert r.returncode == 125 and str(port) in r.stderr
    finally:
        s.close()
    assert md("ps", "-aq", root=root).stdout == ""


@pytest.mark.parametrize("args, message", [
    (["--network", "nope"], "network nope not found"),
    (["-p", "70000:80"], "70000"),
    (["-p", "80/sctp"], "proto"),
])
def test_bad_network_input_is_exit_125(root, args, message):
    r = md("run", "--rm", *args, "busybox", "true", root=root)
    assert r.returncode == 125 and message in r.stderr, r.stderr


def test_nothing_is_left_after_a_monitor_is_killed_and_the_next_command_runs(root):
    md("run", "--rm", "busybox", "true", root=root, check=True)   # the bridge now exists, and stays
    before = set(os.listdir("/sys/class/net"))
    md("run", "-d", "--name", "victim", "-p", "127.0.0.1:18087:80", "busybox", "sleep", "2", root=root, check=True)
    cid = json.loads(md("inspect", "victim", root=root).stdout)[0]["Id"]
    state = json.loads((root / "containers" / cid / "state.json").read_text())
    os.kill(state["MonitorPid"], signal.SIGKILL)
    from minidocker.runtime.statedir import start_time
    deadline = time.monotonic() + 20   # the container's sleep ends; nobody is left to clean up but the next command
    while start_time(state["Pid"]) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "Exited" in md("ps", "-a", root=root, check=True).stdout
    assert set(os.listdir("/sys/class/net")) - before == set()
    rules = os.popen("iptables-save").read()
    assert cid[:12] not in rules and "18087" not in rules
