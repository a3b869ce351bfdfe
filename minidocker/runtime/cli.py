"""minidocker-runtime: the runtime's command line, shaped like runc's.

    minidocker-runtime [--root DIR] create [--bundle DIR] [--pid-file F] [--console-socket S] ID
    minidocker-runtime start ID | state ID | kill ID [SIGNAL] | delete [--force] ID
    minidocker-runtime run [--bundle DIR] ID      create + start + wait; exits with its status
    minidocker-runtime exec [-d] ID CMD...

Errors are one line on stderr and exit status 1, as runc does.
"""
import argparse
import json
import os
import signal
import sys

from ..errors import MinidockerError
from . import linux, lifecycle, nsenter


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="minidocker-runtime")
    p.add_argument("--root", default=None, help="state directory (default /run/minidocker-runtime)")
    sub = p.add_subparsers(dest="verb", required=True)
    for verb in ("create", "run"):
        c = sub.add_parser(verb)
        c.add_argument("--bundle", "-b", default=".")
        c.add_argument("--pid-file")
        c.add_argument("--console-socket")
        c.add_argument("id")
    for verb in ("start", "state"):
        sub.add_parser(verb).add_argument("id")
    k = sub.add_parser("kill")
    k.add_argument("id")
    k.add_argument("signal", nargs="?", default="TERM")
    d = sub.add_parser("delete")
    d.add_argument("--force", "-f", action="store_true")
    d.add_argument("id")
    e = sub.add_parser("exec")
    e.add_argument("--detach", "-d", action="store_true")
    e.add_argument("--cwd")
    e.add_argument("--env", "-e", action="append", default=[])
    e.add_argument("id")
    e.add_argument("command", nargs=argparse.REMAINDER)
    return p


def run(id, bundle, root=None, pid_file=None, console_socket=None) -> int:
    """create + start + wait for the init; delete afterwards; return its exit status."""
    linux.prctl(linux.PR_SET_CHILD_SUBREAPER, 1)  # the init becomes our child: we can wait
    pid = lifecycle.create(id, bundle, root=root, pid_file=pid_file, console_socket=console_socket,
                           fork=True)
    forward = lambda signum, _frame: lifecycle.kill(id, signum, root=root)  # noqa: E731
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, forward)
    try:
        lifecycle.start(id, root=root)
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
    finally:
        lifecycle.delete(id, force=True, root=root)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    root = args.root
    try:
        if args.verb == "create":
            lifecycle.create(args.id, args.bundle, root=root, pid_file=args.pid_file,
                             console_socket=args.console_socket, fork=True)
        elif args.verb == "run":
            return run(args.id, args.bundle, root, args.pid_file, args.console_socket)
        elif args.verb == "start":
            lifecycle.start(args.id, root=root)
        elif args.verb == "state":
            print(json.dumps(lifecycle.state(args.id, root=root), indent=2))
        elif args.verb == "kill":
            lifecycle.kill(args.id, args.signal, root=root)
        elif args.verb == "delete":
            lifecycle.delete(args.id, force=args.force, root=root)
        elif args.verb == "exec":
            if not args.command:
                raise MinidockerError("exec needs a command")
            proc = {"args": args.command}
            if args.cwd:
                proc["cwd"] = args.cwd
            if args.env:
                base = json.loads((lifecycle.st.container_dir(args.id, root) / "config.json")
                                  .read_text())["process"].get("env") or []
                proc["env"] = base + args.env
            if args.detach:
                print(nsenter.exec_process(args.id, proc, root=root, detach=True))
                return 0
            return nsenter.exec_process(args.id, proc, root=root)
    except MinidockerError as e:
        print(f"minidocker-runtime: {e}", file=sys.stderr)
        return 1
    return 0
