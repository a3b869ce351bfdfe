"""bundle.py writes Docker's defaults; user.py reads users only from inside the image."""
import json
import os
import time

import pytest

from minidocker import bundle
from minidocker.errors import MinidockerError
from minidocker.runtime import capabilities, user


@pytest.fixture
def image(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nbob:x:1001:1002:Bob:/home/bob:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nbobs:x:1002:\naudio:x:29:bob,carol\n")
    return root


def test_defaults_match_docker(image):
    c = bundle.spec(image, ["sh"], id="0123456789abcdef")
    p = c["process"]
    assert c["hostname"] == "0123456789ab"
    assert p["env"] == ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                        "HOSTNAME=0123456789ab", "HOME=/root"]
    assert capabilities.mask(p["capabilities"]["bounding"]) == 0xa80425fb  # Docker's 14
    assert p["capabilities"]["effective"] == p["capabilities"]["permitted"] == p["capabilities"]["bounding"]
    assert p["capabilities"]["inheritable"] == p["capabilities"]["ambient"] == []
    assert p["noNewPrivileges"] is False and p["user"] == {"uid": 0, "gid": 0, "additionalGids": [0]}
    mounts = {m["destination"]: m for m in c["mounts"]}
    assert list(mounts) == ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]
    assert "size=67108864" in mounts["/dev/shm"]["options"]  # 64 MiB
    assert "/proc/kcore" in c["linux"]["maskedPaths"] and "/proc/sys" in c["linux"]["readonlyPaths"]
    assert {n["type"] for n in c["linux"]["namespaces"]} >= {"pid", "network", "ipc", "uts", "mount"}
    assert c["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}


def test_user_env_and_extras(image, tmp_path):
    c = bundle.spec(image, ["id"], user="bob", env=["A=1", "HOME=/x"], cwd="/w",
                    mounts=[{"destination": "/d", "type": "bind", "source": "/tmp", "options": ["rbind"]}],
                    cgroups_path="/minidocker/abc", resources={"pids": {"limit": 2048}})
    p = c["process"]
    assert p["user"] == {"uid": 1001, "gid": 1002, "additionalGids": [1002, 29]}
    assert p["capabilities"]["effective"] == [] == p["capabilities"]["permitted"]  # moby#27689
    assert p["env"][-2:] == ["A=1", "HOME=/x"] and p["cwd"] == "/w"
    assert c["mounts"][-1]["destination"] == "/d" and c["linux"]["cgroupsPath"] == "/minidocker/abc"
    assert c["linux"]["resources"]["pids"] == {"limit": 2048}
    bundle.write(tmp_path / "b", c)
    assert json.loads((tmp_path / "b" / "config.json").read_text()) == c
    assert oct(os.stat(tmp_path / "b" / "config.json").st_mode & 0o777) == "0o600"


def test_user_forms(image):
    assert user.resolve(str(image), "") == {"uid": 0, "gid": 0, "additionalGids": [0], "home": "/root"}
    assert user.resolve(str(image), "1001")["gid"] == 1002
    assert user.resolve(str(image), "4242:4343") == {"uid": 4242, "gid": 4343, "additionalGids": [4343],
                                                      "home": "/"}
    assert user.resolve(str(image), "bob:audio")["gid"] == 29
    for bad in ("nobody", "bob:nogroup"):
        with pytest.raises(MinidockerError):
            user.resolve(str(image), bad)


def test_passwd_is_read_inside_the_root_only(image, tmp_path):
    outside = tmp_path / "host-passwd"
    outside.write_text("root:x:0:0:evil:/evil:/bin/sh\n")
    os.unlink(image / "etc" / "passwd")
    os.symlink("../../../../../../../../" + str(outside).lstrip("/"), image / "etc" / "passwd")
    assert user.resolve(str(image), "")["home"] == "/"  # the link clamps to the root: not found


@pytest.mark.parametrize("kind", ["fifo", "devzero", "huge"])
def test_hostile_passwd_fails_fast(image, kind):
    target = image / "etc" / "passwd"
    os.unlink(target)
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "devzero":
        os.symlink("/dev/zero", target)  # resolves to <root>/dev/zero: absent, or not regular
        (image / "dev").mkdir()
        os.mknod(image / "dev" / "zero", 0o666 | 0o020000, os.makedev(1, 5))
    else:
        target.write_bytes(b"#" * (user.MAX_SIZE + 10))
    t = time.monotonic()
    with pytest.raises(MinidockerError):
        user.resolve(str(image), "bob")
    assert time.monotonic() - t < 5
