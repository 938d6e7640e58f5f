#!/usr/bin/env python
"""Build the book: execute every notebook chapter with papermill, then build the HTML.

Usage (from anywhere; ``make book`` calls this with the .venv's python)::

    python book/build.py --profile default|ci|paper [--only CHAPTER] [--no-html]

For each chapter of :data:`CHAPTERS`:

1. ``book/<name>.md`` (a MyST-markdown notebook, jupytext) is converted to a temporary ``.ipynb``;
2. papermill executes it with the ``python3`` kernel, working directory ``book/`` (for every
   chapter, also those in sub-folders such as ``book/ladder/``), and the parameters
   :func:`chapter_params` takes from ``book/params/<profile>.yaml`` for the chapter, plus
   ``profile`` (and ``out_dir`` = ``_build/runs/<profile>/<name>`` unless the profile names one).
   Before any chapter runs, every chapter must have a cell tagged ``parameters`` and the profile
   may set only parameters that cell has (:func:`check_profile`);
3. the executed notebook is written to ``book/executed/<name>.ipynb``, the file the table of
   contents points at. On a cell error the executed notebook is kept as
   ``book/executed/<name>.failed.ipynb`` (the execution report: it shows the failing cell and its
   traceback), the build stops, and the exit status is 1.

Then ``jupyter-book build . -W --keep-going --all`` builds ``_build/html`` from the repository root;
any Sphinx warning fails the build. Timings (and the values each chapter glued) are written to
``_build/timings.json``. Every tool runs from the environment of the Python running this script
(``sys.executable``'s ``bin`` folder).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
EXECUTED = BOOK / "executed"
PARAMS = BOOK / "params"
BUILD = ROOT / "_build"
# Notebook chapters, in book/<name>.md, in the order of the table of contents, which lists them as
# book/executed/<name>. A name may hold a folder ("ladder/step1_cutmix_bce").
CHAPTERS = [
    "intro",
    "data_preprocessing",
    "pseudo_anomalies",
    "step_by_step",
    "crop_threshold",
    "figure1",
    "ladder/step1_cutmix_bce",
    "ladder/step2_weighted_ce",
    "ladder/step3_deviation",
    "ladder/step4_gradcam_zoom",
    "ladder/step5_atac",
    "table1",
    "zoom_study",
    "generalisation",
    "errata",
    "run_it_yourself",
]
KERNEL = "python3"


class BuildError(RuntimeError):
    """A step of the book build failed; the message says which and where to look."""


def bin_dir() -> Path:
    """The ``bin`` folder of the running interpreter's environment (not resolved through links)."""
    return Path(sys.executable).parent


def tool_env() -> dict[str, str]:
    """The environment for subprocesses: this interpreter's ``bin`` first on PATH."""
    env = dict(os.environ)
    env["PATH"] = str(bin_dir()) + os.pathsep + env.get("PATH", "")
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # quiets a debugger warning in kernels
    return env


def _sections() -> set[str]:
    """The keys a profile may have: every chapter, and every folder of a chapter (``"ladder/"``)."""
    folders = {name[:i + 1] for name in CHAPTERS for i, c in enumerate(name) if c == "/"}
    return set(CHAPTERS) | folders


