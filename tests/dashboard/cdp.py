"""Headless Chromium driven over the DevTools protocol (websocket-client), for the browser test.

Streamlit renders in the browser after the page loads, so a screenshot is taken only once the
expected text is in the DOM and Streamlit's status widget (shown while a script runs) is gone;
``chromium --screenshot`` with a virtual time budget takes blank shots (see SERVERS.md).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import websocket
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from dashboard.server import free_port

#: The flags this machine needs (SERVERS.md): no sandbox as root, no GPU, nothing off-box.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1440,2200",
)

#: What a page's DOM looks like, read in one evaluation.
PROBE = """JSON.stringify({
  text: document.body ? document.body.innerText : "",
  running: !!document.querySelector('[data-testid="stStatusWidget"]'),
  exceptions: document.querySelectorAll('[data-testid="stException"]').length,
  app: !!document.querySelector('[data-testid="stApp"]'),
})"""


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


class NotReady(Exception):
    """The page has not rendered what was waited for yet."""


class Browser:
    """One headless Chromium on a loopback debugging port, and one page driven over CDP."""

    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.port = free_port()
        self.profile = Path(tempfile.mkdtemp(prefix="liquid-chromium-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.ws: websocket.WebSocket | None = None
        self._id = 0

    def __enter__(self) -> Browser:
        self.process = subprocess.Popen(
            [
                self.executable,
                *FLAGS,
                f"--user-data-dir={self.profile}",
                "--remote-debugging-address=127.0.0.1",
                f"--remote-debugging-port={self.port}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            # Its own process group: Chromium's helpers (zygote, crashpad) outlive the browser
            # process by a moment and write into the profile; the whole group is stopped on exit.
            start_new_session=True,
        )
        for attempt in Retrying(
            stop=stop_after_delay(30), wait=wait_fixed(0.2), retry=retry_if_exception_type(httpx.HTTPError)
        ):
            with attempt:
                targets = httpx.get(f"http://127.0.0.1:{self.port}/json/list", timeout=2).json()
        page = next(t for t in targets if t["type"] == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=30, suppress_origin=True)
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.process is not None:
            _stop_group(self.process)
        shutil.rmtree(self.profile, ignore_errors=True)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One CDP command; its result (events that arrive meanwhile are dropped)."""
        assert self.ws is not None
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result

    def dom(self) -> dict[str, Any]:
        value = self.send("Runtime.evaluate", expression=PROBE, returnByValue=True)["result"]["value"]
        probe: dict[str, Any] = json.loads(value)
        return probe

    def open(self, url: str, *, wait_for: str, timeout: float = 90.0) -> dict[str, Any]:
        """Navigate and wait until ``wait_for`` is in the text and no script runs, twice in a row."""
        self.send("Page.navigate", url=url)
        settled = 0

        def ready() -> dict[str, Any]:
            nonlocal settled
            probe = self.dom()
            if not probe["app"] or probe["running"] or wait_for not in probe["text"]:
                settled = 0
                raise NotReady(f"waiting for {wait_for!r} (running={probe['running']})")
            settled += 1
            if settled < 2:  # charts draw just after the script finishes
                raise NotReady("settling")
            return probe

        for attempt in Retrying(
            stop=stop_after_delay(timeout),
            wait=wait_fixed(0.5),
            retry=retry_if_exception_type(NotReady),
            reraise=True,
        ):
            with attempt:
                return ready()
        raise AssertionError("unreachable")

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop the browser and every helper it started, then wait until none is left.

    Removing the profile while a helper still runs leaves a ``Default`` directory behind in /tmp.
    """
    group = process.pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        process.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGKILL)
