"""The teaching material stays honest: clean notebooks, current diagrams, student copies that fail
exactly where the learner has work to do, and a demo that proves what it claims."""
import html
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from helpers import md
from minidocker.cli_teaching import write_diagrams

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def _tags(cell) -> list:
    return cell.get("metadata", {}).get("tags", [])


def test_there_are_chapters():
    assert [p.name for p in NOTEBOOKS][:3] == ["00_welcome.ipynb", "01_images.ipynb", "02_layers_and_overlay.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_have_no_outputs_in_the_tree_or_in_git(path):
    versions = {"tree": path.read_text()}
    rel = path.relative_to(REPO)
    shown = subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=REPO, capture_output=True, text=True)
    if shown.returncode == 0:
        versions["HEAD"] = shown.stdout
    for where, text in versions.items():
        nb = nbformat.reads(text, as_version=4)
        dirty = [i for i, c in enumerate(nb.cells)
                 if c.cell_type == "code" and (c.outputs or c.execution_count is not None)]
        assert not dirty, f"{rel} ({where}) has outputs in cells {dirty}: run nbstripout on it"
        assert "widgets" not in nb.metadata, f"{rel} ({where}) keeps widget state: run nbstripout on it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_chapter_follows_the_template(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "doctor.check()" in code[0].source, "the first code cell checks the environment"
    assert "**Goal.**" in text and "you will be able to" in text
    assert "## Summary" in text and "## Further reading" in text
    assert any("show(" in c.source for c in code), "code is shown from the package with show()"
    for tag in ("exercise", "solution", "check"):
        assert sum(tag in _tags(c) for c in code) >= 2, f"at least two {tag} cells"
    readme = (REPO / "notebooks" / "README.md").read_text()
    assert path.name in readme


def test_committed_diagrams_are_what_the_code_draws_now(tmp_path):
    fresh = {p.name: p for p in write_diagrams(tmp_path)}
    committed = {p.name for p in (REPO / "diagrams").iterdir()
                 if p.suffix in (".dot", ".svg") and not p.name.startswith("demo_")}
    assert committed == set(fresh), "run script/diagrams: diagrams/ and the code disagree on which exist"
    for name, path in fresh.items():
        assert (REPO / "diagrams" / name).read_text() == path.read_text(), f"diagrams/{name} is stale: run script/diagrams"


@pytest.fixture
def learners_store(store_root):
    """A temporary store as a learner's is after chapter 00: busybox is there.

    store_root sets MINIDOCKER_ROOT, which the kernel inherits: the default store is never touched.
    """
    md("bootstrap", root=store_root, check=True)
    yield store_root
    # a chapter that failed half-way did not reach its cleanup cell: remove what it left running
    ids = md("ps", "-aq", "--no-trunc", root=store_root).stdout.split()
    if ids:
        md("rm", "-f", *ids, root=store_root)


@pytest.fixture(scope="module")
def student_copies(tmp_path_factory):
    out = tmp_path_factory.mktemp("student")
    subprocess.run([str(REPO / "script" / "student"), str(out)], check=True, capture_output=True)
    return out


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_a_student_copy_fails_only_at_its_check_cells(student_copies, name, learners_store):
    nb = nbformat.read(student_copies / name, as_version=4)
    assert not any("solution" in _tags(c) for c in nb.cells), "solutions are dropped"
    NotebookClient(nb, timeout=300, allow_errors=True, kernel_name="python3",
                   resources={"metadata": {"path": str(student_copies)}}).execute()
    failed = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
              and any(o.output_type == "error" for o in c.outputs)]
    checks = [i for i, c in enumerate(nb.cells) if "check" in _tags(c)]
    assert failed == checks, {i: nb.cells[i].source[:60] for i in set(failed) ^ set(checks)}
    for i in checks:   # each fails on the learner's missing piece, not on something else
        error = next(o for o in nb.cells[i].outputs if o.output_type == "error")
        assert error.ename in ("NotImplementedError", "AssertionError"), (i, error.ename, error.evalue)


@pytest.mark.root
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_chapter_runs_twice_from_the_top_in_one_kernel(path, learners_store):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    with client.setup_kernel():
        for _ in range(2):   # a CellExecutionError here names the cell that is not idempotent
            for i, cell in enumerate(nb.cells):
                client.execute_cell(cell, i)
        left = md("ps", "-a", root=learners_store).stdout.splitlines()[1:]
    assert left == [], "the chapter removes the containers it made"


@pytest.mark.root
def test_the_demo_proves_a_real_container_and_leaves_none(store_root, tmp_path):
    svg = tmp_path / "out" / "demo.svg"
    r = subprocess.run([sys.executable, "-m", "minidocker.demo", "--diagram", str(svg)], capture_output=True,
                       text=True, timeout=120, env=dict(os.environ, MINIDOCKER_ROOT=str(store_root)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok   hostname is the container ID" in r.stdout and "ok   its command is PID 1" in r.stdout
    drawing = html.unescape(svg.read_text())   # dot writes "-" as &#45;
    assert "<svg" in drawing and "container minidocker-demo" in drawing
    assert md("ps", "-aq", root=store_root).stdout == ""
    assert json.loads(md("doctor", "--json", root=store_root, check=True).stdout)[-1]["ok"]
