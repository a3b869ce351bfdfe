"""What every chapter imports first: the package, and four small helpers.

    from _chapter import *
    show(docker.run)          the source of a function, straight from the package
    diagram("02_overlay")     a concept diagram from diagrams/
    expect(got, want, hint)   a check that says what is wrong, not what to type
    tree(path)                a directory listing that shows file kinds (whiteouts too)
"""
import inspect
import os
import stat
from pathlib import Path

from IPython.display import SVG, Code

from minidocker import api as docker  # noqa: F401  (what the chapters call `docker`)
from minidocker import doctor, viz  # noqa: F401

import minidocker

# diagrams/ sits beside the package in the repository (student copies live elsewhere)
DIAGRAMS = Path(minidocker.__file__).resolve().parent.parent / "diagrams"

__all__ = ["docker", "doctor", "viz", "show", "diagram", "expect", "tree", "cleanup", "os", "Path"]


def show(obj):
    """Display the source of a function or class from the package (never a copy of it)."""
    return Code(inspect.getsource(obj), language="python")


def diagram(stem: str):
    """A generated concept diagram (diagrams/<stem>.svg; regenerate with script/diagrams)."""
    return SVG(filename=str(DIAGRAMS / f"{stem}.svg"))


def expect(got, want, hint: str):
    """Fail with `hint` and what was found when `got` is not `want`."""
    if got != want:
        raise AssertionError(f"{hint}\n  expected: {want!r}\n  got:      {got!r}")


def tree(path, limit: int = 40) -> None:
    """Print the files under `path` with their kind: dir/, link -> target, whiteout (char 0/0), size."""
    lines, path = [], Path(path)
    for top, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(dirs + files):
            full = Path(top) / name
            st = os.lstat(full)
            rel = "/" + str(full.relative_to(path))
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                lines.append(f"{rel}  (whiteout: char device 0/0)")
            elif stat.S_ISLNK(st.st_mode):
                lines.append(f"{rel} -> {os.readlink(full)}")
            elif stat.S_ISDIR(st.st_mode):
                lines.append(rel + "/")
            else:
                lines.append(f"{rel}  ({st.st_size} bytes)")
    lines.sort()
    more = f"\n... and {len(lines) - limit} more" if len(lines) > limit else ""
    print("\n".join(lines[:limit]) + more)


def cleanup(prefix: str) -> list:
    """Remove this chapter's containers (named <prefix>...), so every cell can run again."""
    gone = []
    for c in docker.ps(all=True):
        if c.name.startswith(prefix):
            c.remove(force=True)
            gone.append(c.name)
    return gone
