"""Container verbs of the command line: run, create, start, ps, stop, kill, rm,
logs, exec, wait, top. Each is a thin shell over containers.py."""
import os
import signal
import sys
import time

from .cli import _store, arg, each, table, verb
from .errors import MinidockerError

RUN_ARGS = (
    arg("image"), arg("command", nargs="...", help="command and arguments (default: the image's)"),
    arg("--name"), arg("-e", "--env", action="append", default=[]),
    arg("--env-file", action="append", default=[]), arg("-w", "--workdir"), arg("-h", "--hostname"),
    arg("-u", "--user"), arg("--entrypoint"), arg("-i", "--interactive", action="store_true"),
    arg("-t", "--tty", action="store_true"), arg("-l", "--label", action="append", default=[]),
    arg("-m", "--memory"), arg("--memory-swap"), arg("--cpus"), arg("--cpu-shares", type=int),
    arg("--cpuset-cpus"), arg("--pids-limit", type=int),
    arg("--network", "--net", default="bridge"), arg("-p", "--publish", action="append", default=[]),
    arg("-P", "--publish-all", action="store_true"),
    arg("-v", "--volume", action="append", default=[]), arg("--mount", action="append", default=[]),
    arg("--tmpfs", action="append", default=[]), arg("--read-only", action="store_true"),
    arg("--cap-add", action="append", default=[]), arg("--cap-drop", action="append", default=[]),
    arg("--privileged", action="store_true"), arg("--security-opt", action="append", default=[]),
)


def _create(a, auto_remove=False):
    from . import containers
    store = _store()
    env = []
    for path in a.env_file:
        env += containers.read_env_file(path)
    labels = dict(item.split("=", 1) if "=" in item else (item, "") for item in a.label)
    from . import volumes
    mounts = volumes.parse(a.volume, a.mount, a.tmpfs, store=store)
    security = {"cap_add": a.cap_add, "cap_drop": a.cap_drop, "privileged": a.privileged,
                "security_opt": a.security_opt, "read_only": a.read_only}
    return containers.create(store, a.image, a.command or None, name=a.name, env=env + a.env, workdir=a.workdir,
                             hostname=a.hostname, user=a.user, entrypoint=a.entrypoint, tty=a.tty,
                             stdin_open=a.interactive, auto_remove=auto_remove, resources=_resources(a),
                             network=a.network, ports=a.publish, publish_all=a.publish_all, mounts=mounts,
                             security=security, labels=labels)


def _resources(a):
    try:
        from . import limits
    except ImportError:
        return None
    return limits.resources(memory=a.memory, memory_swap=a.memory_swap, cpus=a.cpus, cpu_shares=a.cpu_shares,
                            cpuset_cpus=a.cpuset_cpus, pids_limit=a.pids_limit, privileged=a.privileged)


@verb("run", "Create and start a container", *RUN_ARGS, arg("-d", "--detach", action="store_true"),
      arg("--rm", action="store_true"))
def cmd_run(a):
    try:
        c = _create(a, auto_remove=a.rm)
    except MinidockerError as e:
        if e.exit_code == 1:
            e.exit_code = 125   # docker run reports its own failures as 125
        raise
    try:
        if a.detach:
            c.start().close()
            print(c.id)
            return
        code = _attached(c)
    except MinidockerError:
        if a.rm:
            c.remove(force=True)   # --rm: a container that could not start is not kept either
        raise
    sys.exit(code)


def _attached(c) -> int:
    """Run attached: the monitor writes straight to our terminal; we forward signals and wait."""
    tty = c.record["Config"]["Tty"] and os.isatty(0)
    saved = None
    if tty:
        import termios
        import tty as ttymod
        saved = termios.tcgetattr(0)
        ttymod.setraw(0)
    try:
        channel = c.start(attach=True)
        monitor = c.reload().state.get("MonitorPid")
        if tty:
            signal.signal(signal.SIGWINCH, lambda *_: os.kill(monitor, signal.SIGWINCH))
        else:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                signal.signal(sig, lambda s, _: _proxy(c, s))
        code = channel.wait_exit()
        channel.close()
    finally:
        if saved is not None:
            import termios
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
    if code is None:   # the monitor died without telling: ask the record
        try:
            code = c.reload().state["ExitCode"] if c.status == "exited" else 125
        except MinidockerError:
            code = 125
    return code


def _proxy(c, sig):
    try:
        c.kill(signal.Signals(sig).name)
    except MinidockerError:
        pass


@verb("create", "Create a container without starting it", *RUN_ARGS)
def cmd_create(a):
    print(_create(a).id)


