"""Interactive panels for the notebooks, each with a plain-call equivalent.

Widgets are a convenience: every button calls a method you can call yourself
(`panel.do("start")`, `explorer.show("/etc/passwd")`), which is what the
notebooks do when they run headless under CI.
"""
from . import api, viz

ACTIONS = ("create", "start", "stop", "rm")


class LifecyclePanel:
    """Buttons that create, start, stop and remove one real container, redrawing its state."""

    def __init__(self, image: str = "busybox", command=("sleep", "300"), name: str = "lifecycle-demo"):
        self.image, self.command, self.name = image, list(command), name
        self.container = None
        self.history = []

    def do(self, action: str) -> str:
        """Apply one verb (create, start, stop, rm) and return the container's status afterwards."""
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}")
        c = self.container
        if action == "create":
            if c is None:
                self._remove_leftover()
                self.container = api.create(self.image, self.command, name=self.name)
        elif c is None:
            pass   # nothing to start, stop or remove yet: the diagram says so
        elif action == "start" and c.reload().status != "running":
            c.start().close()
        elif action == "stop":
            c.stop(timeout=2)
        elif action == "rm":
            c.remove(force=True)
            self.container = None
        self.history.append((action, self.status))
        return self.status

    @property
    def status(self) -> str:
        return self.container.reload().status if self.container else "removed"

    def diagram(self):
        return viz.lifecycle(self.status)

    def _remove_leftover(self):
        # A kernel restarted mid-chapter leaves the old container behind: cells must be re-runnable.
        try:
            api.container(self.name).remove(force=True)
        except Exception:
            pass

    def widget(self):
        """The panel as ipywidgets: four buttons above the live diagram."""
        import ipywidgets as w
        from IPython.display import display
        out = w.Output()

        def redraw(action=None):
            out.clear_output(wait=True)
            with out:
                try:
                    if action:
                        self.do(action)
                    display(self.diagram())
                except Exception as e:   # shown, not raised: a button has no traceback to give
                    print(f"{action}: {e}")
                    display(self.diagram())

        buttons = [w.Button(description=a) for a in ACTIONS]
        for b in buttons:
            b.on_click(lambda b: redraw(b.description))
        redraw()
        return w.VBox([w.HBox(buttons), out])


class LayerExplorer:
    """Pick a path; see which layer of a container's overlay supplies it."""

    def __init__(self, container):
        self.container = container

    def show(self, path: str = None):
        """The overlay stack, with `path` traced to its layer (the plain call behind the widget)."""
        return viz.overlay_stack(self.container, path)

    def widget(self, paths=("/bin/sh", "/etc/passwd", "/etc/issue", "/tmp")):
        import ipywidgets as w
        from IPython.display import display
        out = w.Output()
        box = w.Combobox(options=list(paths), value=paths[0], description="path", ensure_option=False)

        def redraw(change=None):
            out.clear_output(wait=True)
            with out:
                display(self.show(box.value or None))

        box.observe(redraw, names="value")
        redraw()
        return w.VBox([box, out])
