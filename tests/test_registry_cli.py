"""The verbs pull, push, login, logout, save and load, run as a user runs them."""
import json
import os
import stat
import subprocess
import sys

import pytest

from minidocker import images
from minidocker.store import Store
from registry_server import (PASSWORD, USER, build_image, free_port, htpasswd_registry, registry,  # noqa: F401
                             token_registry)


def md(*args, root, input=None, check=True):
    env = dict(os.environ, MINIDOCKER_ROOT=str(root))
    r = subprocess.run([sys.executable, "-m", "minidocker", *args], env=env, capture_output=True, input=input)
    if check:
        assert r.returncode == 0, r.stderr.decode()
    return r


def one_line_error(r, pattern):
    err = r.stderr.decode()
    assert r.returncode != 0
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert pattern in err, err


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-source") / "store"
    return build_image(Store(root), "busybox:latest")


@pytest.mark.slow
def test_push_then_pull_twice(source, registry, tmp_path):
    name = f"{registry.host}/minidocker/cli:v1"
    md("tag", "busybox:latest", name, root=source.store.root)
    out = md("push", name, root=source.store.root).stdout.decode()
    assert f"v1: digest: {source.manifest_desc['digest']}" in out
    root = tmp_path / "store"
    out = md("pull", name, root=root).stdout.decode().splitlines()
    assert out[-1] == name and "Status: Downloaded newer image" in out[-2]
    assert sum("Pull complete" in line for line in out) == 2
    out = md("pull", name, root=root).stdout.decode().splitlines()
    assert sum("Already exists" in line for line in out) == 2 and "up to date" in out[-2]
    assert images.get(Store(root), name).id == source.id


@pytest.fixture(scope="module", params=["htpasswd_registry", "token_registry"])
def auth_registry(request):
    """Each registry that asks for a password; module-scoped, so it starts before the leak check's snapshot."""
    return request.getfixturevalue(request.param)


@pytest.mark.slow
def test_login_checks_the_password_keeps_it_private_and_logout_forgets_it(auth_registry, tmp_path):
    htpasswd_registry = auth_registry
    root = tmp_path / "store"
    r = md("login", "-u", USER, "--password-stdin", htpasswd_registry.host, root=root, input=b"wrong\n", check=False)
    one_line_error(r, "incorrect username or password")
    assert not (root / "auth.json").exists()
    r = md("login", "-u", USER, "--password-stdin", htpasswd_registry.host, root=root, input=PASSWORD.encode() + b"\n")
    assert r.stdout.decode().strip() == "Login Succeeded"
    assert PASSWORD.encode() not in r.stdout + r.stderr
    assert stat.S_IMODE(os.stat(root / "auth.json").st_mode) == 0o600
    assert list(json.loads((root / "auth.json").read_text())["auths"]) == [htpasswd_registry.host]
    out = md("logout", htpasswd_registry.host, root=root).stdout.decode()
    assert out.strip() == f"Removing login credentials for {htpasswd_registry.host}"
    assert json.loads((root / "auth.json").read_text())["auths"] == {}


def test_save_and_load_through_files_and_pipes(source, tmp_path):
    out = tmp_path / "save.tar"
    md("save", "-o", str(out), "busybox", root=source.store.root)
    root = tmp_path / "a"
    assert md("load", "-i", str(out), root=root).stdout.decode().strip() == "Loaded image: busybox:latest"
    piped = md("save", "busybox", root=source.store.root).stdout
    assert md("load", root=tmp_path / "b", input=piped).stdout.decode().strip() == "Loaded image: busybox:latest"
    for r in (root, tmp_path / "b"):
        assert images.get(Store(r), "busybox").id == source.id


def test_mistakes_are_one_line_errors_that_leave_nothing(source, tmp_path):
    root = tmp_path / "store"
    one_line_error(md("pull", f"127.0.0.1:{free_port()}/a/b:v1", root=root, check=False), "connection refused")
    out = tmp_path / "save.tar"
    md("save", "-o", str(out), "busybox", root=source.store.root)
    (tmp_path / "cut.tar").write_bytes(out.read_bytes()[:50_000])
    one_line_error(md("load", "-i", str(tmp_path / "cut.tar"), root=root, check=False), "truncated")
    one_line_error(md("save", "-o", str(out), "nothere", root=root, check=False), "No such image")
    store = Store(root)
    assert images.list_images(store) == [] and list(store.blobs.iterdir()) == []


@pytest.mark.slow
def test_unknown_tag_is_one_line(source, registry, tmp_path):
    one_line_error(md("pull", f"{registry.host}/minidocker/none:v9", root=tmp_path / "s", check=False), "not found")
