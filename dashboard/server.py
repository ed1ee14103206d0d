"""Running the dashboard: :class:`DashboardServer` starts ``streamlit run`` as a child process.

Used by ``liquid dashboard``, ``liquid up`` and the browser test::

    with DashboardServer(api_url="http://127.0.0.1:8780", api_key=operator_key) as dash:
        print(dash.url)            # http://127.0.0.1:8781

It binds 127.0.0.1, and passes the API's address and key through the environment (never on
the command line, where ``ps`` would show the key).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

APP = Path(__file__).with_name("app.py")
DEFAULT_PORT = 8781


class DashboardNotStarted(RuntimeError):
    """Streamlit exited or did not answer its health check in time."""


class _NotYet(Exception):
    """The health check did not answer 200 yet."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (Streamlit cannot be told to pick one)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


class DashboardServer:
    """``streamlit run dashboard/app.py`` on ``host:port``, reading the API at ``api_url``.

    ``port=0`` picks a free port. :meth:`start` returns once ``/_stcore/health`` answers;
    :meth:`stop` terminates the child (and kills it if it does not exit in time).
    """

    def __init__(
        self,
        *,
        api_url: str,
        api_key: str | None,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        log_file: Path | None = None,
    ) -> None:
        self.api_url = api_url
        self.api_key = api_key
        self.host = host
        self.port = port or free_port(host)
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __repr__(self) -> str:
        state = "running" if self.process is not None and self.process.poll() is None else "stopped"
        return f"DashboardServer({self.url}, api={self.api_url}, {state})"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(APP),
            "--server.headless",
            "true",
            "--server.address",
            self.host,
            "--server.port",
            str(self.port),
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
            "--global.developmentMode",
            "false",
            "--client.toolbarMode",
            "viewer",
        ]

    def start(self, timeout: float = 60.0) -> str:
        """Start Streamlit and wait for its health check; the URL."""
        env = {
            **os.environ,
            "LIQUID_DASHBOARD_API_URL": self.api_url,
            "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false",
        }
        if self.api_key:
            env["LIQUID_DASHBOARD_API_KEY"] = self.api_key
        # The project root on the path: `dashboard` imports itself from the page scripts.
        root = str(APP.parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        out = self.log_file.open("ab") if self.log_file is not None else subprocess.DEVNULL
        try:
            self.process = subprocess.Popen(
                self.command(), env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            if self.log_file is not None and not isinstance(out, int):
                out.close()
        try:
            for attempt in Retrying(
                stop=stop_after_delay(timeout),
                wait=wait_fixed(0.2),
                retry=retry_if_exception_type((httpx.TransportError, _NotYet)),
                reraise=True,
            ):
                with attempt:
                    self._check_health()
        except (httpx.TransportError, _NotYet, DashboardNotStarted) as exc:
            self.stop()
            where = f"; see {self.log_file}" if self.log_file else ""
            raise DashboardNotStarted(f"the dashboard did not start on {self.url}: {exc}{where}") from None
        return self.url

    def _check_health(self) -> None:
        assert self.process is not None
        code = self.process.poll()
        if code is not None:
            raise DashboardNotStarted(f"streamlit exited with code {code} (is port {self.port} taken?)")
        response = httpx.get(f"{self.url}/_stcore/health", timeout=2.0)
        if response.status_code != 200:
            raise _NotYet(f"health check answered {response.status_code}")

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)
        self.process = None

    def __enter__(self) -> DashboardServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
