"""The days as a website: `python -m common.site build` renders the README (the home page),
every day's notebook with its saved outputs (never re-executed) and CONTRIBUTING.md into
`_site/`, with Sphinx, MyST-NB and the Sphinx Book Theme; everything else it writes goes to
a temporary folder. Everything a page loads is served from the site itself: MathJax comes
from the npm registry once (`npm pack`, cached under `.cache/`) and is copied in, so that
the maths renders without the internet.

Open `_site/index.html` in a browser, or serve the folder: `python -m http.server -d _site`.
"""
import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
from pathlib import Path

from common.notebooks import REPOSITORY_ROOT, day_notebooks

SITE = REPOSITORY_ROOT / "_site"
CACHE = REPOSITORY_ROOT / ".cache" / "site"
MATHJAX_VERSION = "3.2.2"
MATHJAX = f"mathjax-{MATHJAX_VERSION}/tex-chtml.js"  # relative to the site's _static
COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
# The notebooks' "Open in Colab" badge, drawn here: the site loads nothing from elsewhere.
BADGE_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20" role="img"
 aria-label="Open in Colab"><rect width="117" height="20" rx="3" fill="#555"/>
<rect x="30" width="87" height="20" rx="3" fill="#f9ab00"/><rect x="30" width="6" height="20"
 fill="#f9ab00"/><circle cx="12" cy="10" r="5" fill="none" stroke="#f9ab00" stroke-width="3"/>
<circle cx="21" cy="10" r="5" fill="none" stroke="#e8710a" stroke-width="3"/>
<text x="74" y="14" fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11"
 text-anchor="middle">Open in Colab</text></svg>