def load_params(profile: str) -> dict[str, dict]:
    """``book/params/<profile>.yaml`` as ``{section: {parameter: value}}``.

    A section is a chapter name (``step_by_step``, ``ladder/step3_deviation``) or a folder of
    chapters ending in ``/`` (``ladder/``), whose parameters every chapter in that folder gets;
    :func:`chapter_params` merges them.

    Raises:
        BuildError: the file is missing, unreadable, gives a key twice, or names an unknown chapter
            or folder.
    """
    path = PARAMS / f"{profile}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PARAMS.glob("*.yaml"))) or "none"
        raise BuildError(f"no parameter file {path.relative_to(ROOT)} for profile '{profile}' "
                         f"(profiles: {known})")
    from atac.config import load_yaml  # `lr: 1e-3` is a number, a key given twice an error

    try:
        data = load_yaml(path) or {}
    except yaml.YAMLError as exc:
        raise BuildError(f"{path.relative_to(ROOT)}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise BuildError(f"{path.relative_to(ROOT)}: expected {{chapter: {{parameter: value}}}}")
    unknown = sorted(set(data) - _sections())
    if unknown:
        raise BuildError(f"{path.relative_to(ROOT)}: unknown chapter(s) {', '.join(unknown)}; "
                         f"chapters: {', '.join(CHAPTERS)} (or a folder of them, e.g. 'ladder/')")
    return data


def chapter_parameters(name: str) -> set[str]:
    """The parameter names of chapter ``name``: those its cell tagged ``parameters`` assigns, as
    papermill reads them (its translator's ``inspect``).

    Raises:
        BuildError: the source is missing, or no cell is tagged ``parameters`` (papermill would then
            inject the profile's values in a cell of their own that nothing reads; the page would
            show the chapter's own defaults).
    """
    import jupytext
    from papermill.translators import papermill_translators
    from papermill.utils import nb_kernel_name, nb_language

    src = BOOK / f"{name}.md"
    if not src.is_file():
        raise BuildError(f"chapter '{name}': source {src.relative_to(ROOT)} does not exist")
    nb = jupytext.read(src)
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if not cells:
        raise BuildError(f"chapter '{name}': {src.relative_to(ROOT)} has no code cell tagged 'parameters' "
                         "(add `:tags: [parameters]` to the cell that sets its parameters)")
    translator = papermill_translators.find_translator(nb_kernel_name(nb, KERNEL), nb_language(nb, "python"))
    return {p.name for p in translator.inspect(cells[0])}


def check_profile(params: dict[str, dict], profile: str) -> None:
    """Every parameter a profile gives a chapter (:func:`chapter_params`) is one the chapter has
    (:func:`chapter_parameters`), for every chapter of :data:`CHAPTERS`.

    Raises:
        BuildError: a chapter has no ``parameters`` cell, or the profile's file sets a parameter
            the chapter does not have (names the file, section, key, chapter and its parameters).
    """
    path = (PARAMS / f"{profile}.yaml").relative_to(ROOT)
    for name in CHAPTERS:
        known = chapter_parameters(name)
        for section in [name[:i + 1] for i, c in enumerate(name) if c == "/"] + [name]:
            unknown = sorted(set(params.get(section, {})) - known)
            if unknown:
                raise BuildError(f"{path}, section '{section}': unknown parameter(s) {', '.join(unknown)} "
                                 f"of chapter '{name}'; its parameters: {', '.join(sorted(known))}")


def resolve_env(value):
    """A parameter value as the chapter gets it: ``{env: NAME}`` in a profile file stands for the
    environment variable ``NAME`` (``None`` when it is unset or empty, so a chapter can fall back,
    e.g. to the synthetic data when ``ATAC_DATA_ROOT`` is not set); any other value is itself.

    Raises:
        BuildError: a mapping other than ``{env: NAME}``.
    """
    if isinstance(value, dict):
        if set(value) != {"env"} or not isinstance(value["env"], str):
            raise BuildError(f"a parameter value that is a mapping must be {{env: NAME}}, got {value!r}")
        return os.environ.get(value["env"], "").strip() or None
    return value


def chapter_params(params: dict[str, dict], name: str) -> dict:
    """The parameters of chapter ``name``: its folders' sections (outermost first), then its own
    section, later keys overriding earlier ones (``ladder/`` then ``ladder/step3_deviation``);
    ``{env: NAME}`` values are read from the environment (:func:`resolve_env`)."""
    out: dict = {}
    for i, c in enumerate(name):
        if c == "/":
            out.update(params.get(name[:i + 1], {}))
    out.update(params.get(name, {}))
    return {k: resolve_env(v) for k, v in out.items()}


def check_kernel() -> None:
    """Fail early, with the fix, when the ``python3`` kernel is missing."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel as exc:
        raise BuildError(f"no Jupyter kernel named '{KERNEL}'; install one into this environment with "
                         f"`{sys.executable} -m ipykernel install --sys-prefix --name {KERNEL}`") from exc
    exe = spec.argv[0] if spec.argv else ""
    if exe not in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}") \
            and Path(exe).resolve() != Path(sys.executable).resolve():
        print(f"warning: kernel '{KERNEL}' ({spec.resource_dir}) runs {exe}, not {sys.executable}; "
              "the chapters may not see this environment's packages", file=sys.stderr)


def glued_values(nb_path: Path) -> dict[str, str]:
    """The ``text/plain`` of every value a notebook glued with ``myst_nb.glue``."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    out: dict[str, str] = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook")
            if meta and "name" in meta:
                data = o.get("data", {})
                text = data.get(meta.get("mime_prefix", "") + "text/plain")
                if text is not None:
                    out[meta["name"]] = text
    return out


