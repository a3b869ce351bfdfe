"""A JupyterLab server on 127.0.0.1 and Debian's chromium driving it, for the real-browser test.

Nothing is downloaded: the browser and its driver are Debian's (chromium, chromium-driver), named
explicitly so Selenium Manager never runs. Both are started by the test and stopped, with every
process they spawned, before the leak check looks.
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

from conftest import descendants

REPO = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Without these, chromium on a machine with no outside network keeps dialling Google's services.
QUIET_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--disable-dev-shm-usage", "--window-size=1400,1100"]


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    """Poll `condition` until it returns something truthy (returned), or fail saying `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """`jupyter lab` on 127.0.0.1 serving a copy of notebooks/, with its own config, data and runtime dirs."""

    def __init__(self, workdir: Path, env: dict):
        self.workdir, self.token, self.port = workdir, secrets.token_hex(16), free_port()
        self.notebooks = workdir / "notebooks"
        shutil.copytree(REPO / "notebooks", self.notebooks,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        home = workdir / "jupyter"
        # The news and update checks would dial out and pop a notification over the notebook.
        settings = home / "config/lab/user-settings/@jupyterlab/apputils-extension"
        settings.mkdir(parents=True)
        (settings / "notification.jupyterlab-settings").write_text(
            json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        self.env = dict(env, JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
                        JUPYTER_RUNTIME_DIR=str(home / "runtime"), IPYTHONDIR=str(home / "ipython"))
        self.log = open(workdir / "jupyter.log", "wb")
        self.proc = subprocess.Popen(
            [str(REPO / ".venv/bin/jupyter"), "lab", "--allow-root", "--ip", "127.0.0.1",
             "--port", str(self.port), "--no-browser", f"--ServerApp.token={self.token}",
             "--ServerApp.port_retries=0", "--LabApp.expose_app_in_browser=True",
             "--notebook-dir", str(self.notebooks)],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.spawned = set()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str):
        return requests.request(method, f"{self.base}/api/{path}", timeout=10,
                                headers={"Authorization": f"token {self.token}"})

    def wait_ready(self, timeout: float = 60):
        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"jupyter lab exited {self.proc.returncode}: {self.output()}")
            try:
                return self.api("GET", "status").status_code == 200
            except requests.ConnectionError:
                return False
        wait_for(up, timeout, "JupyterLab to answer on 127.0.0.1")

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{notebook}?token={self.token}"

    def output(self) -> str:
        self.log.flush()
        return (self.workdir / "jupyter.log").read_text(errors="replace")[-3000:]

    def stop(self, timeout: float = 30):
        """Shut down the kernels and the server, and wait until every process they started is gone."""
        # Kernels run in sessions of their own: note them now, or they would outlive the server unseen.
        self.spawned |= descendants(self.proc.pid) | {(self.proc.pid, None)}
        if self.proc.poll() is None:
            try:
                self.api("POST", "shutdown")
            except requests.RequestException:
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()
        try:
            wait_for(lambda: not alive(self.spawned), timeout, "the server's kernels to exit")
        except AssertionError:
            for pid, _ in alive(self.spawned):
                os.kill(pid, signal.SIGKILL)
            raise


def alive(procs: set) -> set:
    """Those (pid, start time) pairs that are still running, not zombies."""
    found = set()
    for pid, start in procs:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and start in (None, fields[19]):
            found.add((pid, start))
    return found


def chromium(profile: Path):
    """Headless Debian chromium under Debian's chromedriver (never Selenium Manager's downloads)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in QUIET_FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(profile.parent / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    driver.set_script_timeout(30)
    return driver
