"""A first real container, with the proof that it is one (`script/demo`).

    python -m minidocker.demo [--diagram diagrams/demo_image_container.svg]

Builds busybox from the host's static busybox (once), starts a container,
shows from the inside that its hostname is its ID and its command is PID 1,
shows the layers under it, draws image and container, and removes it.
"""
import argparse
import os
import sys

from . import api, viz
from .errors import MinidockerError


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidocker.demo", description=__doc__.splitlines()[0])
    p.add_argument("--diagram", default="diagrams/demo_image_container.svg", help="where to write the SVG")
    a = p.parse_args(argv)
    try:
        return demo(a.diagram)
    except MinidockerError as e:
        print(f"demo: {e}", file=sys.stderr)
        return e.exit_code


def demo(diagram: str) -> int:
    """Run the demo; 0 when every proof held."""
    image = api.bootstrap()
    print(f"image   {image!r}  ({len(image.layers)} layers)")
    c = api.run("busybox", ["sh", "-c", "hostname; echo $$; cat /proc/1/cmdline | tr '\\0' ' '"],
                detach=True, name="minidocker-demo")
    try:
        code = c.wait()
        hostname, pid, cmdline = (c.logs().splitlines() + ["", "", ""])[:3]
        proofs = [("hostname is the container ID", hostname == c.short_id, hostname),
                  ("its command is PID 1", pid == "1", f"$$ = {pid}, /proc/1/cmdline = {cmdline.strip()}"),
                  ("exited cleanly", code == 0, f"exit code {code}")]
        for text, ok, seen in proofs:
            print(f"{'ok ' if ok else 'BAD'}  {text:30} {seen}")
        print(f"upper   {c.dir / 'upper'}")
        for diff_id, lower in zip(reversed(image.diff_ids), image.lower_dirs()):
            print(f"lower   {lower}  (diff_id {viz.short(diff_id)})")
        os.makedirs(os.path.dirname(os.path.abspath(diagram)), exist_ok=True)
        viz.save_svg(viz.container_graph(c), diagram)
        print(f"drawn   {diagram}")
        return 0 if all(ok for _, ok, _ in proofs) else 1
    finally:
        c.remove(force=True)


if __name__ == "__main__":
    sys.exit(main())
