"""build: a Dockerfile becomes a chain of images, one per instruction.

    FROM busybox            the chain starts at an image (or at nothing: scratch)
    RUN make                run a container from the current image, wait, commit its upper dir, remove it
    COPY app /app           apply a tar of the context's files onto the image: one more layer
    ENV, CMD, LABEL...      only the config changes: a history entry with empty_layer, no layer

Every step's result is cached under a key made of (parent image, instruction,
what it reads): the build-arg values a RUN sees, the content of the files a
COPY copies. A second build finds every key and only reads small files. The
steps' images are kept as blobs outside the index, so they do not show in
`images`; only the last one is named. A failed step leaves no container, no
mount and no new image behind.
"""
import contextlib
import os
import posixpath
import secrets
import tempfile

# Only what a fully cached build needs is imported here: the modules that make a
# step (commit, containers, layers, overlay: tarfile, zstandard, ctypes...) cost
# more than the whole cached build, so the functions that run on a miss import them.
from . import buildcache, buildcontext, dockerfile, images, oci, reference
from .errors import MinidockerError, NotFound
from .files import remove_tree, crash_point


class Stage:
    def __init__(self, image, name=None):
        self.image = image   # images.Image, or None while the stage is still scratch
        self.name = name
        self.args = {}   # ARGs declared in this stage, with their values
        self.cmd_set = False

    @property
    def config(self) -> dict:
        return self.image.config if self.image else {"rootfs": {"type": "layers", "diff_ids": []}}

    @property
    def settings(self) -> dict:
        return dict(self.config.get("config") or {})

    def env(self) -> dict:
        """What $VAR means here: build args, overridden by the image's ENV."""
        return {**{k: v for k, v in self.args.items() if v is not None}, **dockerfile.env_dict(self.settings)}


def build(store, context, dockerfile=None, tags=(), build_args=None, no_cache=False, out=print,
          network="bridge") -> images.Image:
    """docker build CONTEXT [-f Dockerfile] [-t tag]...: the final image, named by `tags`.

    `network` is the RUN containers' network (docker build --network): bridge, or none.
    """
    tags = [tags] if isinstance(tags, str) else list(tags)
    context = os.path.abspath(context)
    if not os.path.isdir(context):
        raise MinidockerError(f"unable to prepare context: path {context!r} not found", 1)
    path = dockerfile or os.path.join(context, "Dockerfile")
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise MinidockerError(f"cannot read the Dockerfile {path}: {e.strerror}", 1) from None
    for t in tags:
        try:
            reference.parse(t)
        except MinidockerError as e:
            raise MinidockerError(f"invalid tag {t!r}: {e}", 125) from None
    steps = _dockerfile.parse(text)
    builder = Builder(store, context, dict(build_args or {}), no_cache, out, network)
    for number, inst in enumerate(steps, 1):
        out(f"Step {number}/{len(steps)} : {inst}")
        builder.step(inst)
        if builder.stage and builder.stage.image:
            out(f" ---> {builder.stage.image.short_id}")
    final = builder.stage.image if builder.stage else None
    if final is None:
        raise MinidockerError("the Dockerfile produced no image (FROM scratch with nothing on it)", 1)
    crash_point("build-before-tag")   # every step's image exists, the build's name does not yet
    if tags and _names(store, final) >= {str(reference.parse(t)) for t in tags}:
        return images.get(store, tags[-1])   # a rebuild that changes nothing writes nothing
    image = images.register(store, final.manifest_desc, tags[0] if tags else None)
    for t in tags[1:]:
        images.tag(store, image.id, t)
    return images.get(store, tags[-1] if tags else image.id)   # by ID, get() would import platform too


def _names(store, image) -> set:
    return {(m.get("annotations") or {}).get(oci.REF_NAME) for m in store.index()["manifests"]
            if m["digest"] == image.manifest_desc["digest"]}


_dockerfile = dockerfile   # `build(dockerfile=...)` shadows the module's name inside build()


