"""minidocker's OCI runtime: a small runc.

    create(id, bundle) -> pid      namespaces, rootfs, pivot_root; init waits
    start(id)                      the init execs the container's program
    state(id) -> dict              OCI state: created, running or stopped
    kill(id, sig)                  signal the init
    delete(id, force=False)        release everything the container holds
    exec_process(id, process)      another process in the same namespaces + cgroup
"""
from .lifecycle import create, delete, kill, start, state  # noqa: F401
from .nsenter import exec_process  # noqa: F401
