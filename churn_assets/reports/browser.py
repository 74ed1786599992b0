"""Headless Chromium through the DevTools protocol: load a page, collect console errors, the
requests it made and what its charts drew, and take screenshots.

Debian's ``chromium`` package (``.ci/run`` installs it when missing). The DevTools protocol is
spoken over one websocket with the ``websockets`` package's synchronous client; the browser is
started on a free loopback port with a throw-away profile and always stopped.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.sync.client import connect

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "chrome")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--hide-scrollbars", "--mute-audio")

# What the page drew, read from the DOM after it loaded.
_CHARTS_JS = """JSON.stringify({
  charts: [...document.querySelectorAll('figure.chart')].map(f => {
    const s = f.querySelector('svg'); const r = s ? s.getBoundingClientRect() : {width: 0, height: 0};
    return {title: (f.querySelector('figcaption') || {}).textContent || '',
            marks: s ? s.querySelectorAll('.mark').length : 0, declared: s ? +s.dataset.marks : 0,
            width: r.width, height: r.height};
  }),
  sections: [...document.querySelectorAll('section')].map(s => ({
    id: s.id, empty: s.querySelectorAll('.empty').length, height: s.getBoundingClientRect().height})),
  figures: Object.fromEntries([...document.querySelectorAll('[data-figure]')].map(
    e => [e.dataset.figure, e.textContent])),
  height: document.documentElement.scrollHeight,
})"""


class BrowserError(RuntimeError):
    pass


def find_chromium() -> str | None:
    """``$CHROMIUM`` or the first Chromium-like browser on the PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


@dataclass
class PageReport:
    url: str
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL the page asked for
    charts: list[dict[str, Any]] = field(default_factory=list)
    sections: list[dict[str, Any]] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)
    height: int = 0


class Chromium:
    """A headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, binary: str | None = None, width: int = 1280, height: int = 900,
                 timeout: float = 30.0):
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise BrowserError("no Chromium found: install Debian's 'chromium' package "
                               "(apt-get install -y chromium) or set $CHROMIUM")
        self.width, self.height, self.timeout = width, height, timeout
        self._ids = 0
        self._events: list[dict] = []

    def __enter__(self) -> Chromium:
        self._profile = tempfile.mkdtemp(prefix="churn-chromium-")
        self._stack = contextlib.ExitStack()
        self._process = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self._profile}",
             "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
             f"--window-size={self.width},{self.height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port = self._port()
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                page = next(t for t in json.load(r) if t["type"] == "page")
            self._socket = self._stack.enter_context(connect(
                page["webSocketDebuggerUrl"], max_size=None, open_timeout=self.timeout))
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        shutil.rmtree(self._profile, ignore_errors=True)

    def _port(self) -> int:
        """The debugging port Chromium chose, from the file it writes into its profile."""
        marker = Path(self._profile) / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrowserError(f"{self.binary} exited with {self._process.returncode}")
            if marker.exists() and (lines := marker.read_text().splitlines()):
                return int(lines[0])
            time.sleep(0.05)
        raise BrowserError(f"{self.binary} did not open its debugging port in {self.timeout}s")

    def call(self, method: str, **params) -> dict:
        self._ids += 1
        ident = self._ids
        self._socket.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = json.loads(self._socket.recv(timeout=self.timeout))
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})
            self._events.append(message)

    def _wait_for(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            for event in self._events:
                if event.get("method") == method:
                    return event
            self._events.append(json.loads(self._socket.recv(timeout=self.timeout)))
        raise BrowserError(f"timed out waiting for {method}")

    def load(self, url: str) -> PageReport:
        """Navigate, wait for the load event, and report what the page did and drew."""
        self._events.clear()
        self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                  deviceScaleFactor=1, mobile=False)
        self.call("Page.navigate", url=url)
        self._wait_for("Page.loadEventFired")
        drawn = json.loads(self.call("Runtime.evaluate", expression=_CHARTS_JS,
                                     returnByValue=True)["result"]["value"])
        return PageReport(url=url, console_errors=self.console_errors(),
                          requests=self.requested(), **drawn)

    def listen(self, seconds: float) -> None:
        """Collect what the page does for ``seconds`` more (a favicon is asked for after the
        load event; events only arrive while someone reads the socket)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                self._events.append(json.loads(self._socket.recv(timeout=left)))
            except TimeoutError:
                break

    def requested(self) -> list[str]:
        """Every URL the page asked for since it was loaded (scripts fetch after the load)."""
        return [e["params"]["request"]["url"] for e in self._events
                if e.get("method") == "Network.requestWillBeSent"]

    def wait_until(self, expression: str, timeout: float | None = None) -> Any:
        """Evaluate ``expression`` in the page until it is truthy (e.g. a script-built DOM is
        there); return its value."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.call("Runtime.evaluate", expression=expression,
                              returnByValue=True)["result"].get("value")
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"timed out waiting for {expression!r} in the page")
            time.sleep(0.1)

    def console_errors(self) -> list[str]:
        """Console errors and uncaught exceptions since the page was loaded."""
        errors = []
        for event in self._events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append(" ".join(str(a.get("value", a.get("description", "")))
                                       for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                errors.append(params["entry"].get("text", ""))
        return errors

    def screenshot(self, out: Path, full_page: bool = True) -> Path:
        """A PNG of the loaded page (its whole height when ``full_page``)."""
        height = self.height
        if full_page:
            height = int(self.call("Runtime.evaluate", expression=(
                "document.documentElement.scrollHeight"), returnByValue=True)["result"]["value"])
            self.call("Emulation.setDeviceMetricsOverride", width=self.width, height=height,
                      deviceScaleFactor=1, mobile=False)
        shot = self.call("Page.captureScreenshot", format="png",
                         clip={"x": 0, "y": 0, "width": self.width, "height": height, "scale": 1})
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(base64.b64decode(shot["data"]))
        return out


def check_page(path: Path, binary: str | None = None) -> PageReport:
    """Load one HTML file in headless Chromium and report what it did and drew."""
    with Chromium(binary) as browser:
        return browser.load(Path(path).resolve().as_uri())
