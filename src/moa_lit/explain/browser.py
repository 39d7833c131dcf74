"""Open a page in real headless Chromium through chromedriver's W3C WebDriver
HTTP interface (the standard protocol, spoken here with the standard library so
no extra package is needed): collect the browser console's errors, run a
script in the page, take a screenshot. Used by the page's browser test and to
make the explanation page's screenshot:

    python -m moa_lit.explain.browser page.html --screenshot docs/page.png
"""

from __future__ import annotations

import argparse
import base64
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
)


def find_chromium() -> tuple[str, str] | None:
    """(browser, chromedriver) executables, or None where either is absent."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Browser:
    """One headless Chromium session with a fresh profile folder, closed on exit."""

    def __init__(self, browser: str, driver: str, width: int = 1200, height: int = 900, timeout: float = 30.0):
        self.port = _free_port()
        self.profile = tempfile.mkdtemp(prefix="moa-lit-chromium-")
        self.process = subprocess.Popen([driver, f"--port={self.port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{self.port}"
        self.session = None
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self._call("GET", "/status")["ready"]:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.close()
                raise RuntimeError(f"chromedriver did not start on port {self.port}")
            time.sleep(0.1)
        options = {"binary": browser, "args": [*CHROMIUM_ARGS, f"--user-data-dir={self.profile}",
                                               f"--window-size={width},{height}"]}
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options,
                                                 "goog:loggingPrefs": {"browser": "ALL"}}}}
        try:
            self.session = self._call("POST", "/session", caps)["sessionId"]
        except BaseException:
            self.close()
            raise

    def _call(self, method: str, path: str, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read() or b"{}").get("value")
        except urllib.error.HTTPError as err:
            raise RuntimeError(f"WebDriver {method} {path}: {err.read().decode(errors='replace')[:500]}") from None

    def _session(self, method: str, path: str, body: dict | None = None):
        return self._call(method, f"/session/{self.session}{path}", body)

    def open(self, path: Path) -> None:
        self._session("POST", "/url", {"url": Path(path).resolve().as_uri()})

    def run(self, script: str, *args):
        return self._session("POST", "/execute/sync", {"script": script, "args": list(args)})

    def console(self) -> list[dict]:
        """Console entries since the last call ({level, message, ...})."""
        return self._session("POST", "/se/log", {"type": "browser"}) or []

    def console_errors(self) -> list[str]:
        return [e["message"] for e in self.console() if e.get("level") == "SEVERE"]

    def screenshot(self, path: Path) -> None:
        Path(path).write_bytes(base64.b64decode(self._session("GET", "/screenshot")))

    def close(self) -> None:
        if self.session is not None:
            try:
                self._session("DELETE", "")
            except Exception:
                pass
            self.session = None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--screenshot", type=Path, required=True)
    parser.add_argument("--width", type=int, default=1100)
    parser.add_argument("--height", type=int, default=800)
    args = parser.parse_args(argv)
    found = find_chromium()
    if found is None:
        raise SystemExit("moa-lit: error: chromium and chromedriver are needed (Debian: apt-get install chromium chromium-driver)")
    with Browser(*found, width=args.width, height=args.height) as browser:
        browser.open(args.page)
        errors = browser.console_errors()
        browser.screenshot(args.screenshot)
    print(f"{args.screenshot}: screenshot of {args.page}; console errors: {len(errors)}")
    for e in errors:
        print(f"  {e}")


if __name__ == "__main__":
    main()
