"""A headless Chromium driven over the DevTools protocol, in real time: open a page, run JavaScript
in it, take screenshots. (``chromium --dump-dom`` runs a page in virtual time, where a page that
polls a server sees no time pass between its reads.)

Started with ``--remote-debugging-port=0``; the port Chromium chose is in DevToolsActivePort in its
profile directory. Stopped by its PID, also when a test fails.
"""

import base64
import json
import os
import shutil
import signal
import subprocess
from contextlib import ExitStack
from pathlib import Path

import httpx
from websockets.sync.client import connect

from tests.support.wait import wait_until

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


class Chromium:
    def __init__(self, profile: Path, width: int = 1280, height: int = 1400) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.resources = ExitStack()
        self.socket = None
        self.next_id = 0
        try:
            port_file = profile / "DevToolsActivePort"
            wait_until(lambda: port_file.exists() and port_file.read_text().count("\n") >= 1, "Chromium listens")
            port = int(port_file.read_text().split()[0])
            pages = wait_until(lambda: [t for t in httpx.get(f"http://127.0.0.1:{port}/json/list").json()
                                        if t["type"] == "page"], "Chromium has a page")
            self.socket = self.resources.enter_context(
                connect(pages[0]["webSocketDebuggerUrl"], max_size=None, open_timeout=30))
        except BaseException:
            self.close()
            raise

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        wait_until(lambda: self.evaluate("document.readyState") == "complete", f"{url} loaded")

    def evaluate(self, expression: str):
        """The value of a JavaScript expression in the page (JSON-like values)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def screenshot(self, selector: str | None = None) -> bytes:
        """A PNG of the page, or of the element ``selector`` only."""
        params = {"format": "png"}
        if selector:
            box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)})"
                                ".getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; })()")
            params["clip"] = dict(zip(("x", "y", "width", "height"), box), scale=1)
        return base64.b64decode(self.call("Page.captureScreenshot", **params)["data"])

    def close(self) -> None:
        self.resources.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its renderer and helper processes, if any are left
        except ProcessLookupError:
            pass
