"""Verbs of chapters 06 and 08: commit, diff and build."""
import sys

from .cli import _store, arg, verb


@verb("commit", "Create a new image from a container's changes",
      arg("container"), arg("repository", nargs="?", help="REPO[:TAG]"),
      arg("-m", "--message", default=""), arg("-a", "--author", default=""),
      arg("-c", "--change", action="append", default=[], help="a Dockerfile instruction: CMD, ENV, ..."),
      arg("-p", "--pause", default="true", choices=["true", "false"],
          help="freeze the container while committing (default true)"))
def cmd_commit(a):
    from . import commit
    image = commit.commit(_store(), a.container, a.repository, message=a.message, author=a.author,
                          changes=a.change, pause=a.pause == "true")
    print(image.id)


@verb("diff", "Show the files a container added (A), changed (C) or deleted (D)", arg("container"))
def cmd_diff(a):
    from . import commit
    for kind, path in commit.diff(_store(), a.container):
        print(kind, path)


@verb("build", "Build an image from a Dockerfile",
      arg("context", help="the build context directory"),
      arg("-t", "--tag", action="append", default=[]), arg("-f", "--file", help="the Dockerfile"),
      arg("--build-arg", action="append", default=[], help="NAME=VALUE"),
      arg("--no-cache", action="store_true"), arg("-q", "--quiet", action="store_true"),
      arg("--network", default="bridge", help="the RUN steps' network: bridge (default) or none"))
def cmd_build(a):
    from . import build
    from .errors import MinidockerError
    args = {}
    for item in a.build_arg:
        key, eq, value = item.partition("=")
        if not key:
            raise MinidockerError(f"invalid --build-arg {item!r}: NAME=VALUE expected", 125)
        args[key] = value if eq else None
    out = (lambda line: None) if a.quiet else (lambda line: print(line, flush=True))
    image = build.build(_store(), a.context, dockerfile=a.file, tags=a.tag, build_args=args,
                        no_cache=a.no_cache, out=out, network=a.network)
    print(image.id if a.quiet else f"Successfully built {image.short_id}")
    if not a.quiet:
        for t in a.tag:
            print(f"Successfully tagged {t}")
    sys.stdout.flush()
