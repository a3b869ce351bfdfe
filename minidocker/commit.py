"""commit and diff: a container's writable layer becomes an image layer.

    container.upper/  --write_layer-->  tar (sorted, whiteouts as .wh.)  --> blob
    image config + that diff_id + one history entry                       --> config blob
    image layers + the new layer + the config                             --> manifest, tag

The layer is stored uncompressed, as docker keeps layers on its own disk (they
are compressed when pushed): the commit then costs about one `tar -c` of the
upper directory. A running container is frozen (its cgroup freezer) while its
upper directory is read, as `docker commit` pauses by default, so the layer is
one moment's state and not a mix of before and after.
"""
import contextlib
import hashlib
import os
import queue
import stat
import sys
import threading

from . import containers, dockerfile, images, oci, reference
from .changes import changes, is_opaque, is_whiteout, write_layer
from .errors import MinidockerError, NotFound
from .files import crash_point

# The tar of an empty directory: two zero blocks. A commit that changes no file adds no layer.
EMPTY_LAYER = "sha256:" + hashlib.sha256(bytes(1024)).hexdigest()


def commit(store, name: str, repo: str = None, *, message: str = "", author: str = "", changes=(),
           pause: bool = True, config: dict = None, created_by: str = None) -> images.Image:
    """docker commit: the container's changes as a new image, tagged `repo` if given.

    `config` replaces the container's settings as the image's runtime config
    (build passes the image's own, so a RUN step does not become its CMD).
    """
    check_name(repo)
    try:
        c = containers.get(store, name)
    except NotFound:
        raise NotFound(f"No such container: {name}") from None
    base = images.get(store, c.record["Image"])
    settings = dict(config if config is not None else container_config(c, base))
    for text in changes:
        settings = dockerfile.change(settings, text)
    if created_by is None:
        created_by = " ".join((c.record["Config"].get("Entrypoint") or []) + c.record["Config"]["Cmd"])
    cfg, layers, written = snapshot(store, c, base, settings, created_by, message=message, author=author,
                                    pause=pause, progress=show_progress())
    try:
        return name_image(store, cfg, layers, repo)
    except BaseException:
        images.discard(store, written)
        raise


def snapshot(store, c, base, settings: dict, created_by: str, *, message="", author="", pause=True,
             progress=False) -> tuple:
    """(config, layers, blobs written) of the image a commit makes; nothing is named yet."""
    with frozen(c, pause):
        desc, diff_id = layer_blob(store, *upper_view(c, base), progress=progress)
    crash_point("commit-after-layer")   # a layer blob nobody names yet: collected, never half an image
    empty = diff_id == EMPTY_LAYER
    if empty:
        images.discard(store, [desc["digest"]])   # docker: no change, no layer, only a history entry
    cfg = images.new_config(base.config if base else {}, diff_ids=[] if empty else [diff_id],
                            created_by=created_by, comment=message, author=author, empty_layer=empty)
    cfg["config"] = {k: v for k, v in settings.items() if v not in (None, [], {}, "")}
    layers = (base.layers if base else []) + ([] if empty else [desc])
    return cfg, layers, [] if empty else [desc["digest"]]


