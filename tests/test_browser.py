"""Chapter 05 in a real browser: JupyterLab, Debian's chromium, the lifecycle widget's buttons.

The notebook runs up to its widget cell in a real kernel; each click then moves the real container
`ch05-panel` of a temporary store, and the test checks both the store (`minidocker inspect`) and
the diagram chromium drew (the SVG node highlighted in PALETTE["current"]). A screenshot of each
step is kept in test-artifacts/browser/.
"""
import json
import os

import pytest

from browserlab import REPO, Lab, chromium, wait_for
from helpers import md
from minidocker.viz import PALETTE, STATES

NOTEBOOK = "05_lifecycle.ipynb"
WIDGET_CELL = "panel.widget()"
ARTIFACTS = REPO / "test-artifacts" / "browser"

# Select every cell from the first to the widget's and run them: the cells after it drive the same
# container headless and clean the chapter up, which would race the clicks.
RUN_TO_WIDGET = """
const [marker] = arguments;
const panel = window.jupyterapp.shell.currentWidget, nb = panel.content;
const last = nb.widgets.findIndex(c => c.model.sharedModel.getSource().includes(marker));
if (last < 0) return -1;
nb.activeCellIndex = 0;
nb.extendContiguousSelectionTo(last);
window.jupyterapp.commands.execute("notebook:run-cell");
return last;
"""

# Where the notebook's kernel is: ready and idle, and what the cells up to `last` produced.
NOTEBOOK_STATE = """
const [last] = arguments;
const panel = window.jupyterapp.shell.currentWidget;
if (!panel || !panel.content || !panel.sessionContext) return null;
const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
const cells = panel.content.widgets.slice(0, last + 1).filter(c => c.model.type === "code");
return {
  path: panel.context.path,
  kernel: kernel ? kernel.status : null,
  ran: cells.every(c => c.model.executionCount !== null),
  errors: cells.flatMap(c => c.model.outputs.toJSON()).filter(o => o.output_type === "error")
               .map(o => o.ename + ": " + o.evalue),
};
"""

# The fill colours of each node of the widget's diagram, by the node's title (the state's name).
# JupyterLab inlines a trusted SVG; an untrusted one would be an <img> with a data: URL.
DIAGRAM_FILLS = """
const [box] = arguments;
let svg = box.querySelector("svg");
if (!svg) {
  const img = box.querySelector("img[src^='data:image/svg+xml']");
  if (!img) return null;
  const [head, data] = img.src.split(",", 2);
  const text = head.endsWith(";base64") ? atob(data) : decodeURIComponent(data);
  svg = new DOMParser().parseFromString(text, "image/svg+xml").documentElement;
}
const fills = {};
for (const node of svg.querySelectorAll("g.node")) {
  const title = node.querySelector("title");
  if (title) fills[title.textContent.trim()] = Array.from(node.querySelectorAll("path, polygon, ellipse"))
      .map(shape => (shape.getAttribute("fill") || "").toLowerCase());
}
return fills;
"""


def container_status(root):
    """What the store says about ch05-panel: its status, or None once it is gone."""
    found = md("inspect", "--type", "container", "ch05-panel", root=root)
    if found.returncode != 0:
        assert "ch05-panel" in found.stderr, found.stderr
        return None
    return json.loads(found.stdout)[0]["State"]["Status"]


def listed(root) -> bool:
    return "ch05-panel" in md("ps", "-a", root=root, check=True).stdout


@pytest.fixture
def lab(engine, tmp_path):
    """JupyterLab on a copy of notebooks/, whose kernels use the test's store; stopped with its kernels."""
    server = Lab(tmp_path, dict(os.environ, MINIDOCKER_ROOT=str(engine)))
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


@pytest.fixture
def artifacts():
    """test-artifacts/browser/, emptied of an earlier run's screenshots."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    return ARTIFACTS


@pytest.fixture
def browser(artifacts, tmp_path, monkeypatch):
    # Were Selenium Manager ever asked (it would fetch a browser), it would fail here instead.
    monkeypatch.setenv("SE_MANAGER_PATH", "/bin/false")
    driver = chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        driver.quit()


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_lifecycle_widget_drives_a_real_container(lab, browser, engine):
    try:
        click_through_the_lifecycle(lab, browser, engine)
    except BaseException:
        browser.save_screenshot(str(ARTIFACTS / "failure.png"))   # what the page showed when it failed
        print(lab.output())                                        # pytest shows it with the failure
        raise


def click_through_the_lifecycle(lab, browser, engine):
    browser.get(lab.url(NOTEBOOK))
    wait_for(lambda: browser.execute_script("return !!(window.jupyterapp && window.jupyterapp.shell"
                                            " && window.jupyterapp.shell.currentWidget"
                                            " && window.jupyterapp.shell.currentWidget.sessionContext)"),
             60, "JupyterLab to open the notebook")
    state = wait_for(lambda: _ready(browser, 0), 60, "the kernel to start")
    assert state["path"] == NOTEBOOK

    last = browser.execute_script(RUN_TO_WIDGET, WIDGET_CELL)
    assert last > 0, f"no cell of {NOTEBOOK} calls {WIDGET_CELL}"
    wait_for(lambda: _ran(browser, last), 90, "the cells up to the widget to run")

    buttons = wait_for(lambda: _buttons(browser), 30, "the widget's four buttons")
    box = browser.execute_script("return arguments[0].closest('.widget-vbox')", buttons["create"])
    assert box is not None, "the buttons are not inside the panel's VBox"
    assert _highlighted(browser, box) == ["removed"], "before create, the diagram shows no container"
    assert container_status(engine) is None

    shots = [ARTIFACTS / "0-widget.png"]
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
    assert browser.save_screenshot(str(shots[0]))
    for step, (action, want) in enumerate([("create", "created"), ("start", "running"),
                                           ("stop", "exited"), ("rm", "removed")], 1):
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
        buttons[action].click()
        wait_for(lambda: _highlighted(browser, box) == [want], 30,
                 f"the diagram to highlight {want!r} after {action}")
        got = container_status(engine)
        assert got == (None if want == "removed" else want), f"after {action} the store says {got}"
        assert listed(engine) == (want != "removed")
        shot = ARTIFACTS / f"{step}-{action}.png"
        assert browser.save_screenshot(str(shot)), f"chromium did not save {shot}"
        shots.append(shot)

    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 1000, shot


def _ready(browser, last):
    state = browser.execute_script(NOTEBOOK_STATE, last)
    return state if state and state["kernel"] == "idle" else None


def _ran(browser, last):
    state = browser.execute_script(NOTEBOOK_STATE, last)
    if state and state["errors"]:
        raise AssertionError(f"{NOTEBOOK} failed before its widget: {state['errors']}")
    return state if state and state["ran"] and state["kernel"] == "idle" else None


def _buttons(browser) -> dict:
    from selenium.webdriver.common.by import By
    found = {b.text.strip(): b for b in browser.find_elements(By.CSS_SELECTOR, "button.widget-button")}
    return found if {"create", "start", "stop", "rm"} <= set(found) else None


def _highlighted(browser, box) -> list:
    """The states drawn in the highlight colour in the widget's diagram (exactly one, when all is well)."""
    fills = browser.execute_script(DIAGRAM_FILLS, box) or {}
    assert not fills or set(STATES) <= set(fills), f"the widget's diagram is not the lifecycle: {sorted(fills)}"
    return sorted(s for s, colours in fills.items() if PALETTE["current"].lower() in colours)
