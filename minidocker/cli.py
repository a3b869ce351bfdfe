"""The `minidocker` command: docker's verbs over the Python API.

Each verb is a small function registered with @verb; it parses nothing itself
(argparse does) and prints what docker prints. Modules are imported inside the
verbs so that `minidocker run` does not pay for pyroute2 or requests.
"""
import os
import sys

from .errors import MinidockerError

VERBS = {}


def verb(name, help, *arguments):
    """Register a verb with its argparse arguments: (flags..., dict of options)."""
    def register(func):
        VERBS[name] = (func, help, arguments)
        return func
    return register


def arg(*flags, **options):
    return flags, options


def table(headers, rows, out=None):
    """Columns padded like docker's tabwriter (three spaces between columns)."""
    out = out or sys.stdout
    rows = [[str(c) for c in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    for r in [headers] + rows:
        line = "   ".join(c.ljust(w) for c, w in zip(r, widths))
        print(line.rstrip(), file=out)


def each(names, action) -> None:
    """Apply `action(name)` to every name, docker style: print what it returns (lines),
    report each failure on stderr and go on; exit non-zero at the end if any failed."""
    failed = None
    for name in names:
        try:
            for line in action(name):
                print(line)
        except MinidockerError as e:
            print(f"Error response from daemon: {e}", file=sys.stderr)
            failed = e
    if failed:
        sys.exit(failed.exit_code)


def _store():
    from .store import Store
    return Store()


# -- images ------------------------------------------------------------------

@verb("images", "List images",
      arg("-q", "--quiet", action="store_true", help="only IDs"),
      arg("-a", "--all", action="store_true", help="accepted for docker compatibility"))
def cmd_images(a):
    from . import images, reference, units
    rows = []
    for image in sorted(images.list_images(_store()), key=lambda i: i.config.get("created", ""), reverse=True):
        created = units.ago(image.config.get("created", ""))
        size = units.human_size(image.size)
        for t in image.tags or [None]:
            repo, tag = (reference.parse(t).familiar_name, reference.parse(t).tag) if t else ("<none>", "<none>")
            rows.append([repo, tag, image.short_id, created, size])
    if a.quiet:
        for r in dict.fromkeys(r[2] for r in rows):
            print(r)
    else:
        table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], rows)


@verb("import", "Import a root filesystem tarball as an image",
      arg("file"), arg("reference", nargs="?"), arg("-m", "--message", default=""))
def cmd_import(a):
    from .bootstrap import import_tar
    print(import_tar(_store(), a.file, a.reference, a.message).id)


@verb("bootstrap", "Build busybox:latest from the host's static busybox (no internet needed)",
      arg("reference", nargs="?", default="busybox:latest"))
def cmd_bootstrap(a):
    from .bootstrap import bootstrap
    image = bootstrap(_store(), a.reference)
    print(image.id)


@verb("tag", "Give an image another name", arg("source"), arg("target"))
def cmd_tag(a):
    from . import images
    images.tag(_store(), a.source, a.target)


@verb("rmi", "Remove images", arg("images", nargs="+"), arg("-f", "--force", action="store_true"))
def cmd_rmi(a):
    from . import images
    store = _store()
    each(a.images, lambda name: images.remove(store, name, a.force))


@verb("history", "Show the history of an image", arg("image"),
      arg("--no-trunc", action="store_true"), arg("-q", "--quiet", action="store_true"))
def cmd_history(a):
    from . import images, units
    rows = images.history(images.get(_store(), a.image))
    if a.quiet:
        for r in rows:
            print(r[0])
        return
    width = None if a.no_trunc else 45
    table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
          [[r[0], units.ago(r[1]), _trunc(r[2], width), units.human_size(r[3]), r[4]] for r in rows])


def _trunc(text, width):
    return text if width is None or len(text) <= width else text[:width - 3] + "..."


