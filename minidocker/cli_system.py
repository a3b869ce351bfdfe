"""Verbs for volumes and the installation: volume create/ls/rm/inspect, system df/prune/reset."""
import json
import sys

from .cli import _store, arg, each, table, verb
from .errors import MinidockerError


@verb("volume", "Manage volumes: create, ls, rm, inspect, prune",
      arg("action", choices=["create", "ls", "rm", "inspect", "prune"]), arg("names", nargs="*"),
      arg("-q", "--quiet", action="store_true"), arg("-f", "--force", action="store_true"),
      arg("-a", "--all", action="store_true", help="prune: named volumes too"),
      arg("--label", action="append", default=[]))
def cmd_volume(a):
    from . import volumes
    store = _store()
    if a.action == "ls":
        vols = volumes.list_volumes(store)
        if a.quiet:
            print("\n".join(v["Name"] for v in vols))
        else:
            table(["DRIVER", "VOLUME NAME"], [[v["Driver"], v["Name"]] for v in vols])
    elif a.action == "create":
        labels = dict(item.partition("=")[::2] for item in a.label)
        print(volumes.create(store, a.names[0] if a.names else None, labels)["Name"])
    elif a.action == "prune":
        gone = volumes.prune(store, all=a.all)
        print("Deleted Volumes:\n" + "".join(n + "\n" for n in gone) if gone else "", end="")
    elif not a.names:
        raise MinidockerError(f"volume {a.action} needs at least one volume name", 125)
    elif a.action == "inspect":
        print(json.dumps([volumes.inspect(store, n) for n in a.names], indent=4))
    else:
        each(a.names, lambda name: volumes.remove(store, name, a.force) or [name])


@verb("system", "Manage minidocker: df, prune, reset, serve",
      arg("action", choices=["df", "prune", "reset", "serve"]),
      arg("-a", "--all", action="store_true", help="prune: every unused image, not only dangling ones"),
      arg("--volumes", action="store_true", help="prune: anonymous volumes too"),
      arg("-f", "--force", action="store_true", help="do not ask"),
      arg("-d", "--detach", action="store_true", help="serve: in the background"),
      arg("--stop", action="store_true", help="serve: stop the helper"))
def cmd_system(a):
    from . import system, units
    store = _store()
    if a.action == "serve":
        return _serve(store, a)
    if a.action == "df":
        system.reconcile(store)
        table(["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"], system.human_df(store))
        return
    if not a.force:
        what = "everything minidocker created" if a.action == "reset" else "stopped containers and unused images"
        if not sys.stdin.isatty() or input(f"This removes {what}. Are you sure? [y/N] ").lower() != "y":
            raise MinidockerError(f"system {a.action}: not confirmed (use -f)", 1)
    if a.action == "prune":
        before = sum(r[3] for r in system.df(store))
        gone = system.prune(store, a.all, a.volumes)
        for kind, ids in gone.items():
            if ids:
                print(f"Deleted {kind}:\n" + "\n".join(ids))
        print(f"Total reclaimed space: {units.human_size(max(0, before - sum(r[3] for r in system.df(store))))}")
    else:
        for line in system.reset(store):
            print("Removed", line)


def _serve(store, a):
    """The resident helper (serve.py): commands typed later start without importing the engine."""
    from . import handover, serve
    if a.stop:
        print("stopped" if serve.stop(store.root) else "no helper was running")
    elif a.detach:
        serve.detach(store.root)
        print(f"serving {handover.socket_path(store.root)}")
    else:
        serve.serve(store.root)
