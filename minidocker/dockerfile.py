"""Dockerfiles: the text read into instructions, and what each metadata
instruction does to an image config.

    FROM busybox AS base          Instruction("FROM", ["busybox", "AS", "base"], line=1)
    RUN echo hi \\                 one instruction over two lines: line 2 is where it starts
        && echo there
    CMD ["sh", "-c", "date"]      exec (JSON) form: .json holds the list

`commit -c 'CMD ["sh"]'` uses the same parser and the same `apply`, so a
change given to commit means exactly what it means in a Dockerfile.
"""
import json
import re
import shlex
from dataclasses import dataclass, field

from .errors import MinidockerError

INSTRUCTIONS = ("FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "CMD", "ENTRYPOINT",
                "LABEL", "EXPOSE", "VOLUME", "STOPSIGNAL", "SHELL", "MAINTAINER", "ONBUILD", "HEALTHCHECK")
SUPPORTED = ("FROM", "RUN", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "CMD", "ENTRYPOINT",
             "LABEL", "EXPOSE", "VOLUME", "STOPSIGNAL", "MAINTAINER")
COMMIT_CHANGES = ("CMD", "ENTRYPOINT", "ENV", "WORKDIR", "USER", "EXPOSE", "LABEL", "VOLUME", "STOPSIGNAL")
# Substituted before the instruction runs (docker's list); RUN is left to the shell.
EXPANDS = ("FROM", "COPY", "ADD", "ENV", "ARG", "WORKDIR", "USER", "LABEL", "EXPOSE", "VOLUME", "STOPSIGNAL")


@dataclass
class Instruction:
    cmd: str                      # upper case: RUN, COPY...
    text: str                     # the arguments as written (continuations joined)
    line: int                     # where it starts in the Dockerfile
    flags: dict = field(default_factory=dict)   # --from=builder, --chown=...
    json: list = None             # the exec form's list, if it was written as JSON

    def __str__(self):
        flags = "".join(f"--{k}={v} " for k, v in self.flags.items())
        return f"{self.cmd} {flags}{self.text}"


def error(line, message) -> MinidockerError:
    return MinidockerError(f"Dockerfile parse error line {line}: {message}", 1)


def parse(text: str) -> list:
    """The instructions of a Dockerfile, in order."""
    out, pending, start = [], "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue   # comments and parser directives (# syntax=...) are not instructions
        if pending and stripped.startswith("#"):
            continue   # a comment inside a continued instruction is dropped, as docker does
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        out.append(parse_line(pending + stripped, start))
        pending = ""
    if pending.strip():
        out.append(parse_line(pending, start))
    if not out:
        raise MinidockerError("the Dockerfile has no instructions", 1)
    if out[0].cmd not in ("FROM", "ARG"):
        raise error(out[0].line, f"{out[0].cmd} before the first FROM: a Dockerfile starts with FROM")
    return out


def parse_line(line: str, number: int = 1) -> Instruction:
    """One instruction: `RUN make`, `COPY --from=b /x /y`, `CMD ["sh"]`."""
    word, _, rest = line.strip().partition(" ")
    cmd, rest = word.upper(), rest.strip()
    if cmd not in INSTRUCTIONS:
        raise error(number, f"unknown instruction: {word}")
    if cmd not in SUPPORTED:
        raise error(number, f"{cmd} is not supported by minidocker")
    flags = {}
    while cmd in ("COPY", "ADD", "FROM", "RUN") and rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        name, _, value = flag[2:].partition("=")
        flags[name] = value
        rest = rest.strip()
    for name in flags:
        if (cmd, name) not in (("COPY", "from"), ("COPY", "chown"), ("ADD", "chown"), ("FROM", "platform")):
            raise error(number, f"unknown flag: --{name}")
    if not rest and cmd not in ("CMD", "ENTRYPOINT"):
        raise error(number, f"{cmd} requires at least one argument")
    listed = None
    if cmd in ("RUN", "CMD", "ENTRYPOINT", "COPY", "ADD", "VOLUME") and rest.startswith("["):
        try:
            listed = json.loads(rest)
        except ValueError:
            listed = None   # not JSON after all: docker then treats it as the shell form
        if listed is not None and not (isinstance(listed, list) and all(isinstance(s, str) for s in listed)):
            raise error(number, f"{cmd}: the exec form must be a JSON list of strings")
    return Instruction(cmd, rest, number, flags, listed)


# -- variables ---------------------------------------------------------------------

_VAR = re.compile(r"\\\$|\$(?:\{(\w+)(?::([-+])([^}]*))?\}|(\w+))")


