"""Open a page in headless Chromium (Debian's `chromium`) and see what the browser made of it.

No DevTools client: `chromium --headless --dump-dom` prints the DOM after the load event, and
`--enable-logging=stderr --v=0` prints every console message (errors, CSP violations, failed loads,
uncaught exceptions) as an `INFO:CONSOLE` line on stderr. What only script can see (each image's
decoded size) is read by a probe script injected into a copy of the page: it writes its findings
into an attribute of <body> on load, which the dumped DOM carries. The copy's Content-Security-Policy
gets the probe's hash added to it and nothing else, so the page's own policy still holds for all
of the page.

Host names resolve to nothing (`--host-resolver-rules`): a page that tries to fetch from the
network fails to load it, and Chromium logs that on the console.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

#: Debian's package and binary; chromium-browser: Ubuntu's and older Debian's name
BINARIES = ("chromium", "chromium-browser")
#: What a console message looks like in Chromium's log (any level: the page has no script of its
#: own, so any message is something that went wrong)
CONSOLE = re.compile(r":INFO:CONSOLE[:(]")

PROBE = """window.addEventListener("load", () => {
  const imgs = [...document.images].map((i) => ({
    id: i.closest("figure") ? i.closest("figure").id : "", complete: i.complete,
    natural: [i.naturalWidth, i.naturalHeight], shown: [i.width, i.height]}));
  const svgs = [...document.querySelectorAll("svg")].map((s) => {
    const b = s.getBBox(); return {bbox: [b.width, b.height]}; });
  document.body.setAttribute("data-probe", JSON.stringify({imgs, svgs}));
});"""


def chromium() -> str:
    """The Chromium binary; a skip that says why, or a failure under CI (CI=true), without one."""
    for name in BINARIES:
        found = shutil.which(name)
        if found:
            return found
    why = "no chromium on PATH (Debian: apt-get install chromium; scripts/test installs it)"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI: {why}", pytrace=False)
    pytest.skip(why)


@dataclass
class Rendered:
    dom: str  # the DOM after load, serialised
    console: list[str]  # every console message Chromium logged
    probe: dict[str, Any]  # what the probe saw: imgs [{id, complete, natural, shown}], svgs [{bbox}]
    seconds: float


class _Body(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.probe: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body":
            self.probe = dict(attrs).get("data-probe")


def with_probe(page: str) -> str:
    """The page with PROBE before </body> and allowed by hash in its Content-Security-Policy."""
    digest = base64.b64encode(hashlib.sha256(PROBE.encode()).digest()).decode()
    csp = re.compile(r'(<meta http-equiv="Content-Security-Policy" content=")([^"]*)(")')
    if not csp.search(page):
        raise AssertionError("the page has no Content-Security-Policy meta tag")
    page = csp.sub(lambda m: f"{m[1]}{m[2]}; script-src &#x27;sha256-{digest}&#x27;{m[3]}", page, count=1)
    return page.replace("</body>", f"<script>{PROBE}</script></body>", 1)


def render(page: Path, timeout: float = 120) -> Rendered:
    """Load `page` (a copy with the probe) in headless Chromium; its DOM, console and probe."""
    binary = chromium()
    with tempfile.TemporaryDirectory(prefix="lab-chromium-") as tmp:
        probed = Path(tmp) / page.name
        probed.write_text(with_probe(page.read_text(encoding="utf-8")), encoding="utf-8")
        argv = [
            binary,
            "--headless",
            "--no-sandbox",  # as root Chromium refuses to start with its sandbox
            "--disable-gpu",
            f"--user-data-dir={tmp}/profile",
            "--no-first-run",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            probed.as_uri(),
        ]
        started = time.monotonic()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        seconds = time.monotonic() - started
    if out.returncode != 0:
        raise AssertionError(f"chromium exited {out.returncode}: {out.stderr[-3000:]}")
    body = _Body()
    body.feed(out.stdout)
    if body.probe is None:
        raise AssertionError(f"the probe did not run (no data-probe on <body>); stderr: {out.stderr[-3000:]}")
    console = [line for line in out.stderr.splitlines() if CONSOLE.search(line)]
    return Rendered(out.stdout, console, json.loads(body.probe), seconds)
