"""Resource verbs of the command line: stats and update."""
import sys

from .cli import _store, arg, table, verb
from .errors import MinidockerError


def _binary(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}"
        n /= 1024


@verb("stats", "Show containers' resource use", arg("containers", nargs="*"),
      arg("--no-stream", action="store_true"), arg("-a", "--all", action="store_true"))
def cmd_stats(a):
    from . import containers, stats
    store = _store()
    chosen = [containers.get(store, n) for n in a.containers] if a.containers else \
        [c for c in containers.all_containers(store) if a.all or c.status == "running"]
    while True:
        rows = stats.sample(chosen)
        if not a.no_stream:
            print("\033[2J\033[H", end="")   # clear the screen, as docker stats does
        table(["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "PIDS"],
              [[r["container"].short_id, r["container"].name, f"{r['cpu_percent']:.2f}%",
                f"{_binary(r['memory_usage'])} / {_binary(r['memory_limit'])}",
                f"{100 * r['memory_usage'] / r['memory_limit']:.2f}%", r["pids"]] for r in rows])
        sys.stdout.flush()
        if a.no_stream:
            return


@verb("update", "Change the resource limits of containers", arg("containers", nargs="+"),
      arg("-m", "--memory"), arg("--memory-swap"), arg("--cpus"), arg("--cpu-shares"),
      arg("--cpuset-cpus"), arg("--pids-limit"))
def cmd_update(a):
    from . import containers, limits, stats
    given = {k: v for k, v in vars(a).items()
             if k in ("memory", "memory_swap", "cpus", "cpu_shares", "cpuset_cpus", "pids_limit") and v is not None}
    if not given:
        raise MinidockerError("you must provide one or more flags when using this command", 125)
    res = limits.resources(**given)
    if "pids_limit" not in given:
        res.pop("pids")      # resources() fills the default in; update changes only what was asked
    res.pop("devices", None)
    store = _store()
    for name in a.containers:
        stats.update(containers.get(store, name), res)
        print(name)