"""


def repository_url() -> str:
    """The one setting for the repository's address (pyproject.toml's [project.urls])."""
    with open(REPOSITORY_ROOT / "pyproject.toml", "rb") as file:
        return tomllib.load(file)["project"]["urls"]["Repository"]


def mathjax_folder() -> Path:
    """MathJax's `es5` folder, fetched from the npm registry on first use and cached."""
    folder = CACHE / f"mathjax-{MATHJAX_VERSION}"
    if (folder / "tex-chtml.js").is_file():
        return folder
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("the site's maths needs MathJax, fetched once with npm: install "
                           "Node.js (npm), or copy MathJax's es5 folder to " + str(folder))
    CACHE.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=CACHE))  # its own: builds may run side by side
    try:
        fetched = subprocess.run([npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--silent"],
                                 cwd=scratch, capture_output=True, text=True)
        if fetched.returncode:
            raise RuntimeError(f"npm could not fetch mathjax@{MATHJAX_VERSION}: "
                               f"{fetched.stderr.strip()}")
        (tarball,) = scratch.glob("mathjax-*.tgz")
        with tarfile.open(tarball) as archive:
            members = [m for m in archive.getmembers()
                       if m.name.startswith("package/es5/") and (m.isfile() or m.isdir())
                       and ".." not in Path(m.name).parts]
            if hasattr(tarfile, "data_filter"):  # Python 3.11.4 and later
                archive.extractall(scratch, members=members, filter="data")
            else:  # the members are plain files and folders under package/es5/ (above)
                archive.extractall(scratch, members=members)
        try:
            (scratch / "package" / "es5").rename(folder)  # whole or not at all
        except OSError:
            if not (folder / "tex-chtml.js").is_file():  # not another build's copy: a failure
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return folder


def other_bundles(folder: str, names: list[str]) -> list[str]:
    """MathJax's combined files that the site does not load (SVG output, MathML input, the
    Node.js entry point): 14 of its 24 MB. The components that `tex-chtml.js` loads on
    demand (TeX extensions, fonts, the menu's accessibility tools) stay."""
    if Path(folder).name != f"mathjax-{MATHJAX_VERSION}":
        return []
    return [name for name in names if name.endswith(".js") and name != Path(MATHJAX).name
            and name not in ("core.js", "loader.js", "startup.js", "latest.js")]


def table_of_contents() -> str:
    """sphinx-external-toc's file: the README as the root, then every day, then the guide."""
    days = "\n".join(f"- file: {notebook.relative_to(REPOSITORY_ROOT).with_suffix('')}"
                     for notebook in day_notebooks())
    return f"format: jb-book\nroot: README\nchapters:\n{days}\n- file: CONTRIBUTING\n"


def jupyter_anchor(title: str) -> str:
    """A heading's anchor as Jupyter and GitHub's notebook viewer make it: its text with
    spaces as hyphens, so that a notebook's in-page links work on the site too."""
    return title.strip().replace(" ", "-")


CONFIGURATION = '''
import sys
sys.path.insert(0, {here!r})
from common.site import setup_links  # noqa: E402

project = "100 Days of Deep Learning"
author = "100 Days of Deep Learning contributors"
extensions = ["myst_nb", "sphinx_external_toc"]
external_toc_path = {toc!r}
external_toc_exclude_missing = True  # only the pages of the table of contents
root_doc = "README"
nb_execution_mode = "off"   # the committed outputs are the page: nothing is re-executed
myst_enable_extensions = ["dollarmath"]
myst_heading_anchors = 3
myst_heading_slug_func = "common.site.jupyter_anchor"
mathjax_path = {mathjax!r}
html_theme = "sphinx_book_theme"
html_context = {{"default_mode": "light"}}  # no stored choice yet: no "invalid mode" error
html_title = project
html_static_path = [{static!r}]
html_css_files = ["site.css"]
html_theme_options = {{
    "repository_url": {url!r},
    "repository_branch": "main",
    "path_to_docs": "",
    "use_repository_button": True,
    "use_download_button": True,
    "launch_buttons": {{"colab_url": "https://colab.research.google.com"}},
}}
exclude_patterns = ["_site", ".cache", "build", "dist", "**/.ipynb_checkpoints", ".*"]


def setup(app):
    setup_links(app, {url!r})
'''

CSS = """
/* A long display equation scrolls inside the column instead of being cut at its edge. */
mjx-container[display="true"] { overflow-x: auto; overflow-y: hidden; max-width: 100%; }
"""


def setup_links(app, url: str) -> None:
    """Links to the repository's own notebooks on GitHub (each notebook's "Previous" and
    "Next") become links to the site's pages, so that a reader stays on the site; the Colab
    badge's picture comes from the site's own copy."""
    from docutils import nodes

    pattern = re.compile(re.escape(url)
                         + r"/blob/main/(day\w+/day\w+|README|CONTRIBUTING)\.(?:ipynb|md)(#.*)?$")

    def to_pages(app, doctree, docname):
        depth = docname.count("/")
        for image in doctree.findall(nodes.image):
            if image.get("uri") == COLAB_BADGE:
                image["uri"] = "../" * depth + "_static/colab-badge.svg"
        for reference in doctree.findall(nodes.reference):
            match = pattern.match(reference.get("refuri", ""))
            if match and match[1] in app.env.all_docs:
                reference["refuri"] = (app.builder.get_relative_uri(docname, match[1])
                                       + (match[2] or ""))

    app.connect("doctree-resolved", to_pages)


def build(out: Path = SITE, strict: bool = True) -> Path:
    """Build the site into `out` (replacing it) and return the path of its home page."""
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise RuntimeError(f"{out} is a file; give a folder for the site")
    if out.exists() and any(out.iterdir()) and not (out / ".nojekyll").is_file():
        raise RuntimeError(f"{out} holds files that are not a site built here; it would be "
                           f"replaced: give an empty or new folder")
    mathjax = mathjax_folder()
    with tempfile.TemporaryDirectory() as scratch:
        # Sphinx's doctrees, MyST-NB's `jupyter_execute` (written beside the output folder)
        # and the configuration all stay in the scratch folder; only the site is moved out.
        scratch = Path(scratch)
        config, html = scratch / "config", scratch / "site" / "html"
        static = config / "_static"
        static.mkdir(parents=True)
        (static / "site.css").write_text(CSS)
        (static / "colab-badge.svg").write_text(BADGE_SVG)
        shutil.copytree(mathjax, static / f"mathjax-{MATHJAX_VERSION}", ignore=other_bundles)
        (config / "_toc.yml").write_text(table_of_contents())
        (config / "conf.py").write_text(CONFIGURATION.format(
            here=str(REPOSITORY_ROOT), toc=str(config / "_toc.yml"), mathjax=MATHJAX,
            static=str(static), url=repository_url()))
        arguments = ["-b", "html", "-c", str(config), "-d", str(scratch / "doctrees"), "-q",
                     str(REPOSITORY_ROOT), str(html)]
        if strict:
            arguments[:0] = ["-W", "--keep-going"]  # a broken link or reference fails
        # In a process of its own: sphinx-external-toc walks every object of the process
        # (gc.get_objects) and fails on a dead weak reference that a caller, such as a test
        # session, may hold.
        sphinx = subprocess.run([sys.executable, "-m", "sphinx", *arguments],
                                capture_output=True, text=True)
        if sphinx.returncode:
            raise RuntimeError(f"the site's build failed:\n{sphinx.stderr.strip()[-3000:]}")
        (html / ".nojekyll").touch()  # GitHub Pages: serve _static as it is
        # A site's address opens index.html; the home page is the README's
        (html / "index.html").write_text('<!DOCTYPE html><meta charset="utf-8">'
                                         '<meta http-equiv="refresh" content="0; '
                                         'url=README.html"><a href="README.html">100 Days of '
                                         'Deep Learning</a>\n')
        shutil.rmtree(out, ignore_errors=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(html, out)
    return out / "README.html"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m common.site", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build"])
    parser.add_argument("--out", type=Path, default=SITE, help="the folder (default: _site)")
    options = parser.parse_args(argv)
    try:
        home = build(options.out)
    except RuntimeError as error:
        parser.exit(1, f"{parser.prog}: {error}\n")
    print(f"built {home}", file=sys.stderr)


if __name__ == "__main__":
    main()
