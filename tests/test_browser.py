"""The built book in a real browser: every HTML page opened in headless Chromium.

The pages come from ``_build/html`` (or ``$ATAC_BOOK_HTML``); when that folder has no
``index.html`` the book is built first with the tiny ``ci`` profile (``book/build.py --profile
ci``). They are served from a local HTTP server on 127.0.0.1 (as GitHub Pages serves them, not as
``file://``) and opened, each in a fresh browser context (empty storage, as a first visit), in
Debian's Chromium (``/usr/bin/chromium``, or ``$ATAC_CHROMIUM``) driven by Playwright, which never
downloads a browser of its own. Per page:

* it loads with no console error, no uncaught exception, no failed request or HTTP error, and no
  request at all to another host (the book must work offline: every request leaving 127.0.0.1 is
  aborted and reported);
* every ``<img>`` of the article has loaded and is non-empty (``naturalWidth > 0``);
* no glue was left unresolved: no raw ``{glue}`` role text, no docutils system message or
  "problematic" node, no ``<IPython...object>`` repr where a value should be;
* every same-site link (``href``, anchors included) points at a file of the build, and its
  ``#fragment`` at an element id of the target page;
* its layout at a 1300 × 900 viewport: no table, image, figure, code block (``pre``) or child of a
  cell's output is wider than the article (``article.bd-article``): each one's right edge, and its
  scrollWidth from its left edge, stay within the article's clientWidth; a table inside a box that
  scrolls sideways counts with the box's scrollWidth, since a table that fits only by scrolling
  does not fit (:func:`overflows`; the report names each element and by how many px);
* a full-page PNG screenshot is written to ``_build/screenshots/<page path>.png`` (a build
  artefact, like ``_build/html``; ``$ATAC_SCREENSHOTS`` may name another folder).

The introduction's first screen (the top of the page at 1300 × 900) must show the measured answer:
the paragraph with the generated answer and, below it, the image of its figure, starting within the
screen.

Skipped, with the reason, when Playwright or Chromium is missing (``.ci/run`` installs both).
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urldefrag, urlsplit

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# Console messages that are accepted although they are errors: (page regex, message regex, why).
# Empty: the build is configured so that no page logs an error (see _config.yml: favicon, the
# theme's default colour mode, no sphinx-thebe). Add an entry only for something that cannot be
# fixed in the build, and say why here.
ALLOWED_CONSOLE_ERRORS: tuple[tuple[str, str, str], ...] = ()
GLUE_LEFTOVERS = (
    (re.compile(r"\{glue(?::\w+)?\}"), "raw {glue} role text"),
    (re.compile(r"<IPython\.[\w.]+ object>|<[\w.]+ object at 0x[0-9a-f]+>"),
     "an object repr where a glued value should be"),
)
PAGE_TIMEOUT_MS = 30_000
VIEWPORT = {"width": 1300, "height": 900}
INTRO = "book/executed/intro.html"
# the answer's opening words, as book/intro.md generates them (one of these, or no runs yet)
INTRO_ANSWERS = ("Yes, here.", "Not here, so far.", "Not shown here.", "No recorded ladder runs are here yet")


def _chromium() -> str | None:
    env = os.environ.get("ATAC_CHROMIUM", "").strip()
    for cand in ((env,) if env else CHROMIUM_CANDIDATES):
        if Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


def _html_dir() -> Path:
    env = os.environ.get("ATAC_BOOK_HTML", "").strip()
    return Path(env).resolve() if env else ROOT / "_build" / "html"


def _screenshot_dir() -> Path:
    env = os.environ.get("ATAC_SCREENSHOTS", "").strip()
    return Path(env).resolve() if env else ROOT / "_build" / "screenshots"


def _pages(html: Path) -> list[str]:
    """Every HTML page of the build, as paths relative to it (theme templates in _static left out)."""
    return sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                  if p.relative_to(html).parts[0] not in ("_static", "_sources", "_images"))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # no access log in the test output
        pass


@dataclass
class PageReport:
    page: str
    final_url: str = ""
    errors: list[str] = field(default_factory=list)          # console errors, exceptions, failed loads
    external: list[str] = field(default_factory=list)        # requests that left 127.0.0.1
    bad_images: list[str] = field(default_factory=list)
    n_images: int = 0
    glue: list[str] = field(default_factory=list)
    links: list[tuple[str, str]] = field(default_factory=list)  # (href as written, absolute URL)
    ids: set[str] = field(default_factory=set)
    screenshot: Path | None = None
    article_width: int | None = None                          # the article's clientWidth, px
    overflows: list[dict] = field(default_factory=list)      # elements wider than the article
    first_screen: dict | None = None                          # the introduction's top of page


_IMAGES_JS = """async (sel) => {
  const root = document.querySelector(sel) || document.body;
  const imgs = [...root.querySelectorAll('img')];
  for (const img of imgs) {
    img.loading = 'eager';
    try { await img.decode(); } catch (e) { /* reported below through naturalWidth */ }
  }
  return imgs.map(i => ({src: i.getAttribute('src') || '', complete: i.complete,
                         w: i.naturalWidth, h: i.naturalHeight}));
}"""
_GLUE_JS = """(sel) => {
  const root = document.querySelector(sel) || document.body;
  const bad = [...root.querySelectorAll('.system-message, .problematic, .pasted-text.error')]
      .map(e => (e.className + ': ' + e.innerText).slice(0, 200));
  return {text: root.innerText, bad: bad};
}"""
_LINKS_JS = """() => [...document.querySelectorAll('a[href]')]
    .map(a => [a.getAttribute('href'), a.href])"""
_IDS_JS = """() => [...document.querySelectorAll('[id]')].map(e => e.id)
    .concat([...document.querySelectorAll('a[name]')].map(a => a.name))"""
ARTICLE = "article.bd-article"
# Every table, image, figure, code block and child of a cell's output of the article, measured
# against the article's clientWidth: how far its right edge, or its left edge plus its scrollWidth
# (what it would need unscrolled), reaches past the article's right (padding) edge. A table counts
# with the scrollWidth of any box around it that scrolls sideways (the theme's and book.css' table
# wrappers): a table that fits only by scrolling is wider than the article.
_LAYOUT_JS = """(sel) => {
  const art = document.querySelector(sel);
  if (!art) return {width: null, items: []};
  const a = art.getBoundingClientRect();
  const right = a.left + art.clientLeft + art.clientWidth;
  const scrolls = (e) => ['auto', 'scroll'].includes(getComputedStyle(e).overflowX);
  const name = (e) => {
    let s = e.tagName.toLowerCase() + (e.id ? '#' + e.id : '');
    s += [...e.classList].slice(0, 3).map(c => '.' + c).join('');
    const text = (e.tagName === 'IMG' ? (e.getAttribute('src') || '') : (e.innerText || '')).trim();
    return s + (text ? ' "' + text.replace(/\\s+/g, ' ').slice(0, 60) + '"' : '');
  };
  const section = (e) => { const h = e.closest('section'); return h ? (h.id || '') : ''; };
  const seen = new Set(), items = [];
  for (const e of art.querySelectorAll('table, img, figure, pre, .cell_output > *')) {
    if (seen.has(e)) continue;
    seen.add(e);
    const r = e.getBoundingClientRect();
    if (r.width === 0 && r.height === 0) continue;            // not displayed (a closed toggle)
    let need = Math.max(r.right, r.left + e.scrollWidth);
    let via = scrolls(e) && e.scrollWidth > e.clientWidth ? 'itself' : '';
    if (e.tagName === 'TABLE') {
      for (let p = e.parentElement; p && p !== art; p = p.parentElement) {
        if (scrolls(p) && p.scrollWidth > p.clientWidth) {
          need = Math.max(need, p.getBoundingClientRect().left + p.scrollWidth);
          via = via || name(p).split(' ')[0];
        }
      }
    }
    const over = Math.round(need - right);
    if (over > 1) items.push({element: name(e), section: section(e), over: over,
                              width: Math.round(Math.max(r.width, e.scrollWidth)), scroller: via});
  }
  return {width: art.clientWidth, items: items};
}"""
_FIRST_SCREEN_JS = """(sel) => {
  window.scrollTo(0, 0);
  const art = document.querySelector(sel) || document.body;
  const img = art.querySelector('.cell_output img');
  if (!img) return {image: null, paragraphs: []};
  const r = img.getBoundingClientRect();
  const paragraphs = [...art.querySelectorAll('p')]
      .filter(p => p.getBoundingClientRect().bottom <= r.top && p.getBoundingClientRect().height > 0)
      .map(p => ({text: p.innerText, top: p.getBoundingClientRect().top}));
  return {image: {src: img.getAttribute('src'), top: r.top, bottom: r.bottom, width: r.width,
                  loaded: img.complete && img.naturalWidth > 0},
          paragraphs: paragraphs, viewport: window.innerHeight};
}"""


def overflows(page) -> tuple[int | None, list[dict]]:
    """The article's clientWidth on an open Playwright ``page`` and the elements wider than it:
    ``{"element", "section", "over" (px past the article's right edge), "width", "scroller"}``."""
    got = page.evaluate(_LAYOUT_JS, ARTICLE)
    return got["width"], got["items"]


def describe_overflows(page_path: str, width: int | None, items: list[dict]) -> list[str]:
    if width is None:
        return [f"{page_path}: no {ARTICLE} to measure against"]
    return [f"{page_path}: {i['element']} (section #{i['section']}) is {i['width']} px wide, "
            f"{i['over']} px past the article's {width} px"
            + ("" if not i["scroller"] else " (it fits only by scrolling)" if i["scroller"] == "itself" else
               f" (it fits only by scrolling in {i['scroller']})") for i in items]


@contextlib.contextmanager
def serve(directory: Path):
    """A local HTTP server of ``directory`` on 127.0.0.1; yields its base URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()


def launch(pw, chromium: str):
    return pw.chromium.launch(
        executable_path=chromium, headless=True,
        # the machine's network is closed: keep Chromium's own background traffic off
        args=["--disable-gpu", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--disable-quic", "--no-first-run", "--no-default-browser-check"])


def _build_book_if_missing(html: Path) -> None:
    if (html / "index.html").is_file():
        return
    if os.environ.get("ATAC_BOOK_HTML", "").strip():
        pytest.fail(f"ATAC_BOOK_HTML={html} holds no built book (no index.html)")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run([sys.executable, str(ROOT / "book" / "build.py"), "--profile", "ci"],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not (html / "index.html").is_file():
        pytest.fail("building the book (book/build.py --profile ci) failed:\n"
                    + (proc.stdout + proc.stderr)[-6000:])


@pytest.fixture(scope="module")
def browsed() -> dict[str, PageReport]:
    """Open every page of the built book once; the tests below check what was seen."""
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium installed (apt-get install chromium chromium-driver; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright not installed (pip install -e '.[dev]')")
    html = _html_dir()
    _build_book_if_missing(html)
    shots = _screenshot_dir()
    shutil.rmtree(shots, ignore_errors=True)
    shots.mkdir(parents=True)

    reports: dict[str, PageReport] = {}
    with serve(html) as base, sync_api.sync_playwright() as pw:
        browser = launch(pw, chromium)
        try:
            for page_path in _pages(html):
                reports[page_path] = _visit(browser, base, page_path, shots)
        finally:
            browser.close()
    return reports


def _visit(browser, base: str, page_path: str, shots: Path) -> PageReport:
    rep = PageReport(page_path)
    context = browser.new_context(viewport=VIEWPORT, service_workers="block")

    def route(r):
        url = r.request.url
        if url.startswith(base):
            r.continue_()
        else:
            rep.external.append(url)
            r.abort()

    context.route("**/*", route)
    page = context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.on("console", lambda m: rep.errors.append(f"console.{m.type}: {m.text} ({m.location.get('url', '')})")
            if m.type == "error" else None)
    page.on("pageerror", lambda e: rep.errors.append(f"uncaught exception: {e}"))
    page.on("requestfailed", lambda r: rep.errors.append(f"request failed: {r.url} ({r.failure})")
            if r.url.startswith(base) else None)
    page.on("response", lambda r: rep.errors.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    try:
        page.goto(base + page_path, wait_until="load")
        try:
            page.wait_for_load_state("networkidle", timeout=10_000)
        except Exception:  # a page that keeps polling is still checked below
            pass
        rep.final_url = page.url
        images = page.evaluate(_IMAGES_JS, ARTICLE)
        rep.n_images = len(images)
        rep.bad_images = [f"{i['src']} (complete={i['complete']}, {i['w']}x{i['h']})"
                          for i in images if not (i["complete"] and i["w"] > 0 and i["h"] > 0)]
        glue = page.evaluate(_GLUE_JS, ARTICLE)
        rep.glue = [f"{why}: ...{glue['text'][max(0, m.start() - 60):m.end() + 60]!r}..."
                    for rx, why in GLUE_LEFTOVERS for m in rx.finditer(glue["text"])]
        rep.glue += [f"docutils node {b}" for b in glue["bad"]]
        rep.links = [tuple(x) for x in page.evaluate(_LINKS_JS)]
        rep.ids = set(page.evaluate(_IDS_JS))
        rep.article_width, rep.overflows = overflows(page)
        if page_path == INTRO:
            rep.first_screen = page.evaluate(_FIRST_SCREEN_JS, ARTICLE)
        out = shots / (page_path[:-len(".html")] + ".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        rep.screenshot = out
    except Exception as exc:  # a timeout or a crash on one page: report it, go on with the others
        rep.errors.append(f"could not be checked: {type(exc).__name__}: {exc}")
    finally:
        context.close()
    return rep


def _allowed(page: str, message: str) -> bool:
    return any(re.search(p, page) and re.search(m, message) for p, m, _why in ALLOWED_CONSOLE_ERRORS)


# ----------------------------------------------------------------------------------------------
def test_every_page_was_opened(browsed):
    html = _html_dir()
    assert set(browsed) == set(_pages(html))
    for must in ("index.html", "book/executed/intro.html", "book/references.html", "search.html"):
        assert must in browsed, f"{must} missing from the build"
    toc_pages = [p for p in browsed if p.startswith("book/executed/")]
    assert toc_pages, "no executed chapter among the built pages"


def test_no_console_errors_and_nothing_from_other_hosts(browsed):
    problems = []
    for page, rep in browsed.items():
        problems += [f"{page}: {e}" for e in rep.errors if not _allowed(page, e)]
        problems += [f"{page}: request to another host (the book must load offline): {u}"
                     for u in rep.external]
    assert not problems, "\n".join(problems)


def test_article_images_are_loaded_and_non_empty(browsed):
    problems = [f"{page}: image not loaded or empty: {b}" for page, rep in browsed.items()
                for b in rep.bad_images]
    assert not problems, "\n".join(problems)
    # the chapters are figure-heavy: a build whose images vanished must not pass as "no bad images"
    chapters = {p: r.n_images for p, r in browsed.items() if p.startswith("book/executed/")}
    assert any(n > 0 for n in chapters.values()), f"no images in any chapter: {chapters}"


def test_no_missing_glue(browsed):
    problems = [f"{page}: {g}" for page, rep in browsed.items() for g in rep.glue]
    assert not problems, "\n".join(problems)


def test_internal_links_resolve(browsed):
    html = _html_dir()
    base = None
    for rep in browsed.values():
        if rep.final_url:
            parts = urlsplit(rep.final_url)
            base = f"{parts.scheme}://{parts.netloc}/"
            break
    assert base is not None
    problems, checked = [], 0
    for page, rep in browsed.items():
        for href, absolute in rep.links:
            if not absolute.startswith(base):
                continue  # another site (GitHub, Binder, Colab, docs): not this test's business
            checked += 1
            url, fragment = urldefrag(absolute)
            rel = unquote(urlsplit(url).path[len(urlsplit(base).path):])
            if rel == "" or rel.endswith("/"):
                rel += "index.html"
            target = html / rel
            if not target.is_file():
                problems.append(f"{page}: link {href!r} -> {rel} does not exist")
                continue
            fragment = unquote(fragment)
            if fragment:
                ids = browsed[rel].ids if rel in browsed else None
                if ids is None:
                    problems.append(f"{page}: link {href!r} has an anchor into {rel}, not a page of the book")
                elif fragment not in ids:
                    problems.append(f"{page}: link {href!r}: no element with id {fragment!r} in {rel}")
    assert checked > 0, "no internal links found at all"
    assert not problems, "\n".join(problems)


def test_screenshots_written(browsed):
    for page, rep in browsed.items():
        assert rep.screenshot is not None and rep.screenshot.is_file(), page
        head = rep.screenshot.read_bytes()[:8]
        assert head == b"\x89PNG\r\n\x1a\n", f"{rep.screenshot} is not a PNG"
        assert rep.screenshot.stat().st_size > 1000, f"{rep.screenshot} is (nearly) empty"


def test_nothing_is_wider_than_the_article(browsed):
    problems = []
    for page, rep in browsed.items():
        if rep.article_width is None and page in ("search.html", "genindex.html"):
            continue  # Sphinx's own pages: no article of the book
        problems += describe_overflows(page, rep.article_width, rep.overflows)
    assert not problems, f"at {VIEWPORT['width']} x {VIEWPORT['height']}:\n" + "\n".join(problems)


def test_intro_first_screen_shows_the_answer_and_its_figure(browsed):
    rep = browsed.get(INTRO)
    assert rep is not None and rep.first_screen is not None, f"{INTRO} was not measured"
    shot = rep.first_screen
    img = shot["image"]
    assert img is not None, f"{INTRO}: no figure in the article"
    assert img["loaded"], f"{INTRO}: the figure {img['src']} did not load"
    assert 0 <= img["top"] < VIEWPORT["height"], \
        f"{INTRO}: the figure starts at {img['top']:.0f} px, below the first screen ({VIEWPORT['height']} px)"
    answer = [p for p in shot["paragraphs"] if any(a in p["text"] for a in INTRO_ANSWERS)]
    assert answer, (f"{INTRO}: no paragraph above the figure holds the generated answer "
                    f"(one of {INTRO_ANSWERS}); above it: {[p['text'][:80] for p in shot['paragraphs']]}")


# ----------------------------------------------------------------------------------------------
# the layout check itself, on two tiny pages (no book needed)

_LAYOUT_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><style>
body { margin: 0; }
article.bd-article { width: 768px; margin: 40px; padding: 0 16px; }
</style></head><body><article class="bd-article"><h1>A page</h1>%s</article></body></html>"""


def _measure_tiny_page(tmp_path: Path, body: str) -> tuple[int | None, list[dict]]:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no Chromium installed (apt-get install chromium chromium-driver; .ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright not installed (pip install -e '.[dev]')")
    (tmp_path / "index.html").write_text(_LAYOUT_PAGE % body)
    with serve(tmp_path) as base, sync_api.sync_playwright() as pw:
        browser = launch(pw, chromium)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(base + "index.html", wait_until="load")
            return overflows(page)
        finally:
            browser.close()


def _table(width: int) -> str:
    return (f'<table style="width: {width}px; border-collapse: collapse"><tr><th>method</th><th>AUROC</th></tr>'
            '<tr><td>atac</td><td>0.901</td></tr></table>')


def test_layout_check_reports_a_table_wider_than_the_article(tmp_path):
    width, items = _measure_tiny_page(tmp_path, _table(1200))
    assert width == 768 + 2 * 16                       # clientWidth: the content and its padding
    lines = describe_overflows("index.html", width, items)
    assert len(items) == 1 and items[0]["element"].startswith("table"), lines
    assert abs(items[0]["over"] - (1200 - 768 - 16)) <= 1, lines  # from the padding's inner edge
    assert "px past the article's 800 px" in lines[0]


def test_layout_check_counts_a_table_that_only_fits_by_scrolling(tmp_path):
    """As a cell's output shows a table: in a wrapper that scrolls sideways; and a table made a
    scrolling block itself (display: block; overflow-x: auto)."""
    width, items = _measure_tiny_page(
        tmp_path, '<div class="cell_output"><div class="output text_html">'
        f'<div class="wrapper" style="overflow-x: auto; max-width: 100%">{_table(1200)}</div></div></div>'
        '<table style="display: block; overflow-x: auto; max-width: 100%"><tr>'
        + "".join(f"<td>{'x' * 40}</td>" for _ in range(10)) + "</tr></table>")
    lines = describe_overflows("index.html", width, items)
    # the two tables, not the output box around the first (its wrapper keeps the table inside)
    assert [i["element"].split(" ")[0] for i in items] == ["table", "table"], lines
    assert items[0]["scroller"] == "div.wrapper" and abs(items[0]["over"] - 416) <= 1, lines
    assert "fits only by scrolling in div.wrapper" in lines[0]
    assert items[1]["over"] > 100 and items[1]["width"] > width and items[1]["scroller"] == "itself", lines


def test_layout_check_passes_a_table_that_fits(tmp_path):
    body = (_table(600) + '<pre style="white-space: pre-wrap">' + "long line " * 200 + "</pre>"
            '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" style="width: 700px; height: 10px">')
    width, items = _measure_tiny_page(tmp_path, body)
    assert width == 800 and items == [], describe_overflows("index.html", width, items)
