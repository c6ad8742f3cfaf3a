"""The website (`python -m common.site build`) in a real browser: Debian's Chromium, driven
headless by Playwright, reads every page from a server on 127.0.0.1 and is refused every
other address. A page fails if raw TeX shows outside code, MathJax reports an error, a figure
is missing or does not load, a script fails, or it loads anything from elsewhere; and the
"next" links must walk from the home page through every day in order. Each check is shown
to fail on a site spoiled on purpose.

Needs Chromium (`apt-get install chromium`), Playwright, and npm for MathJax's first fetch;
without them the tests are skipped, except under CI (`CI` set, as `.ci/run` does), where
they fail: CI always runs the check."""

import contextlib
import functools
import http.server
import json
import os
import re
import shutil
import threading
import weakref
from pathlib import Path
from urllib.parse import urljoin

import pytest

from common.notebooks import REPOSITORY_ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import sync_playwright
except ImportError:
    sync_playwright = None
MISSING = [name for name, present in (("chromium", CHROMIUM), ("playwright", sync_playwright),
                                      ("npm", shutil.which("npm"))) if not present]
if MISSING and os.environ.get("CI"):
    raise RuntimeError(f"CI must run the website's browser check: install {MISSING}")
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs {MISSING}")

# Visible text outside code, maths and scripts: where unrendered TeX would show.
VISIBLE_PROSE = """() => {
  const skip = new Set(["PRE", "CODE", "SCRIPT", "STYLE", "MJX-CONTAINER", "TEXTAREA"]);
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
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
# TeX delimiters or commands in prose; every maths element typeset by MathJax.
TEX = r"\\[()\[\]]|\\[A-Za-z]{2,}\b|\$\$"
UNTYPESET = """() => [...document.querySelectorAll(".math")]
  .filter(e => !e.querySelector("mjx-container")).length"""
# MathJax's errors: an error box, or (its `noundefined` extension) an unknown macro in red.
MATHJAX_ERRORS = """() => document.querySelectorAll(
  'mjx-merror, mjx-container mjx-mtext[style*="color: red"]').length"""
# A display equation wider than the column that cannot scroll: its end is cut off.
CLIPPED_EQUATIONS = """() => [...document.querySelectorAll('mjx-container[display="true"]')]
  .filter(e => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === "visible")
  .length"""
# The notebooks' figures: the PNG outputs, which MyST-NB writes to the site's _images.
FIGURES = """() => [...document.querySelectorAll('img[src*="_images/"]')]
  .map(i => i.complete && i.naturalWidth > 0)"""


def day_pages() -> list[str]:
    """Every day's page, in day order, found here from the folders' numbers (not from the
    site's own list, so that a wrong order there is caught)."""
    notebooks = REPOSITORY_ROOT.glob("day*/day*.ipynb")
    ordered = sorted(notebooks, key=lambda p: int(re.match(r"day(\d+)", p.parent.name)[1]))
    return [str(p.relative_to(REPOSITORY_ROOT).with_suffix("")) for p in ordered]


def expected_figures(page_name: str) -> int:
    """The PNG outputs saved in the notebook behind a page (0 for other pages)."""
    notebook = REPOSITORY_ROOT / f"{page_name}.ipynb"
    if not notebook.is_file():
        return 0
    cells = json.loads(notebook.read_text())["cells"]
    return sum("image/png" in output.get("data", {})
               for cell in cells for output in cell.get("outputs", []))


@contextlib.contextmanager
def browser_on(folder):
    """A Chromium page that may load only from `folder`, served on 127.0.0.1; yields
    (page, base address, problems), where loads from elsewhere, script errors and console
    errors are recorded, each with the page it happened on."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    problems = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM,
                                                 args=["--no-sandbox"])
            page = browser.new_page()

            def where():
                return page.url.removeprefix(base)

            def only_here(route):
                if route.request.url.startswith(base):
                    route.continue_()
                else:
                    problems.append(f"{where()}: loads {route.request.url} from elsewhere")
                    route.abort()

            page.route("**/*", only_here)
            page.on("pageerror", lambda error: problems.append(f"{where()}: script error "
                                                               f"{error}"))
            page.on("console", lambda message: problems.append(
                f"{where()}: console error {message.text}") if message.type == "error" else None)
            yield page, base, problems
            browser.close()
    finally:
        server.shutdown()
        server.server_close()


def check_page(page, base: str, address: str, problems: list[str]) -> str | None:
    """Open `address`, let its maths and scripts finish, record what is wrong with it in
    `problems`; return the address its "next" link leads to (None on the last page)."""
    page.goto(address, wait_until="load")
    page.evaluate("() => window.MathJax && MathJax.startup && MathJax.startup.promise")
    page.wait_for_load_state("networkidle")  # late fonts, late scripts
    page.wait_for_timeout(200)
    name = page.url.removeprefix(base).split("#")[0].removesuffix(".html")
    for tex in sorted(set(re.findall(TEX, page.evaluate(VISIBLE_PROSE))))[:3]:
        problems.append(f"{name}: raw TeX {tex!r} is visible")
    for check, what in ((UNTYPESET, "maths elements not typeset"),
                        (MATHJAX_ERRORS, "MathJax errors"),
                        (CLIPPED_EQUATIONS, "display equations cut at the column")):
        count = page.evaluate(check)
        if count:
            problems.append(f"{name}: {count} {what}")
    figures = page.evaluate(FIGURES)
    if not all(figures):
        problems.append(f"{name}: {figures.count(False)} figures fail to load")
    if len(figures) != expected_figures(name):
        problems.append(f"{name}: {len(figures)} figures for the notebook's "
                        f"{expected_figures(name)}")
    following = page.locator("a.right-next")
    if not following.count():
        return None
    address = urljoin(page.url, following.first.get_attribute("href"))
    if not address.startswith(base):
        problems.append(f"{name}: the next link leaves the site for {address}")
        return None
    return address


def walk(folder) -> tuple[list[str], list[str]]:
    """Every problem on the site in `folder`, and the pages visited from its home by the
    "next" links."""
    visited = []
    with browser_on(folder) as (page, base, problems):
        page.goto(base + "index.html")  # the site's address leads to the home page
        page.wait_for_url(base + "README.html")
        address = page.url
        while address and len(visited) < 10_000:
            address = check_page(page, base, address, problems)
            visited.append(page.url.removeprefix(base).split("#")[0].removesuffix(".html"))
    return problems, visited


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from common.site import build

    out = tmp_path_factory.mktemp("site") / "_site"
    build(out)
    return out


def test_every_page_renders_its_maths_and_figures_and_the_next_links_walk_the_days(site):
    problems, visited = walk(site)
    assert visited == ["README", *day_pages(), "CONTRIBUTING"], visited
    assert problems == []


def spoiled(site: Path, folder: Path, page: str, old: str, new: str) -> Path:
    """A copy of the site in `folder` whose `page` has `old` (once or more) replaced."""
    copy = folder / "site"
    shutil.copytree(site, copy)
    html = copy / f"{page}.html"
    text = html.read_text()
    assert old in text, f"{old!r} is not on {page}"
    html.write_text(text.replace(old, new))
    return copy


def problems_on(folder: Path, page: str) -> list[str]:
    with browser_on(folder) as (browser_page, base, problems):
        check_page(browser_page, base, f"{base}{page}.html", problems)
    return problems


def test_the_check_fails_without_mathjax(site, tmp_path):
    broken = tmp_path / "site"
    shutil.copytree(site, broken)
    for folder in (broken / "_static").glob("mathjax-*"):
        shutil.rmtree(folder)
    problems = problems_on(broken, "day05_vit_encoder/day05_vit_encoder")
    assert any("raw TeX" in p for p in problems) and any("not typeset" in p for p in problems)
    assert any("console error" in p for p in problems), problems  # the missing script


DAY = "day13_detection/day13_detection"
BODY = '<article class="bd-article">'


@pytest.mark.parametrize("old, new, expected", [
    (BODY, BODY + r'<p>a paragraph whose $z_\ell = x$ Markdown left raw</p>', "raw TeX"),
    (BODY, BODY + r'<p><span class="math notranslate nohighlight">\(\softmax(x)\)</span></p>',
     "MathJax errors"),
    (BODY, BODY + "<script>setTimeout(() => { throw new Error('late') }, 100)</script>",
     "script error"),
    (BODY, BODY + '<img src="https://example.com/picture.png">', "from elsewhere"),
    ('src="../_images/', 'src="../_images/missing-', "fail to load"),
], ids=["raw TeX", "unknown macro", "late script error", "external load", "broken figure"])
def test_each_check_fails_on_a_page_spoiled_on_purpose(site, tmp_path, old, new, expected):
    assert not problems_on(site, DAY)
    problems = problems_on(spoiled(site, tmp_path, DAY, old, new), DAY)
    assert any(expected in p for p in problems), problems


def test_a_missing_figure_and_a_wrong_order_are_caught(site, tmp_path):
    figure = re.search(r'<img[^>]*src="\.\./_images/[^"]*"[^>]*>',
                       (site / f"{DAY}.html").read_text())[0]
    problems = problems_on(spoiled(site, tmp_path / "a", DAY, figure, ""), DAY)
    assert any("figures for the notebook's" in p for p in problems), problems
    # Day 13's "next" link gone: the walk stops short of the guide
    (tmp_path / "b").mkdir()
    looped = spoiled(site, tmp_path / "b", DAY, 'class="right-next"\n',
                     'class="right-next-disabled"\n')
    _, visited = walk(looped)
    assert visited[-1] == DAY and "CONTRIBUTING" not in visited


def test_a_dead_weak_reference_in_the_caller_does_not_break_the_build(tmp_path):
    """sphinx-external-toc walks every live object of the process that runs Sphinx, and a
    dead weak proxy among them (as a busy test session holds) once failed CI's build: the
    build runs Sphinx in a process of its own."""
    from common.site import build

    class Gone:
        pass

    thing = Gone()
    dead = [weakref.proxy(thing)]
    del thing
    assert build(tmp_path / "site").is_file() and len(dead) == 1
