"""Network verbs of the command line: network create/ls/rm/inspect/connect/disconnect."""
import json

from .cli import _store, arg, table, verb
from .errors import MinidockerError


@verb("network create", "Create a network", arg("name"), arg("--subnet"), arg("--gateway"))
def cmd_network_create(a):
    from . import network
    print(network.create_network(a.name, a.subnet, a.gateway, root=_store().root)["Id"])


@verb("network ls", "List networks", arg("-q", "--quiet", action="store_true"))
def cmd_network_ls(a):
    from . import network
    rows = [[n["Id"][:12], n["Name"], n["Driver"], n["Scope"]] for n in network.list_networks(root=_store().root)]
    if a.quiet:
        print("\n".join(r[0] for r in rows))
    else:
        table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"], rows)


@verb("network rm", "Remove networks", arg("names", nargs="+"))
def cmd_network_rm(a):
    from . import network
    for name in a.names:
        network.remove_network(name, root=_store().root)
        print(name)


@verb("network inspect", "Show networks as JSON", arg("names", nargs="+"))
def cmd_network_inspect(a):
    from . import network
    print(json.dumps([network.inspect_network(n, root=_store().root) for n in a.names], indent=4))


@verb("network connect", "Connect a running container to a network", arg("network"), arg("container"))
def cmd_network_connect(a):
    _connect(a, True)


@verb("network disconnect", "Disconnect a container from a network", arg("network"), arg("container"))
def cmd_network_disconnect(a):
    _connect(a, False)


def _connect(a, connect):
    from . import containers, endpoints
    from .files import read_json, write_json
    store = _store()
    c = containers.get(store, a.container)
    if c.status != "running":
        raise MinidockerError(f"container {c.name} is not running", 1)
    with c.lock:
        state = read_json(c.dir / "state.json")
        attached = [n for n in state.get("AttachedNetworks") or [] if n != a.network]
        if connect:
            state["AttachedNetworks"] = attached + [a.network]   # first, so that a stop undoes it
            write_json(c.dir / "state.json", state)
            state["NetworkSettings"] = endpoints.connect(
                c.id, f"/proc/{c.state['Pid']}/ns/net", a.network, name=c.name,
                hostname=c.record["Config"]["Hostname"], hosts_path=str(c.dir / "hosts"), root=store.root)
        else:
            endpoints.disconnect(c.id, a.network, root=store.root)
            state["AttachedNetworks"] = attached
            state["NetworkSettings"] = endpoints.settings(c.id, root=store.root)
        write_json(c.dir / "state.json", state)
