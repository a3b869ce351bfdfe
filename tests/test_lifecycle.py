"""Every container verb end to end, with real containers, through the command line."""
import os
import signal
import threading
import time

import pytest

from helpers import md
from minidocker.runtime.statedir import start_time

pytestmark = pytest.mark.root


@pytest.fixture
def root(engine):
    return engine


def test_run_streams_output_and_returns_the_exit_code(root):
    r = md("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", root=root)
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    assert md("ps", "-aq", root=root).stdout == ""   # --rm removed it


def test_the_command_is_pid_1_with_the_container_id_as_hostname(root):
    r = md("run", "--name", "who", "busybox", "sh", "-c", "echo $$; hostname", root=root, check=True)
    cid = md("inspect", "who", root=root, check=True).stdout.split('"Id": "')[1][:12]
    assert r.stdout.split() == ["1", cid]


@pytest.mark.parametrize("command, code", [(["nosuchcommand"], 127), (["/etc"], 126), (["/etc/passwd"], 126)])
def test_docker_exit_codes_for_commands_that_cannot_run(root, command, code):
    r = md("run", "--rm", "busybox", *command, root=root)
    assert r.returncode == code, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_detached_container_lives_through_ps_exec_stop_start_logs_rm(root):
    cid = md("run", "-d", "--name", "web", "busybox", "sh", "-c",
             "echo started; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done", root=root,
             check=True).stdout.strip()
    assert len(cid) == 64
    ps = md("ps", root=root, check=True).stdout
    assert "web" in ps and "Up " in ps
    assert md("exec", "web", "hostname", root=root, check=True).stdout.strip() == cid[:12]
    assert md("exec", "web", "sh", "-c", "echo kept > /data.txt", root=root).returncode == 0
    assert md("exec", "-w", "/etc", "web", "pwd", root=root, check=True).stdout == "/etc\n"
    assert md("exec", "-e", "X=42", "web", "sh", "-c", "echo $X", root=root, check=True).stdout == "42\n"
    assert md("stop", "-t", "5", "web", root=root, check=True).stdout == "web\n"
    ps = md("ps", "-a", root=root, check=True).stdout
    assert "Exited (0)" in ps
    assert md("inspect", "web", root=root, check=True).stdout.count('"Running": false') == 1
    # Temporary, but restartable: the writable layer survives a stop.
    md("start", "web", root=root, check=True)
    assert md("exec", "web", "cat", "/data.txt", root=root, check=True).stdout == "kept\n"
    logs = md("logs", "web", root=root, check=True).stdout
    assert logs.split() == ["started", "bye", "started"]
    assert md("logs", "--tail", "1", "web", root=root, check=True).stdout == "started\n"
    refused = md("rm", "web", root=root)
    assert refused.returncode != 0 and "running" in refused.stderr
    assert md("rm", "-f", "web", root=root, check=True).stdout == "web\n"
    assert md("ps", "-aq", root=root).stdout == ""


def test_stop_kills_a_container_that_ignores_sigterm_after_the_timeout(root):
    md("run", "-d", "--name", "stubborn", "busybox", "sh", "-c", "trap '' TERM; while true; do sleep 0.1; done",
       root=root, check=True)
    started = time.monotonic()
    md("stop", "-t", "1", "stubborn", root=root, check=True)
    assert 0.9 < time.monotonic() - started < 8
    assert md("wait", "stubborn", root=root, check=True).stdout.strip() == "137"


def test_refused_transitions_are_clear_errors(root):
    md("create", "--name", "c1", "busybox", "true", root=root, check=True)
    assert "Created" in md("ps", "-a", root=root).stdout
    e = md("exec", "c1", "true", root=root)
    assert e.returncode != 0 and "not running" in e.stderr
    md("run", "-d", "--name", "c2", "busybox", "sleep", "30", root=root, check=True)
    e = md("start", "c2", root=root)
    assert e.returncode != 0 and "already running" in e.stderr
    e = md("run", "--name", "c2", "busybox", "true", root=root)
    assert e.returncode == 125 and "already in use" in e.stderr
    e = md("run", "--name", "bad name!", "busybox", "true", root=root)
    assert e.returncode == 125 and "Invalid container name" in e.stderr
    e = md("run", "nosuchimage", root=root)
    assert e.returncode == 125 and "No such image" in e.stderr


def test_a_killed_monitor_never_leaves_a_dead_container_shown_as_running(root):
    md("run", "-d", "--name", "orphan", "busybox", "sleep", "1", root=root, check=True)
    import json
    state = json.loads((root / "containers").joinpath(
        md("inspect", "orphan", root=root).stdout.split('"Id": "')[1][:64], "state.json").read_text())
    os.kill(state["MonitorPid"], signal.SIGKILL)
    assert "Up " in md("ps", root=root).stdout   # the container itself still runs
    deadline = time.monotonic() + 10
    while start_time(state["Pid"]) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    ps = md("ps", "-a", root=root, check=True).stdout
    assert "Up " not in ps and "Exited" in ps


def test_the_python_api_works_from_a_thread(root, monkeypatch):
    from minidocker import api as docker
    result = {}

    def work():
        c = docker.run("busybox", ["echo", "from a thread"])
        result["logs"], result["code"] = c.logs(), c.wait()
        c.remove()
    t = threading.Thread(target=work)
    t.start()
    t.join(60)
    assert result == {"logs": "from a thread\n", "code": 0}


def test_rerunning_a_named_api_run_replaces_the_stopped_container(root):
    from minidocker import api as docker
    for _ in range(2):
        c = docker.run("busybox", "echo again", name="cell")
    assert c.logs() == "again\n"
    c.remove()


def test_twenty_containers_started_and_removed_concurrently(root):
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(lambda i: md("run", "--rm", "busybox", "sh", "-c", f"exit {i % 3}", root=root,
                                             timeout=120), range(20)))
    assert [r.returncode for r in results] == [i % 3 for i in range(20)], [r.stderr for r in results]
    assert md("ps", "-aq", root=root).stdout == ""


def test_run_it_gives_a_real_terminal_that_follows_window_resizes(root):
    """-it: the container's stdin/stdout are a pty of its own; the window size is passed on."""
    import fcntl
    import pty
    import struct
    import sys
    import termios
    env = dict(os.environ, MINIDOCKER_ROOT=str(root))
    pid, master = pty.fork()
    if pid == 0:   # the child is "the user's terminal session"
        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
        os.execve(sys.executable, [sys.executable, "-m", "minidocker", "run", "-it", "--rm", "--network", "none",
                                   "busybox", "sh"], env)
    out = b""

    def read_until(token, timeout=20):
        nonlocal out
        deadline = time.monotonic() + timeout
        while token not in out and time.monotonic() < deadline:
            import select
            if select.select([master], [], [], 0.2)[0]:
                try:
                    out += os.read(master, 4096)
                except OSError:
                    break
        return token in out

    assert read_until(b"# "), out   # the prompt: the shell runs and owns its terminal
    if b"\x1b[6n" in out:   # busybox asks where the cursor is, as terminals are asked; answer like one
        os.write(master, b"\x1b[1;5R")
        time.sleep(0.5)   # what follows too soon would be read as part of the answer
    os.write(master, b"tty; stty size; echo mark-$((40+2))\r")
    assert read_until(b"mark-42"), out
    assert b"/dev/pts/" in out and b"33 101" in out
    os.write(master, b"exit 3\r")
    _, status = os.waitpid(pid, 0)
    os.close(master)
    assert os.waitstatus_to_exitcode(status) == 3
