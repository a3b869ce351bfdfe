"""docker's -p syntax, parsed without touching the host."""
import pytest

from minidocker.errors import MinidockerError
from minidocker.ports import docker_ports, parse_publish


@pytest.mark.parametrize("text, spec", [
    ("8080:80", ("0.0.0.0", 8080, 80, "tcp")),
    ("127.0.0.1:8080:80", ("127.0.0.1", 8080, 80, "tcp")),
    ("127.0.0.1::80/udp", ("127.0.0.1", 0, 80, "udp")),
    ("80", ("0.0.0.0", 0, 80, "tcp")),
    ("53:53/udp", ("0.0.0.0", 53, 53, "udp")),
    ("65535:1", ("0.0.0.0", 65535, 1, "tcp")),
])
def test_what_each_form_of_publish_means(text, spec):
    got = parse_publish(text)
    assert (got["host_ip"], got["host_port"], got["container_port"], got["proto"]) == spec


@pytest.mark.parametrize("text, message", [
    ("70000:80", "Invalid hostPort"),
    ("0:80", "Invalid hostPort"),
    ("8080:0", "Invalid containerPort"),
    ("8080:65536", "Invalid containerPort"),
    ("abc", "Invalid containerPort"),
    ("8080:", "Invalid containerPort"),
    ("8080:80/sctp", "invalid proto"),
    ("1.2.3:8080:80", "invalid IP address"),
    ("8000-8010:80", "ranges are not supported"),
])
def test_a_bad_publish_is_a_clear_error_with_exit_code_125(text, message):
    with pytest.raises(MinidockerError, match=message) as e:
        parse_publish(text)
    assert e.value.exit_code == 125


def test_ports_are_shown_as_docker_inspect_shows_them():
    specs = [dict(parse_publish("127.0.0.1:8080:80"))]
    assert docker_ports(specs) == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}]}