@verb("start", "Start stopped containers", arg("containers", nargs="+"),
      arg("-a", "--attach", action="store_true"), arg("-i", "--interactive", action="store_true"))
def cmd_start(a):
    from . import containers
    store = _store()
    for name in a.containers:
        c = containers.get(store, name)
        if a.attach:
            sys.exit(_attached(c))
        c.start().close()
        print(name)


@verb("ps", "List containers", arg("-a", "--all", action="store_true"), arg("-q", "--quiet", action="store_true"),
      arg("--no-trunc", action="store_true"))
def cmd_ps(a):
    from . import containers, units
    shown = [c for c in containers.all_containers(_store()) if a.all or c.status == "running"]
    if a.quiet:
        for c in shown:
            print(c.id if a.no_trunc else c.short_id)
        return
    rows = []
    for c in shown:
        cmd = " ".join([c.record["Path"]] + c.record["Args"])
        if not a.no_trunc and len(cmd) > 20:
            cmd = cmd[:19] + "…"
        rows.append([c.id if a.no_trunc else c.short_id, c.record["Config"]["Image"], f'"{cmd}"',
                     units.ago(c.record["Created"]), c.status_text(), _ports(c), c.name])
    table(["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], rows)


def _ports(c):
    return ", ".join(c.state.get("Ports") or []) if c.status == "running" else ""


def _each(names, action):
    """Apply `action` to each named container and print its name, as docker stop/kill/rm do."""
    from . import containers
    store = _store()

    def one(name):
        action(containers.get(store, name))
        return [name]
    each(names, one)


@verb("stop", "Stop running containers", arg("containers", nargs="+"), arg("-t", "--time", type=float, default=10))
def cmd_stop(a):
    _each(a.containers, lambda c: c.stop(a.time))


@verb("kill", "Kill running containers", arg("containers", nargs="+"), arg("-s", "--signal", default="KILL"))
def cmd_kill(a):
    _each(a.containers, lambda c: c.kill(a.signal))


@verb("rm", "Remove containers", arg("containers", nargs="+"), arg("-f", "--force", action="store_true"),
      arg("-v", "--volumes", action="store_true", help="also remove its anonymous volumes"))
def cmd_rm(a):
    _each(a.containers, lambda c: c.remove(a.force, a.volumes))


@verb("wait", "Wait for containers to exit, print their exit codes", arg("containers", nargs="+"))
def cmd_wait(a):
    from . import containers
    store = _store()
    for name in a.containers:
        print(containers.get(store, name).wait())


@verb("logs", "Show a container's output", arg("container"), arg("-f", "--follow", action="store_true"),
      arg("--tail", default="all"), arg("-t", "--timestamps", action="store_true"))
def cmd_logs(a):
    from . import containers
    c = containers.get(_store(), a.container)
    if a.tail != "all" and not a.tail.lstrip("-").isdigit():
        raise MinidockerError(f"invalid --tail value {a.tail!r}: a number or 'all'", 125)
    tail = None if a.tail == "all" else int(a.tail)
    offset = _print_log(c, tail, a.timestamps, 0)
    while a.follow:
        running = c.reload().status == "running"
        offset = _print_log(c, None, a.timestamps, offset)
        if not running:
            break
        time.sleep(0.1)


def _print_log(c, tail, timestamps, offset):
    path = c.dir / "log"
    size = path.stat().st_size if path.exists() else 0
    for stream, text in c.log_lines(tail, timestamps, offset=offset):
        out = sys.stdout if stream == "stdout" else sys.stderr
        out.buffer.write(text.encode("utf-8", "surrogateescape"))
        out.flush()
    return size


@verb("exec", "Run a command in a running container", arg("container"), arg("command", nargs="..."),
      arg("-i", "--interactive", action="store_true"), arg("-t", "--tty", action="store_true"),
      arg("-e", "--env", action="append", default=[]), arg("-w", "--workdir"), arg("-u", "--user"),
      arg("-d", "--detach", action="store_true"))
def cmd_exec(a):
    from . import containers, execs
    if not a.command:
        raise MinidockerError("exec needs a command", 125)
    c = containers.get(_store(), a.container)
    sys.exit(execs.run(c, a.command, env=a.env, workdir=a.workdir, user=a.user, tty=a.tty,
                       interactive=a.interactive, detach=a.detach))


@verb("top", "Show the processes of a container", arg("container"))
def cmd_top(a):
    from . import containers, execs
    table(["UID", "PID", "PPID", "CMD"], execs.top(containers.get(_store(), a.container)))
