"""A container's /etc/hosts, resolv.conf and hostname (security.md A12, A13)."""
import os

from minidocker import etcfiles


def test_hosts_starts_with_dockers_localhost_lines_then_the_entries():
    text = etcfiles.hosts_text([("172.30.0.2", "abc123"), ("172.30.0.3", "web", "www")])
    assert text.splitlines() == [
        "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::\tip6-localnet", "ff00::\tip6-mcastprefix", "ff02::1\tip6-allnodes",
        "ff02::2\tip6-allrouters", "172.30.0.2\tabc123", "172.30.0.3\tweb www"]


def test_loopback_nameservers_are_dropped_because_a_netns_cannot_reach_them():
    host = "search example.org\nnameserver 127.0.0.1\nnameserver 10.0.0.2\nnameserver ::1\n" \
           "options ndots:2\n"
    assert etcfiles.resolv_conf_text(host) == \
        "search example.org\nnameserver 10.0.0.2\noptions ndots:2\n"


def test_there_is_no_public_dns_fallback_unless_asked_for(monkeypatch):
    only_stub = "nameserver 127.0.0.53\n"
    assert "nameserver" not in etcfiles.resolv_conf_text(only_stub, etcfiles.dns_fallback())
    monkeypatch.setenv("MINIDOCKER_DNS_FALLBACK", "192.0.2.53")
    assert etcfiles.resolv_conf_text(only_stub, etcfiles.dns_fallback()) == \
        "nameserver 192.0.2.53\n"


def test_the_files_are_written_for_a_container_and_the_hosts_file_is_left_alone(tmp_path):
    host_resolv = tmp_path / "host-resolv.conf"
    host_resolv.write_text("nameserver 127.0.0.11\nnameserver 10.1.2.3\n")
    before = open("/etc/hosts").read()
    paths = etcfiles.write_container_files(tmp_path, "abc123", resolv_conf=host_resolv)
    assert open(paths["hostname"]).read() == "abc123\n"
    assert open(paths["resolv.conf"]).read() == "nameserver 10.1.2.3\n"
    assert open(paths["hosts"]).read() == etcfiles.hosts_text()
    assert open("/etc/hosts").read() == before


def test_rewriting_in_place_keeps_the_inode_a_bind_mount_holds(tmp_path):
    path = tmp_path / "hosts"
    etcfiles.write_in_place(path, "a much longer first version\n")
    inode = os.stat(path).st_ino
    etcfiles.write_in_place(path, "short\n")
    assert os.stat(path).st_ino == inode and path.read_text() == "short\n"


def test_behind_systemd_resolved_the_upstream_servers_are_used(tmp_path):
    stub, upstream = tmp_path / "resolv.conf", tmp_path / "upstream.conf"
    stub.write_text("# systemd-resolved stub\nnameserver 127.0.0.53\noptions edns0\n")
    assert etcfiles.host_resolv_conf(stub, upstream) == stub.read_text()  # no upstream file
    upstream.write_text("nameserver 10.0.0.2\n")
    assert etcfiles.host_resolv_conf(stub, upstream) == "nameserver 10.0.0.2\n"
