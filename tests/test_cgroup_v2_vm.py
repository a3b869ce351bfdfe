"""The cgroups tests again, inside a cgroup v2 kernel (script/cgroup2-vm).

This host is cgroup v1; learners mostly have v2. The VM boots Debian's kernel
with cgroup_no_v1=all and runs the same test files as root there; the mode
test is told to expect "v2", so a silent fall back to the v1 driver fails.
The first run builds the VM's cache (about a minute), later runs take 15-30 s.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# What runs inside; more files join it (e.g. the engine's lifecycle smoke test).
# MINIDOCKER_VM_TESTS="tests/a.py tests/b.py" overrides it for one run.
VM_TESTS = ["tests/test_cgroups.py", "tests/test_lifecycle_smoke.py"]


def run_in_vm(test_files, timeout=900):
    cmd = [sys.executable, str(ROOT / "script/cgroup2-vm"), "--timeout", str(timeout - 60),
           "--env", "MINIDOCKER_CGROUP_MODE=v2", "--", *test_files, "-q", "-rA"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.root
@pytest.mark.slow
def test_cgroup_tests_pass_on_a_cgroup_v2_kernel():
    files = os.environ.get("MINIDOCKER_VM_TESTS", "").split() or VM_TESTS
    r = run_in_vm(files)
    report = r.stdout + r.stderr
    assert r.returncode == 0, report
    summary = r.stdout.strip().splitlines()[-1]  # stdout is the guest's pytest alone
    assert re.search(r"\d+ passed", summary), report
    assert not re.search(r"failed|error|skipped|xfail", summary), report
    # every file must actually have run there
    for f in files:
        assert f"PASSED {f}::" in report, report
    assert "PASSED tests/test_cgroups.py::test_mode_matches_what_the_host_mounts" in report \
        or "tests/test_cgroups.py" not in files
