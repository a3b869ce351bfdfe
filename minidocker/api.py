"""The Python API, shaped after the command line, for notebooks and scripts.

    from minidocker import api as docker
    docker.bootstrap()                          # minidocker bootstrap
    c = docker.run("busybox", ["echo", "hi"])   # minidocker run busybox echo hi
    c.logs()                                    # 'hi\\n'
    c.remove()                                  # minidocker rm
    docker.ps(all=True), docker.images()        # minidocker ps -a, minidocker images

Safe to call from a Jupyter kernel (which is multi-threaded): nothing here
unshares, forks or mounts in the calling process; every container gets its own
monitor process, as every docker container gets a shim.
"""
from . import containers as _containers
from . import images as _images
from .store import Store

Container = _containers.Container
Image = _images.Image


def store(root=None) -> Store:
    """The image and container store ($MINIDOCKER_ROOT or /var/lib/minidocker)."""
    return Store(root)


def bootstrap(tag="busybox:latest") -> Image:
    """minidocker bootstrap: busybox:latest from the host's static busybox."""
    from .bootstrap import bootstrap as build
    return build(store(), tag)


def images() -> list:
    """minidocker images."""
    return _images.list_images(store())


def image(name) -> Image:
    return _images.get(store(), name)


def ps(all=False) -> list:
    """minidocker ps (all=True: ps -a)."""
    return [c for c in _containers.all_containers(store()) if all or c.status == "running"]


def container(name) -> Container:
    return _containers.get(store(), name)


def create(image, command=None, *, name=None, environment=(), workdir=None, hostname=None, user=None,
           entrypoint=None, tty=False, stdin_open=False, remove=False, resources=None, network="bridge",
           ports=(), publish_all=False, volumes=(), security=None, labels=None) -> Container:
    """minidocker create: a container, not started.

    volumes: docker -v strings ("/host:/ctr:ro", "name:/data"); security: {"cap_add": [...],
    "cap_drop": [...], "privileged": bool, "security_opt": [...], "read_only": bool}.
    """
    from . import volumes as vols
    if isinstance(command, str):
        command = ["sh", "-c", command]
    if isinstance(environment, dict):
        environment = [f"{k}={v}" for k, v in environment.items()]
    return _containers.create(store(), image, command, name=name, env=list(environment), workdir=workdir,
                              hostname=hostname, user=user, entrypoint=entrypoint, tty=tty,
                              stdin_open=stdin_open, auto_remove=remove, resources=resources,
                              network=network, ports=ports, publish_all=publish_all,
                              mounts=vols.parse(volumes, store=store()), security=security, labels=labels)


def run(image, command=None, *, detach=False, name=None, **options) -> Container:
    """minidocker run: start a container; unless detach=True, wait until it exits.

    A string command runs through `sh -c`. Running a cell again never fails
    because of the previous run: a container with the same name is replaced
    once it has stopped.
    """
    if name is not None:
        try:
            old = container(name)
        except Exception:
            old = None
        if old is not None and old.status != "running":
            old.remove()
    c = create(image, command, name=name, **options)
    channel = c.start()
    if detach:
        channel.close()
        return c.reload()
    code = channel.wait_exit()
    channel.close()
    if options.get("remove"):   # the monitor removed it: keep what we know
        c.state.update(Status="exited", Running=False, ExitCode=code)
        return c
    return c.reload()


def commit(container, repo=None, **options) -> Image:
    """minidocker commit: the container's writable layer becomes a new image (options: message, author, changes)."""
    from . import commit as committer
    return committer.commit(store(), getattr(container, "id", container), repo, **options)


def diff(container) -> list:
    """minidocker diff: [(kind, path)], kind A (added), C (changed) or D (deleted)."""
    from . import commit as committer
    return committer.diff(store(), getattr(container, "id", container))


def build(context, tags=(), **options) -> Image:
    """minidocker build: a Dockerfile in `context` becomes an image (options: dockerfile, build_args, no_cache)."""
    from . import build as builder
    return builder.build(store(), context, tags=list(tags) if not isinstance(tags, str) else [tags], **options)


def pull(name, platform=None) -> Image:
    """minidocker pull."""
    from . import pull as puller
    return puller.pull(store(), name, platform=platform)

