"""Check the built documentation site in a real headless browser, with the network off.

Usage: ``python scripts/docs_check.py SITE_DIR`` (``make docs-check`` builds the site first).

The site is served from 127.0.0.1 and every page is opened in headless Chromium (Debian's
``chromium`` and ``chromium-driver`` packages, driven by Selenium). Chromium's host resolver
maps every other host to "not found", and when the process may create a network namespace
(root, ``unshare -n``) the whole check runs in one with only the loopback interface. A page
fails when:

- any request leaves 127.0.0.1 (a CDN script, a web font...);
- the browser console has an error (an uncaught exception, a resource that failed to load);
- MathJax did not typeset every formula: raw ``\\(``, ``\\[`` or ``$$`` is left in the text
  outside code, or an ``.arithmatex`` element has no rendered ``mjx-container``;
- an internal link (``href`` to the same site) points to a missing file or a missing ``#id``.

Exit status 0 when every page passes; otherwise the problems are listed, one per line.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlparse

MATHJAX_TIMEOUT_S = 20

# Text of the rendered article outside code, and whether every formula was typeset.
PAGE_PROBE = """
const done = arguments[arguments.length - 1];
const finish = () => {
  const art = document.querySelector('article') || document.body;
  const clone = art.cloneNode(true);
  clone.querySelectorAll('pre, code, mjx-container, script, style').forEach(e => e.remove());
  const math = Array.from(document.querySelectorAll('.arithmatex'));
  const unrendered = math.filter(e => !e.querySelector('mjx-container')).length;
  const hrefs = Array.from(document.querySelectorAll('a[href]')).map(a => a.href);
  done({loaded: !!document.querySelector('.md-content'),
        text: clone.textContent, math: math.length, unrendered: unrendered, hrefs: hrefs,
        mathjax: !!(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise)});
};
if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
  window.MathJax.startup.promise.then(() => window.MathJax.typesetPromise ?
    window.MathJax.typesetPromise() : null).then(finish, finish);
} else { finish(); }
"""


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)


@functools.lru_cache(maxsize=None)
def _ids_of(path: Path) -> frozenset[str]:
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(site: Path) -> tuple[http.server.ThreadingHTTPServer, int]:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", _free_port()), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = shutil.which("chromedriver")
    if not browser or not driver_bin:
        raise SystemExit("docs-check needs Chromium and its driver: "
                         "apt-get update && apt-get install -y chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
                 "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--window-size=1280,900"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver_bin), options=opts)


def _requests(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def check_site(site: Path, shot_dir: Path | None = None) -> list[str]:
    site = site.resolve()
    pages = sorted(p for p in site.rglob("*.html") if p.name != "404.html")
    if not pages:
        return [f"{site}: no HTML pages (build the site first: make docs)"]
    server, port = _serve(site)
    base = f"http://127.0.0.1:{port}/"
    problems: list[str] = []
    driver = _driver()
    driver.set_script_timeout(MATHJAX_TIMEOUT_S)
    try:
        for page in pages:
            rel = page.relative_to(site).as_posix()
            url = urljoin(base, rel)
            driver.get_log("performance")  # drop what earlier pages logged
            driver.get(url)
            probe = driver.execute_async_script(PAGE_PROBE)
            if not probe["loaded"]:
                problems.append(f"{rel}: the page did not load ({driver.title!r})")
                continue
            if shot_dir is not None:
                driver.save_screenshot(str(shot_dir / (rel.replace("/", "_") + ".png")))
            for line in driver.get_log("browser"):
                if line.get("level") == "SEVERE":
                    problems.append(f"{rel}: console error: {line['message'][:300]}")
            for req in _requests(driver):
                host = urlparse(req).hostname
                if urlparse(req).scheme in ("http", "https", "ws", "wss") and host != "127.0.0.1":
                    problems.append(f"{rel}: request leaves the site: {req[:200]}")
            if probe["math"] and not probe["mathjax"]:
                problems.append(f"{rel}: MathJax did not load ({probe['math']} formulas)")
            if probe["unrendered"]:
                problems.append(f"{rel}: {probe['unrendered']} of {probe['math']} formulas "
                                "not typeset")
            for raw in ("\\(", "\\[", "$$"):
                at = probe["text"].find(raw)
                if at >= 0:
                    problems.append(f"{rel}: raw TeX {raw!r} in the text: "
                                    f"{probe['text'][max(0, at - 40):at + 60]!r}")
            for href in probe["hrefs"]:
                problems.extend(_link_problems(rel, href, base, site))
    finally:
        driver.quit()
        server.shutdown()
    return sorted(set(problems))


def _link_problems(rel: str, href: str, base: str, site: Path) -> list[str]:
    if not href.startswith(base):
        return []  # external (none expected offline) or javascript:/mailto:
    target, frag = urldefrag(href)
    path = unquote(urlparse(target).path).lstrip("/")
    file = site / path
    if file.is_dir():
        file = file / "index.html"
    if not file.exists():
        return [f"{rel}: dead link {href[len(base) - 1:]}"]
    if frag and file.suffix == ".html" and unquote(frag) not in _ids_of(file):
        return [f"{rel}: link to a missing anchor {href[len(base) - 1:]}"]
    return []


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    site = Path(argv[0])
    # Network off for real when we may: rerun ourselves in a namespace with only loopback.
    if os.environ.get("EBM_DOCS_CHECK_NETNS") is None and shutil.which("unshare") \
            and subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode == 0:
        env = {**os.environ, "EBM_DOCS_CHECK_NETNS": "1"}
        cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "sh",
               sys.executable, *sys.argv]
        return subprocess.run(cmd, env=env).returncode
    shots = os.environ.get("DOCS_CHECK_SCREENSHOTS")  # a folder: keep a screenshot per page
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
    problems = check_site(site, Path(shots) if shots else None)
    pages = len([p for p in site.rglob("*.html") if p.name != "404.html"])
    netns = "network namespace with loopback only" if os.environ.get("EBM_DOCS_CHECK_NETNS") \
        else "external hosts unresolvable"
    if problems:
        print("\n".join(problems))
        print(f"docs-check: {len(problems)} problem(s) in {pages} pages ({netns})")
        return 1
    print(f"docs-check: {pages} pages OK: maths typeset, no console error, no request off the "
          f"site, every internal link and anchor resolves ({netns})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