class Builder:
    """The state of one build: stages done so far and the one being built."""

    def __init__(self, store, context, build_args, no_cache, out, network="bridge"):
        self.store, self.context, self.build_args, self.network = store, context, build_args, network
        self.no_cache, self.out = no_cache, out
        self.ignore = buildcontext.Ignore(context)
        self.meta, self.stages, self.stage = {}, [], None

    def step(self, inst):
        if inst.cmd == "FROM":
            return self.start(inst)
        if inst.cmd == "ARG":
            return self.arg(inst)
        if inst.cmd == "MAINTAINER":
            inst = _dockerfile.Instruction("LABEL", f"maintainer={inst.text!r}", inst.line)
        run = {"RUN": self.run, "COPY": self.copy, "ADD": self.copy}.get(inst.cmd, self.metadata)
        run(inst)

    # -- FROM and ARG ------------------------------------------------------------

    def start(self, inst):
        parts = _dockerfile.expand(inst.text, self.meta).split()
        if len(parts) not in (1, 3) or (len(parts) == 3 and parts[1].upper() != "AS"):
            raise _dockerfile.error(inst.line, "FROM takes an image and optionally AS name")
        if self.stage:
            self.stages.append(self.stage)
        name = parts[2].lower() if len(parts) == 3 else None
        self.stage = Stage(self.base(parts[0], inst.line), name)

    def base(self, name, line):
        if name == "scratch":
            return None
        for s in self.stages:
            if s.name and s.name == name.lower():
                return s.image
        try:
            return images.get(self.store, name)
        except NotFound:
            raise MinidockerError(f"Dockerfile line {line}: base image {name}: no such image here "
                                  f"(minidocker build does not pull: run `minidocker pull {name}` first)", 1) from None

    def arg(self, inst):
        name, eq, default = inst.text.strip().partition("=")
        target = self.stage.args if self.stage else self.meta
        scope = self.meta if self.stage is None else {**self.meta, **self.stage.env()}
        value = self.build_args.get(name, _dockerfile.expand(default, scope) if eq else self.meta.get(name))
        target[name] = value

    # -- the three kinds of step ----------------------------------------------------

    def metadata(self, inst):
        s = self.stage
        settings = _dockerfile.apply(s.settings, inst, s.env(), s.cmd_set)
        s.cmd_set = s.cmd_set or inst.cmd == "CMD"
        text = str(_dockerfile.Instruction(inst.cmd, _dockerfile.expand(inst.text, s.env()), inst.line, inst.flags))

        def make():
            cfg = images.new_config(s.config, created_by=f"/bin/sh -c #(nop) {text}", empty_layer=True)
            cfg["config"] = settings
            return self.save(cfg, s.image.layers if s.image else [])
        s.image = self.cached(f"{text}\n{oci.dumps(settings).decode()}", make)

    def run(self, inst):
        s = self.stage
        if s.image is None or not s.image.layers:
            raise MinidockerError(f"Dockerfile line {inst.line}: RUN needs a shell, and FROM scratch has none", 1)
        argv = _dockerfile.command(inst)
        args = {k: v for k, v in s.args.items() if v is not None}
        created_by = (f"|{len(args)} " + " ".join(f"{k}={v}" for k, v in args.items()) + " " if args else "")
        created_by += " ".join(argv) if inst.json is None else oci.dumps(argv).decode()

        def make():
            from . import commit, containers
            with indexed(self.store, s.image):
                c = containers.create(self.store, s.image.id, argv, entrypoint="",
                                      env=[f"{k}={v}" for k, v in args.items()],
                                      workdir=s.settings.get("WorkingDir"), user=s.settings.get("User"),
                                      network=self.network)
                try:
                    self.out(f" ---> Running in {c.short_id}")
                    c.start().close()
                    code = self.follow(c)
                    if code:
                        raise MinidockerError(f"Dockerfile line {inst.line}: RUN {inst.text}: the command "
                                              f"returned a non-zero code: {code}", 1)
                    cfg, layers_, _ = commit.snapshot(self.store, c, s.image, s.settings, created_by, pause=False)
                finally:
                    c.remove(force=True)
            return self.save(cfg, layers_)
        s.image = self.cached(created_by, make)

    def copy(self, inst):
        s, env = self.stage, self.stage.env()
        items = [_dockerfile.expand(w, env) for w in _dockerfile.words(inst)]
        if len(items) < 2:
            raise _dockerfile.error(inst.line, f"{inst.cmd} needs a source and a destination")
        *srcs, dest = items
        dest_abs = posixpath.join(s.settings.get("WorkingDir") or "/", dest)
        into_dir = dest.endswith("/") or len(srcs) > 1 or any(map(buildcontext.glob.has_magic, srcs))
        into_dir = into_dir or buildcontext.is_dir_in(s.image, dest_abs)
        where = posixpath.normpath(dest_abs).lstrip("/") or "."
        with self.source_root(inst) as (root, is_context):
            src = buildcontext.Sources(root, srcs, where, into_dir, context=is_context, ignore=self.ignore,
                                       owner=buildcontext.owner(inst.flags.get("chown"), inst.line),
                                       unpack_archives=inst.cmd == "ADD" and is_context)
            text = str(_dockerfile.Instruction(inst.cmd, " ".join(items), inst.line, inst.flags))
            key = src.digest()   # the tar itself is written only on a miss

            def make():
                with tempfile.TemporaryFile() as tar_file:
                    if src.digest(tar_file) != key:
                        raise MinidockerError(f"Dockerfile line {inst.line}: {inst.cmd}: its sources changed "
                                              "while the build read them", 1)
                    tar_file.seek(0)
                    return self.apply_tar(tar_file, f"/bin/sh -c #(nop) {text}")
            s.image = self.cached(f"{text}\n{key}", make)

    # -- helpers ------------------------------------------------------------------------

    def follow(self, c) -> int:
        """Show a RUN step's output while it runs, whole lines only; its exit code."""
        shown = 0
        while True:
            done = c.wait_exit(0.2)
            lines = c.logs().split("\n")
            # the piece after the last newline is half a line, unless the step is over
            ready = lines if done and lines[-1] else lines[:-1]
            for line in ready[shown:]:
                self.out(line)
            shown = max(shown, len(ready))
            if done:
                return c.state["ExitCode"]

    @contextlib.contextmanager
    def source_root(self, inst):
        """The directory COPY reads from: the context, or a stage's (or image's) files for --from."""
        src = inst.flags.get("from")
        if not src:
            yield self.context, True
            return
        stage = next((s for s in self.stages if s.name == src.lower()), None)
        if stage is None and src.isdigit() and int(src) < len(self.stages):
            stage = self.stages[int(src)]
        image = stage.image if stage else self.base(src, inst.line)
        if image is None or not image.layers:
            raise MinidockerError(f"Dockerfile line {inst.line}: COPY --from={src}: that stage has no files", 1)
        with mounted(self.store, image) as (rootfs, _):
            yield rootfs, False

    def apply_tar(self, tar_file, created_by):
        """The current image plus one layer: the tar applied onto it (through an overlay, as a container would)."""
        from . import commit, layers, overlay
        s = self.stage
        with mounted(self.store, s.image) as (rootfs, upper):
            layers.unpack(tar_file, rootfs, flatten=True)
            if rootfs != upper:
                overlay.unmount(rootfs)
            desc, diff_id = commit.layer_blob(self.store, upper)
        cfg = images.new_config(s.config, diff_ids=[diff_id], created_by=created_by)
        return self.save(cfg, (s.image.layers if s.image else []) + [desc])

    def save(self, cfg, layer_descs) -> images.Image:
        """Store an image's config and manifest as blobs, without naming it."""
        config_desc = self.store.put(oci.dumps(cfg), oci.CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": oci.MANIFEST, "config": config_desc, "layers": layer_descs}
        return images.load(self.store, self.store.put(oci.dumps(manifest), oci.MANIFEST))

    def cached(self, what: str, make) -> images.Image:
        """The step's image from the cache, or made now and remembered."""
        parent = self.stage.image.manifest_desc["digest"] if self.stage.image else "scratch"
        if not self.no_cache:
            hit = buildcache.lookup(self.store, parent, what)
            if hit is not None:
                self.out(" ---> Using cache")
                return hit
        image = make()
        buildcache.remember(self.store, parent, what, image)
        return image


@contextlib.contextmanager
def mounted(store, image):
    """(merged view, upper dir) of `image` on a throwaway writable layer; unmounted and deleted after."""
    from . import overlay
    base = store.root / "build"
    base.mkdir(mode=0o700, exist_ok=True)
    tmp = base / secrets.token_hex(8)
    tmp.mkdir(mode=0o700)
    try:
        for sub in ("upper", "work", "rootfs"):
            (tmp / sub).mkdir(mode=0o755)
        if image is None or not image.layers:
            yield str(tmp / "upper"), str(tmp / "upper")
            return
        overlay.mount(image.lower_dirs(), tmp / "upper", tmp / "work", tmp / "rootfs")
        try:
            yield str(tmp / "rootfs"), str(tmp / "upper")
        finally:
            if overlay.is_mounted(tmp / "rootfs"):
                overlay.unmount(tmp / "rootfs")
    finally:
        remove_tree(tmp)


@contextlib.contextmanager
def indexed(store, image):
    """Make an unnamed image findable (a container needs that) for the duration of a step."""
    present = any(m["digest"] == image.manifest_desc["digest"] for m in store.index()["manifests"])
    if not present:
        store.add_untagged(image.manifest_desc)
    try:
        yield
    finally:
        if not present:
            store.forget(image.manifest_desc["digest"])

