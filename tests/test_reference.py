"""References are normalised as docker does, and bad ones are refused."""
import pytest

from minidocker import reference
from minidocker.errors import MinidockerError

D = "sha256:" + "a" * 64


@pytest.mark.parametrize("text, full, familiar", [
    ("ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest"),
    ("docker.io/ubuntu", "docker.io/library/ubuntu:latest", "ubuntu:latest"),
    ("index.docker.io/library/ubuntu:22.04", "docker.io/library/ubuntu:22.04", "ubuntu:22.04"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
    ("localhost:5000/a/b:v1", "localhost:5000/a/b:v1", "localhost:5000/a/b:v1"),
    ("127.0.0.1:5000/x", "127.0.0.1:5000/x:latest", "127.0.0.1:5000/x:latest"),
    (f"ubuntu@{D}", f"docker.io/library/ubuntu@{D}", f"ubuntu@{D}"),
    (f"ubuntu:22.04@{D}", f"docker.io/library/ubuntu:22.04@{D}", f"ubuntu:22.04@{D}"),
])
def test_normalisation_matches_docker(text, full, familiar):
    ref = reference.parse(text)
    assert str(ref) == full
    assert ref.familiar == familiar


def test_the_digest_is_kept_beside_the_tag_and_wins_when_pulling():
    ref = reference.parse(f"ubuntu:22.04@{D}")
    assert ref.digest == D and ref.tag == "22.04"


@pytest.mark.parametrize("bad", ["Ubuntu", "a/../b", "a//b", "", " ubuntu", "x:" + "t" * 129,
                                 "ubuntu@sha256:abc", "ubuntu@md5:" + "a" * 32, "-x", "x:..", "a\0b"])
def test_bad_references_are_one_line_errors(bad):
    with pytest.raises(MinidockerError) as e:
        reference.parse(bad)
    assert "\n" not in str(e.value)