def inherit_hiding_tags(nb_path: Path) -> None:
    """Give papermill's ``injected-parameters`` cell the hiding tags (``remove-cell``,
    ``remove-input``, ``hide-cell``, ...) of the chapter's ``parameters`` cell, so that a page that
    hides its parameters (the introduction) does not show the injected ones either."""
    import nbformat

    nb = nbformat.read(nb_path, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    hiding = [t for t in (params[0].metadata.get("tags", []) if params else [])
              if t.startswith(("remove-", "hide-"))]
    if not hiding:
        return
    for c in nb.cells:
        tags = c.metadata.get("tags", [])
        if "injected-parameters" in tags:
            c.metadata["tags"] = tags + [t for t in hiding if t not in tags]
    nbformat.write(nb, nb_path)


def execute_chapter(name: str, params: dict, profile: str) -> float:
    """Execute ``book/<name>.md`` into ``book/executed/<name>.ipynb``; return the seconds taken.

    Raises:
        BuildError: the source is missing, or a cell raised (the failing notebook is kept as
            ``book/executed/<name>.failed.ipynb``).
    """
    import jupytext
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    src = BOOK / f"{name}.md"
    if not src.is_file():
        raise BuildError(f"chapter '{name}': source {src.relative_to(ROOT)} does not exist")
    final = EXECUTED / f"{name}.ipynb"
    final.parent.mkdir(parents=True, exist_ok=True)
    failed = EXECUTED / f"{name}.failed.ipynb"
    # out_dir relative to the chapter's working directory (book/), so no machine path is printed
    stem = name.replace("/", "-")
    parameters = {"out_dir": os.path.relpath(BUILD / "runs" / profile / name, BOOK), **params,
                  "profile": profile}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"atac-book-{stem}-") as tmp:
        source_nb = Path(tmp) / f"{stem}.ipynb"
        output_nb = Path(tmp) / f"{stem}.executed.ipynb"
        jupytext.write(jupytext.read(src), source_nb, fmt="ipynb")
        try:
            pm.execute_notebook(str(source_nb), str(output_nb), parameters=parameters,
                                kernel_name=KERNEL, cwd=str(BOOK), progress_bar=False,
                                log_output=False)
        except PapermillExecutionError as exc:
            if output_nb.is_file():
                shutil.move(str(output_nb), failed)
            final.unlink(missing_ok=True)  # never leave a stale chapter behind a failed one
            raise BuildError(f"chapter '{name}' failed in cell {exc.cell_index} (execution count "
                             f"{exc.exec_count}): "
                             f"{exc.ename}: {exc.evalue}\n  execution report: "
                             f"{failed.relative_to(ROOT)}") from None
        except Exception as exc:  # kernel died, no such kernel, timeout, ...
            if output_nb.is_file():
                shutil.move(str(output_nb), failed)
            final.unlink(missing_ok=True)
            raise BuildError(f"chapter '{name}' could not be executed: {type(exc).__name__}: {exc}"
                             + (f"\n  execution report: {failed.relative_to(ROOT)}" if failed.is_file()
                                else "")) from exc
        inherit_hiding_tags(output_nb)
        shutil.move(str(output_nb), final)
    failed.unlink(missing_ok=True)
    return time.perf_counter() - t0


def build_html() -> float:
    """``jupyter-book build . -W --keep-going --all`` from the repository root; seconds taken.

    Raises:
        BuildError: jupyter-book is missing or the build failed (warnings count as failures).
    """
    jb = bin_dir() / "jupyter-book"
    cmd = [str(jb)] if jb.is_file() else ([shutil.which("jupyter-book")] if shutil.which("jupyter-book")
                                           else None)
    if cmd is None:
        raise BuildError("jupyter-book is not installed in this environment "
                         "(pip install -e '.[book]')")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd + ["build", ".", "-W", "--keep-going", "--all"], cwd=ROOT, env=tool_env())
    if proc.returncode != 0:
        raise BuildError(f"jupyter-book build failed (exit status {proc.returncode}); see the "
                         "warnings above (the build treats every warning as an error)")
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="default",
                    help="parameter profile: book/params/<profile>.yaml (default: default)")
    ap.add_argument("--only", metavar="CHAPTER", choices=CHAPTERS,
                    help="execute only this chapter (the others must have been executed before)")
    ap.add_argument("--no-html", action="store_true", help="execute the chapters, skip jupyter-book")
    args = ap.parse_args(argv)

    started = time.perf_counter()
    timings: dict = {"profile": args.profile, "python": sys.executable,
                     "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                     "chapters": {}}
    try:
        params = load_params(args.profile)
        check_profile(params, args.profile)
        check_kernel()
        todo = [args.only] if args.only else CHAPTERS
        for name in todo:
            print(f"[book] executing {name} (profile {args.profile}) ...", flush=True)
            seconds = execute_chapter(name, chapter_params(params, name), args.profile)
            glue = glued_values(EXECUTED / f"{name}.ipynb")
            timings["chapters"][name] = {"seconds": round(seconds, 1), "glue": glue}
            print(f"[book] {name}: {seconds:.1f} s", flush=True)
        missing = [n for n in CHAPTERS if not (EXECUTED / f"{n}.ipynb").is_file()]
        if missing and not args.no_html:
            raise BuildError(f"no executed notebook for chapter(s) {', '.join(missing)}; "
                             "run without --only first")
        if not args.no_html:
            print("[book] jupyter-book build . -W --keep-going --all", flush=True)
            timings["html_seconds"] = round(build_html(), 1)
            print(f"[book] html: {timings['html_seconds']:.1f} s -> "
                  f"{(BUILD / 'html' / 'index.html').relative_to(ROOT)}", flush=True)
    except BuildError as exc:
        print(f"[book] error: {exc}", file=sys.stderr)
        return 1
    timings["total_seconds"] = round(time.perf_counter() - started, 1)
    BUILD.mkdir(parents=True, exist_ok=True)
    (BUILD / "timings.json").write_text(json.dumps(timings, indent=2) + "\n")
    print(f"[book] done in {timings['total_seconds']:.1f} s; timings in "
          f"{(BUILD / 'timings.json').relative_to(ROOT)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
