"""Verbs that move images in and out: pull, push, login, logout, save, load."""
import sys

from .cli import _store, arg, verb
from .errors import MinidockerError


@verb("pull", "Download an image from a registry",
      arg("name"), arg("--platform", help="os/arch[/variant], default: this machine's"),
      arg("-q", "--quiet", action="store_true", help="no progress bars"))
def cmd_pull(a):
    from . import oci, pull, reference
    store = _store()
    ref = reference.parse(a.name)
    if not ref.digest and ":" not in a.name.rsplit("/", 1)[-1]:
        print("Using default tag: latest")
    if not a.quiet:
        print(f"{ref.tag or ref.digest}: Pulling from {ref.repository}")
    platform = oci.parse_platform(a.platform) if a.platform else None
    done = pull.fetch(store, a.name, platform, progress=not a.quiet and sys.stderr.isatty())
    from . import images
    existed = not ref.digest and any(str(ref) in i.tags and i.manifest_desc["digest"] == done["manifest_desc"]["digest"]
                                     for i in images.list_images(store))
    pull.finish(store, done)
    if not a.quiet:
        for layer in done["manifest"].get("layers") or []:
            state = "Already exists" if layer["digest"] in done["present"] else "Pull complete"
            print(f"{layer['digest'][7:19]}: {state}")
        print(f"Digest: {done['chain'][0]['digest']}")
        status = "Image is up to date for" if existed else "Downloaded newer image for"
        print(f"Status: {status} {ref.familiar}")
    print(str(ref))


@verb("push", "Upload an image to a registry", arg("name"),
      arg("-q", "--quiet", action="store_true", help="no progress bars"))
def cmd_push(a):
    from . import images, push, reference
    from .registry import Client
    store = _store()
    ref = reference.parse(a.name)
    image = images.get(store, a.name)
    if str(ref) not in image.tags:
        raise MinidockerError(f"tag does not exist: {ref.familiar}")
    client = Client(ref.registry, ref.repository, root=store.root)
    if not a.quiet:
        print(f"The push refers to repository [{ref.name}]")
    mount_from = [r.repository for r in map(reference.parse, image.tags)
                  if r.registry == ref.registry and r.repository != ref.repository]
    for desc in image.layers:   # one line per layer, as docker prints them
        result = push.upload(client, store, desc, mount_from)
        if not a.quiet:
            label = {"exists": "Layer already exists", "mounted": f"Mounted from {mount_from[0] if mount_from else ''}",
                     "uploaded": "Pushed"}[result]
            print(f"{desc['digest'][7:19]}: {label}")
    desc = push.push(store, a.name, progress=False, client=client)
    print(f"{ref.tag}: digest: {desc['digest']} size: {desc['size']}")


@verb("login", "Log in to a registry (credentials kept in <store root>/auth.json, mode 0600)",
      arg("server", nargs="?", default="docker.io"), arg("-u", "--username"),
      arg("-p", "--password", help="insecure: use --password-stdin"),
      arg("--password-stdin", action="store_true"))
def cmd_login(a):
    from . import auth
    from .registry import Client
    from .store import default_root
    server = _server(a.server)
    user = a.username or input("Username: ").strip()
    if a.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif a.password is not None:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.", file=sys.stderr)
        password = a.password
    else:
        import getpass
        password = getpass.getpass("Password: ")
    if not user or not password:
        raise MinidockerError("login needs a username and a password")
    Client(server, "", credentials=(user, password)).ping()
    auth.store_credentials(server, user, password, default_root())
    print("Login Succeeded")


@verb("logout", "Forget a registry's credentials", arg("server", nargs="?", default="docker.io"))
def cmd_logout(a):
    from . import auth
    from .store import default_root
    server = _server(a.server)
    if auth.remove_credentials(server, default_root()):
        print(f"Removing login credentials for {server}")
    else:
        print(f"Not logged in to {server}")


def _server(text: str) -> str:
    server = text.split("://", 1)[-1].rstrip("/")
    return "docker.io" if server in ("index.docker.io", "registry-1.docker.io", "docker.io") else server


@verb("save", "Save images to a tar archive (stdout by default)",
      arg("images", nargs="+"), arg("-o", "--output"))
def cmd_save(a):
    from . import archive
    if a.output:
        archive.save(_store(), a.images, a.output)
        return
    if sys.stdout.isatty():
        raise MinidockerError("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    sys.stdout.flush()
    archive.save(_store(), a.images, sys.stdout.buffer)


@verb("load", "Load images from a tar archive (stdin by default)",
      arg("-i", "--input"), arg("-q", "--quiet", action="store_true"))
def cmd_load(a):
    from . import archive
    store = _store()
    if a.input:
        loaded = archive.load(store, a.input)
    else:
        if sys.stdin.isatty():
            raise MinidockerError("requested load from stdin, but stdin is empty")
        import tempfile
        # tar members are read in any order: spool the stream to a file we can seek
        with tempfile.TemporaryFile(dir=store.root / "ingest") as spool:
            while chunk := sys.stdin.buffer.read(1 << 20):
                spool.write(chunk)
            spool.seek(0)
            loaded = archive.load(store, spool)
    from . import reference
    for image in loaded:
        for t in image.tags or [None]:
            print(f"Loaded image: {reference.parse(t).familiar}" if t else f"Loaded image ID: {image.id}")
