"""The website (`python -m common.site build`) in a real browser: Debian's Chromium, driven
headless by Playwright, reads every page from a server on 127.0.0.1 and is refused every
other address. A page fails if raw TeX shows outside code, MathJax reports an error, a figure
is missing or does not load, a script fails, or it loads anything from elsewhere; and the
"next" links must walk from the home page through every day in order. Skipped where Chromium
or Playwright is missing; `.ci/run` installs both, so CI always runs it."""

import contextlib
import functools
import http.server
import json
import re
import shutil
import threading

import pytest

from common.notebooks import REPOSITORY_ROOT, day_notebooks

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None
pytestmark = pytest.mark.skipif(CHROMIUM is None or sync_playwright is None,
                                reason="needs Chromium (apt-get install chromium) and playwright")

# Visible text outside code, maths and scripts: where a TeX command would show unrendered.
VISIBLE_PROSE = """() => {
  const skip = new Set(["PRE", "CODE", "SCRIPT", "STYLE", "MJX-CONTAINER", "TEXTAREA"]);
  const walker = document.createTreeWalker(document.querySelector("main") || document.body,
                                           NodeFilter.SHOW_TEXT);
  const parts = [];
  while (walker.nextNode()) {
    let node = walker.currentNode.parentElement, hidden = false;
    for (; node; node = node.parentElement) {
      if (skip.has(node.tagName)) { hidden = true; break; }
    }
    if (!hidden) parts.push(walker.currentNode.textContent);
  }
  return parts.join(" ");
}"""
# A display equation wider than the column that cannot scroll: its end is cut off.
CLIPPED_EQUATIONS = """() => [...document.querySelectorAll('mjx-container[display="true"]')]
  .filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === "visible")
  .length"""
TEX = r"\\(?:frac|mathrm|sum|begin|left|right|hat|lVert|underbrace|alpha|sigma|qquad)\b|\$\$"


@contextlib.contextmanager
def served(folder):
    """`folder` served on 127.0.0.1 at a free port, quietly; yields the base address."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def expected_figures(page_name: str) -> int:
    """The PNG outputs saved in the notebook behind a page (0 for other pages)."""
    notebook = REPOSITORY_ROOT / f"{page_name}.ipynb"
    if not notebook.is_file():
        return 0
    cells = json.loads(notebook.read_text())["cells"]
    return sum("image/png" in output.get("data", {})
               for cell in cells for output in cell.get("outputs", []))


def problems_in_site(folder) -> tuple[list[str], list[str]]:
    """Every problem a reader would meet on the site in `folder`, and the pages visited by
    following the "next" links from the home page."""
    problems, visited = [], []
    with served(folder) as base, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()

        def only_here(route):
            if route.request.url.startswith(base):
                route.continue_()
            else:
                problems.append(f"{visited[-1] if visited else '?'}: loads "
                                f"{route.request.url} from elsewhere")
                route.abort()

        page.route("**/*", only_here)
        page.on("pageerror", lambda error: problems.append(f"{visited[-1]}: script error "
                                                           f"{error}"))
        page.on("console", lambda message: problems.append(
            f"{visited[-1]}: console error {message.text}") if message.type == "error" else None)
        address = f"{base}/README.html"
        while address and len(visited) < 100:
            name = address.removeprefix(base + "/").split("#")[0].removesuffix(".html")
            visited.append(name)
            page.goto(address, wait_until="load")
            page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
            prose = page.evaluate(VISIBLE_PROSE)
            for tex in sorted(set(re.findall(TEX, prose)))[:3]:
                problems.append(f"{name}: raw TeX {tex!r} is visible")
            errors = page.locator("mjx-merror").count()
            if errors:
                problems.append(f"{name}: MathJax reports {errors} errors")
            clipped = page.evaluate(CLIPPED_EQUATIONS)
            if clipped:
                problems.append(f"{name}: {clipped} display equations are cut at the column")
            images = page.evaluate("() => [...document.querySelectorAll('main img')].map("
                                   "i => i.complete && i.naturalWidth > 0)")
            if not all(images):
                problems.append(f"{name}: {images.count(False)} figures fail to load")
            if len(images) < expected_figures(name):
                problems.append(f"{name}: {len(images)} figures of the notebook's "
                                f"{expected_figures(name)}")
            following = page.locator("a.right-next")
            address = (base + "/" + following.first.get_attribute("href").lstrip("./")
                       if following.count() else None)
            if address and not address.startswith(base):
                problems.append(f"{name}: the next link leaves the site: {address}")
                address = None
        browser.close()
    return problems, visited


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from common.site import build

    out = tmp_path_factory.mktemp("site") / "_site"
    build(out)
    return out


def test_every_page_renders_its_maths_and_figures_and_the_next_links_walk_the_days(site):
    problems, visited = problems_in_site(site)
    days = [str(n.relative_to(REPOSITORY_ROOT).with_suffix("")) for n in day_notebooks()]
    assert visited == ["README", *days, "CONTRIBUTING"], visited
    assert problems == []


def test_the_check_fails_without_mathjax(site, tmp_path):
    broken = tmp_path / "site"
    shutil.copytree(site, broken)
    for folder in (broken / "_static").glob("mathjax-*"):
        shutil.rmtree(folder)
    problems, _ = problems_in_site(broken)
    assert any("raw TeX" in problem for problem in problems), problems