@verb("inspect", "Show low-level information as JSON", arg("names", nargs="+"),
      arg("--type", choices=["image", "container"]), arg("-f", "--format", help="accepted; prints JSON"))
def cmd_inspect(a):
    store, out, failed = _store(), [], None
    for name in a.names:
        try:
            out.append(_inspect_one(store, name, a.type))
        except MinidockerError as e:
            failed = e
            print(f"Error: {e}", file=sys.stderr)
    import json
    print(json.dumps(out, indent=4))
    if failed:
        sys.exit(1)


def _inspect_one(store, name, kind):
    from . import images
    if kind in (None, "container"):
        try:
            from . import containers
            return containers.get(store, name).inspect()
        except ImportError:
            pass
        except MinidockerError:
            if kind == "container":
                raise
    return images.inspect(images.get(store, name))


# -- the command line --------------------------------------------------------

def parser(only=None):
    """The command line's parser; with `only` (a verb or a group), just that part of it,
    since building all forty verbs' parsers costs every command ~10 ms."""
    import argparse   # here: a command handed to the resident helper never needs it itself

    class _Parser(argparse.ArgumentParser):
        def error(self, message):
            # docker exits 125 when the command line itself is wrong
            print(f"minidocker: {message}\nSee 'minidocker --help'.", file=sys.stderr)
            sys.exit(125)

    p = _Parser(prog="minidocker", description="A small, real Docker, in Python.")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", parser_class=_Parser)
    groups = {}
    for name, (func, help, arguments) in VERBS.items():
        if only and name.split(" ", 1)[0] != only:
            continue
        where = sub
        if " " in name:   # "network create": a verb of the group "network"
            group, name = name.split(" ", 1)
            if group not in groups:
                gp = sub.add_parser(group, help=f"Manage {group}s", add_help=False)
                gp.add_argument("--help", action="help", help="show this help")
                groups[group] = gp.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
            where = groups[group]
        # -h is --hostname for run, as in docker, so help is only --help
        sp = where.add_parser(name, help=help, description=help, add_help=False)
        sp.add_argument("--help", action="help", help="show this help")
        for flags, options in arguments:
            sp.add_argument(*flags, **options)
        sp.set_defaults(func=func)
    return p


_whole = None   # the whole parser, built once by the resident helper for all its workers (warm())


def warm() -> None:
    global _whole
    _load_verbs()
    _whole = parser()


def main(argv=None):
    if argv is None:   # typed on the command line: the resident helper may run it for us
        from . import handover
        code = handover.forward(sys.argv[1:])
        if code is not None:
            return code
        argv = sys.argv[1:]
    _load_verbs()
    word = argv[0] if argv and not argv[0].startswith("-") else None
    known = word and any(name.split(" ", 1)[0] == word for name in VERBS)
    p = _whole or parser(word if known else None)
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help()
        return 0
    try:
        args.func(args)
    except MinidockerError as e:
        print(f"minidocker: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


def command() -> None:
    """The `minidocker` program: main(), then an exit without the interpreter's teardown
    (~6 ms with the engine loaded) when nothing needs it: no exit handlers, one thread."""
    try:
        code = main()
    except SystemExit as e:
        code = e.code
    if not isinstance(code, (int, type(None))):
        sys.exit(code)   # a message: Python prints it and exits 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except OSError:
        sys.exit(code)   # let Python report it as it always does
    import atexit
    threading = sys.modules.get("threading")
    if getattr(atexit, "_ncallbacks", lambda: 1)() or (threading and threading.active_count() > 1):
        sys.exit(code)
    os._exit(code or 0)


def _load_verbs():
    """Verbs of later chapters live in their own modules (cli_*.py) and register themselves."""
    import importlib
    for name in sorted(os.listdir(os.path.dirname(__file__))):   # pkgutil costs more than the listing
        if name.startswith("cli_") and name.endswith(".py"):
            importlib.import_module(f"minidocker.{name[:-3]}")


if __name__ == "__main__":
    sys.exit(main())