def expand(text: str, env: dict) -> str:
    """$VAR, ${VAR}, ${VAR:-default}, ${VAR:+alternative}; \\$ is a literal dollar."""
    def one(m):
        if m.group(0) == "\\$":
            return "$"
        name = m.group(1) or m.group(4)
        value = env.get(name, "")
        if m.group(2) == "-":
            return value or m.group(3)
        if m.group(2) == "+":
            return m.group(3) if value else ""
        return value
    return _VAR.sub(one, text)


def words(inst: Instruction) -> list:
    """Space-separated arguments, with shell-like quotes (COPY a "b c" /d)."""
    if inst.json is not None:
        return list(inst.json)
    try:
        return shlex.split(inst.text, posix=True)
    except ValueError as e:
        raise error(inst.line, f"{inst.cmd}: {e}") from None


def pairs(inst: Instruction) -> list:
    """ENV and LABEL: `k=v k2="v 2"`, or the old one-pair form `ENV k v w`."""
    items = words(inst)
    if items and "=" not in items[0]:
        if inst.cmd == "ENV" and len(items) >= 2:
            return [(items[0], inst.text.split(None, 1)[1].strip())]
        raise error(inst.line, f"{inst.cmd} needs KEY=VALUE (got {inst.text!r})")
    out = []
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise error(inst.line, f"{inst.cmd}: {item!r} is not KEY=VALUE")
        out.append((key, value))
    return out


def command(inst: Instruction, shell=("/bin/sh", "-c")) -> list:
    """RUN/CMD/ENTRYPOINT as argv: the JSON list as is, or the text through the shell."""
    if inst.json is not None:
        return list(inst.json)
    return list(shell) + [inst.text] if inst.text else []


# -- what metadata instructions do to a config ----------------------------------------

def env_dict(config: dict) -> dict:
    return dict(e.split("=", 1) if "=" in e else (e, "") for e in (config.get("Env") or []))


def apply(config: dict, inst: Instruction, env: dict = None, cmd_set: bool = True) -> dict:
    """The image config's `config` section after a metadata instruction (a new dict).

    `cmd_set`: whether this build stage has its own CMD yet (ENTRYPOINT keeps it then).
    """
    c = dict(config)
    env = dict(env if env is not None else env_dict(c))
    if inst.cmd in EXPANDS:
        inst = Instruction(inst.cmd, expand(inst.text, env), inst.line, inst.flags,
                           [expand(s, env) for s in inst.json] if inst.json is not None else None)
    if inst.cmd == "CMD":
        c["Cmd"] = command(inst) or None
    elif inst.cmd == "ENTRYPOINT":
        c["Entrypoint"] = command(inst) or None
        # docker: a new ENTRYPOINT forgets the CMD inherited from the base image
        if not cmd_set:
            c["Cmd"] = None
    elif inst.cmd == "ENV":
        current = env_dict(c)
        for key, value in pairs(inst):
            current[key] = value
        c["Env"] = [f"{k}={v}" for k, v in current.items()]
    elif inst.cmd == "LABEL":
        c["Labels"] = {**(c.get("Labels") or {}), **dict(pairs(inst))}
    elif inst.cmd == "WORKDIR":
        import posixpath
        c["WorkingDir"] = posixpath.normpath(posixpath.join(c.get("WorkingDir") or "/", inst.text))
    elif inst.cmd == "USER":
        c["User"] = inst.text.strip()
    elif inst.cmd == "EXPOSE":
        ports = dict(c.get("ExposedPorts") or {})
        for port in words(inst):
            number, _, proto = port.partition("/")
            if not number.replace("-", "").isdigit() or proto not in ("", "tcp", "udp", "sctp"):
                raise error(inst.line, f"EXPOSE: invalid port {port!r}")
            ports[f"{number}/{proto or 'tcp'}"] = {}
        c["ExposedPorts"] = ports
    elif inst.cmd == "VOLUME":
        c["Volumes"] = {**(c.get("Volumes") or {}), **{v: {} for v in words(inst)}}
    elif inst.cmd == "STOPSIGNAL":
        c["StopSignal"] = inst.text.strip()
    else:
        raise error(inst.line, f"{inst.cmd} does not change the image config")
    return c


def change(config: dict, text: str) -> dict:
    """commit -c: one Dockerfile instruction applied to a config."""
    inst = parse_line(text)
    if inst.cmd not in COMMIT_CHANGES:
        raise MinidockerError(f"{inst.cmd} is not a valid change command", 1)
    return apply(config, inst)
