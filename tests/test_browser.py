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
* a full-page PNG screenshot is written to ``_build/screenshots/<page path>.png`` (a build
  artefact, like ``_build/html``; ``$ATAC_SCREENSHOTS`` may name another folder).

Skipped, with the reason, when Playwright or Chromium is missing (``.ci/run`` installs both).
"""

from __future__ import annotations

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

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(html)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}/"
    reports: dict[str, PageReport] = {}
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium, headless=True,
                # the machine's network is closed: keep Chromium's own background traffic off
                args=["--disable-gpu", "--disable-background-networking", "--disable-component-update",
                      "--disable-sync", "--disable-quic", "--no-first-run", "--no-default-browser-check"])
            try:
                for page_path in _pages(html):
                    reports[page_path] = _visit(browser, base, page_path, shots)
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return reports


def _visit(browser, base: str, page_path: str, shots: Path) -> PageReport:
    rep = PageReport(page_path)
    context = browser.new_context(viewport={"width": 1280, "height": 900}, service_workers="block")

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
