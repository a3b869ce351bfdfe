"""The resident helper (serve.py): a command it runs behaves as the same command run alone."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import minidocker
from helpers import md

pytestmark = pytest.mark.root


def helper_pid(root):
    """The helper serving `root`, found as the tests find monitors: by its name (and its store)."""
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and Path(f"/proc/{entry}/comm").read_text().strip() == "minidocker-srv":
                if f"MINIDOCKER_ROOT={root}".encode() in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    return int(entry)
        except OSError:
            continue
    return None


def children(pid):
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
        except OSError:
            continue
    return found


def typed(root, *args, cwd=None, env=None, **kw):
    """`minidocker ARGS` started as a shell would (not waited for)."""
    env = dict(os.environ, MINIDOCKER_ROOT=str(root), **(env or {}))
    return subprocess.Popen([sys.executable, "-m", "minidocker", *args], env=env, cwd=cwd, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.fixture
def served(engine):
    assert md("system", "serve", "-d", root=engine, check=True).stdout.startswith("serving ")
    assert helper_pid(engine)
    yield engine
    md("system", "serve", "--stop", root=engine, check=True)
    assert helper_pid(engine) is None and not (engine / "serve.sock").exists()


def test_a_command_runs_in_a_worker_of_the_helper_with_our_streams_and_exit_code(served):
    p = typed(served, "run", "--rm", "busybox", "sh", "-c", "sleep 1; echo out; echo err >&2; exit 3")
    time.sleep(0.5)
    assert len(children(helper_pid(served))) == 1   # the worker running our `run`
    out, err = p.communicate(timeout=30)
    assert (p.returncode, out, err) == (3, "out\n", "err\n")
    r = md("run", "--rm", "-i", "busybox", "cat", root=served, input="piped\n")
    assert (r.returncode, r.stdout) == (0, "piped\n")


def test_the_worker_has_our_directory_environment_and_errors(served, tmp_path):
    (tmp_path / "e.env").write_text("A=from-file\n")
    p = typed(served, "run", "--rm", "--env-file", "e.env", "-e", "B", "busybox", "sh", "-c", "echo $A $B",
              cwd=tmp_path, env={"B": "from-env"})
    assert p.communicate(timeout=30) == ("from-file from-env\n", "") and p.returncode == 0
    r = md("run", "--rm", "no-such-image", root=served)
    assert r.returncode == 125 and r.stderr.startswith("minidocker: ") and r.stderr.count("\n") == 1
    r = md("no-such-verb", root=served)
    assert r.returncode == 125 and "invalid choice" in r.stderr


def test_our_signals_reach_the_container_through_the_worker(served):
    p = typed(served, "run", "--rm", "busybox", "sh", "-c", "trap 'exit 7' TERM; echo up; sleep 30 & wait")
    assert p.stdout.readline() == "up\n"
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=30) == 7
    p.stdout.close()
    p.stderr.close()


def test_detached_run_and_the_lifecycle_work_through_the_helper(served):
    cid = md("run", "-d", "--name", "bg", "busybox", "sleep", "30", root=served, check=True).stdout.strip()
    assert md("ps", "-q", "--no-trunc", root=served, check=True).stdout.split() == [cid]
    assert md("exec", "bg", "echo", "inside", root=served, check=True).stdout == "inside\n"
    md("rm", "-f", "bg", root=served, check=True)
    assert md("ps", "-aq", root=served, check=True).stdout == ""


def test_one_helper_per_store_and_a_killed_one_is_replaced(served):
    r = md("system", "serve", "-d", root=served)
    assert r.returncode == 1 and "already serves" in r.stderr
    os.kill(helper_pid(served), signal.SIGKILL)
    for _ in range(50):
        if helper_pid(served) is None:
            break
        time.sleep(0.1)
    assert (served / "serve.sock").exists()   # left behind: nobody answers it
    assert md("images", "-q", root=served, check=True).stdout   # the command runs alone
    md("system", "serve", "-d", root=served, check=True)   # and a new helper takes the socket over
    assert md("images", "-q", root=served, check=True).stdout


def test_the_helper_steps_aside_once_minidocker_changes_under_it(served):
    source = Path(minidocker.__file__).parent / "units.py"
    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    try:
        assert md("images", "-q", root=served, check=True).stdout   # served alone, as the edit asks
        for _ in range(50):
            if helper_pid(served) is None:
                break
            time.sleep(0.1)
        assert helper_pid(served) is None and not (served / "serve.sock").exists()
    finally:
        os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    md("system", "serve", "-d", root=served, check=True)   # for the fixture to stop


def test_reset_stops_the_helper(served):
    out = md("system", "reset", "-f", root=served, check=True).stdout
    assert "Removed resident helper" in out and helper_pid(served) is None
    md("bootstrap", root=served, check=True)
    md("system", "serve", "-d", root=served, check=True)   # for the fixture to stop


def test_a_terminal_works_through_the_helper(served):
    import test_lifecycle   # the same session as without the helper: prompt, tty, window size, exit code
    test_lifecycle.test_run_it_gives_a_real_terminal_that_follows_window_resizes(served)


def test_a_big_environment_arrives_whole(served):
    big = {f"BIG{i}": "x" * 100_000 for i in range(4)}   # 400 kB: more than one write on the socket
    p = typed(served, "run", "--rm", *(f"-e{k}" for k in big), "busybox", "sh", "-c",
              "sleep 1; echo $((${#BIG0} + ${#BIG1} + ${#BIG2} + ${#BIG3}))", env=big)
    time.sleep(0.5)
    assert len(children(helper_pid(served))) == 1   # served, not run alone
    assert p.communicate(timeout=30) == ("400000\n", "") and p.returncode == 0


def test_a_socket_path_too_long_is_a_one_line_error(tmp_path):
    root = tmp_path / ("x" * 100) / "store"   # unix socket paths stop at 108 bytes
    for args in (("-d",), ()):
        r = md("system", "serve", *args, root=root)
        assert r.returncode == 1 and r.stderr.startswith("minidocker: cannot serve at ") and r.stderr.count("\n") == 1
    assert not [p for p in root.iterdir() if p.name.startswith("serve.sock")] and helper_pid(root) is None
