"""minidocker's OCI runtime: a small runc.

    create(id, bundle) -> pid      namespaces, rootfs, pivot_root; init waits
    start(id)                      the init execs the container's program
    state(id) -> dict              OCI state: created, running or stopped
    kill(id, sig)                  signal the init
    delete(id, force=False)        release everything the container holds
    exec_process(id, process)      another process in the same namespaces + cgroup

The functions are loaded on first use, so that the container's init, which
imports modules of this package, starts without the ones it never needs.
"""
_API = {"create": "lifecycle", "start": "lifecycle", "state": "lifecycle", "kill": "lifecycle",
        "delete": "lifecycle", "exec_process": "nsenter"}


def __getattr__(name):
    if name in _API:
        import importlib
        return getattr(importlib.import_module(f".{_API[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_API))