def name_image(store, cfg: dict, layers: list, repo: str = None) -> images.Image:
    """Store config and manifest and name the image, leaving the new layer packed.

    images.add would unpack the layer now, to check it before naming it; ours
    was just written from our own upper directory, so its unpacked copy is made
    the first time a container uses it (store.unpack is lazy), and commit costs
    one pass over the files, like `tar -c`.
    """
    config_desc = store.put(oci.dumps(cfg), oci.CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": oci.MANIFEST, "config": config_desc, "layers": layers}
    desc = store.put(oci.dumps(manifest), oci.MANIFEST)
    with store.lock:
        if not all(store.has_blob(d["digest"], d["size"]) for d in [config_desc, desc] + layers):
            raise MinidockerError("a blob of the new image vanished while it was written (a concurrent rmi?)")
        if repo:
            store.set_tag(str(reference.parse(repo)), desc)
        else:
            store.add_untagged(desc)
    return images.load(store, desc, [str(reference.parse(repo))] if repo else [])


def container_config(c, image) -> dict:
    """What docker commit keeps of a container's settings: the image's, as the container ran it."""
    mine, theirs = c.record["Config"], image.config.get("config") or {}
    keep = dict(theirs)
    for key in ("User", "Env", "Cmd", "Entrypoint", "WorkingDir", "ExposedPorts", "Labels", "StopSignal"):
        if key in mine:
            keep[key] = mine[key]
    return keep


@contextlib.contextmanager
def frozen(c, pause: bool = True):
    """Freeze a running container's processes for the duration (docker commit --pause)."""
    c.reload()
    if not pause or c.status != "running":
        yield
        return
    from .runtime import cgroups
    group = cgroups.open(f"/minidocker/{c.id}")
    group.freeze()
    try:
        yield
    finally:
        group.thaw()


def layer_blob(store, upper, skip=(), progress=False) -> tuple:
    """Write an upper directory as an (uncompressed) layer blob; (descriptor, diff_id)."""
    with store.writer() as w:
        spool = _Spool(w, _bar("commit") if progress else None)
        try:
            write_layer(upper, spool, skip, hashed=False)   # the blob writer hashes, on the spool's thread
        finally:
            spool.close()
        size, digest = w.written, w.commit()
    return {"mediaType": oci.LAYER, "digest": digest, "size": size}, digest   # uncompressed: digest = diff_id


def _bar(what):
    """A byte counter for a long write: in the terminal, or a widget in a notebook (tqdm.auto)."""
    from tqdm.auto import tqdm
    return tqdm(unit="B", unit_scale=True, desc=what, mininterval=0.2)


def show_progress() -> bool:
    """Progress where someone watches: a terminal, or a notebook's kernel."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


class _Spool:
    """write_layer's many small writes handed to the blob writer in 1 MB pieces, on a thread of its own.

    The blob writer hashes and writes what it gets; on a second thread that
    overlaps with write_layer reading the files (hashlib lets go of the GIL
    for big pieces), so a commit costs about one pass, like tar -c.
    """

    PIECE = 1 << 20

    def __init__(self, sink, bar=None):
        self.sink, self.buf, self.error, self.bar = sink, bytearray(), None, bar
        self.queue = queue.Queue(maxsize=8)
        self.thread = threading.Thread(target=self._drain, name="commit-spool", daemon=True)
        self.thread.start()

    def write(self, data) -> None:
        self.buf += data
        if len(self.buf) >= self.PIECE:
            self.queue.put(bytes(self.buf))
            if self.bar is not None:
                self.bar.update(len(self.buf))
            self.buf.clear()

    def _drain(self):
        while (piece := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.sink.write(piece)
                except BaseException as e:   # handed back to the caller by close()
                    self.error = e

    def close(self) -> None:
        if self.buf:
            self.queue.put(bytes(self.buf))
        self.queue.put(None)
        self.thread.join()
        if self.bar is not None:
            self.bar.update(len(self.buf))
            self.bar.close()
        if self.error is not None:
            raise self.error


def diff(store, name: str) -> list:
    """docker diff: [(kind, path)] with kind A, C or D."""
    c = containers.get(store, name)
    base = images.get(store, c.record["Image"])
    upper, skip = upper_view(c, base)
    return changes(upper, base.lower_dirs(), skip)


# -- what the engine put there, not the user -----------------------------------------

def engine_paths(c, base) -> list:
    """Paths in the upper directory that only exist because the runtime mounted something there.

    runc creates a missing mount point (/proc, /etc/hosts...) in the rootfs, and
    overlay records it in upper, with a copy of the directory that holds it.
    Docker keeps these in an "init" layer below the container's, so they never
    reach a commit or a diff. We leave out the empty files and directories that
    the image does not have, and directories copied up only to hold them.
    """
    try:
        from .files import read_json
        spec = read_json(c.dir / "config.json")
    except FileNotFoundError:
        return []
    lowers = [str(d) for d in base.lower_dirs()]
    found = set()
    for m in spec.get("mounts") or []:
        path = os.path.normpath("/" + m["destination"]).lstrip("/")
        while path:   # the mount point, then the directories above it
            here = c.dir / "upper" / path
            try:
                st = os.lstat(here)
            except FileNotFoundError:
                break
            below = _in_image(lowers, path)
            if stat.S_ISDIR(st.st_mode):
                mine = {os.path.basename(p) for p in found if os.path.dirname(p) == path}
                engine_only = set(os.listdir(here)) <= mine and not is_opaque(here) and (
                    below is None or (st.st_mode, st.st_uid, st.st_gid) == (below.st_mode, below.st_uid, below.st_gid))
            else:
                engine_only = below is None and stat.S_ISREG(st.st_mode) and st.st_size == 0
            if not engine_only:
                break
            found.add(path)
            path = os.path.dirname(path)
    return sorted(found)


def _in_image(lowers, path):
    """The lstat of `path` in the top-most layer that has it, None if none has it (or one deleted it)."""
    for lower in lowers:
        try:
            st = os.lstat(os.path.join(lower, path))
        except (FileNotFoundError, NotADirectoryError):
            continue
        return None if is_whiteout(st) else st
    return None


def upper_view(c, base) -> tuple:
    """(the upper directory, the engine's paths in it that a commit or diff leaves out)."""
    return c.dir / "upper", engine_paths(c, base)


def check_name(repo):
    """A clear error for a bad REPO[:TAG] before any work is done."""
    if repo:
        from . import reference
        try:
            reference.parse(repo)
        except MinidockerError as e:
            raise MinidockerError(f"invalid reference format: {e}", 125) from None
