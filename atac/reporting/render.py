"""Tables as text: the long form as CSV, the paper's layout (:func:`atac.reporting.table1.table1_wide`,
:func:`atac.reporting.table2.table2_wide`) as Markdown for the terminal and as HTML for the book, the
paper's Table 2 as printed, ATAC-Net's two views, and what a sweep has not recorded yet."""

from __future__ import annotations

import csv
import hashlib
import html
import io
import re

import pandas as pd
from pandas.io.formats.style import Styler

from .published import (CITATION, ERRATUM_MARK, LADDER, MEAN, MISSING, PAPER_NAMES, TABLE2_ORDER, paper_cell,
                        paper_table1, paper_table2, published_table2)
from .table1 import table1_wide
from .table2 import table2_caption, table2_wide

HTML_CLASS = "atac-results"       # the CSS class of the book's results tables (book/_static/book.css)
THIN = "\u202f"                   # a narrow no-break space: between the numbers of an HTML cell, to save
                                  # width without a line break opportunity ("0.900 ± .000" stays whole)
TABLE1_CSV = ["dataset", "category", "backbone", "budget", "shots", "step", "method", "metric",
              "n", "seeds", "mean", "std", "paper", "diff"]
TABLE2_CSV = ["dataset", "category", "backbone", "budget", "shots", "known_type", "method", "metric",
              "n_types", "n", "seeds", "mean", "std", "seeds_note", "paper", "paper_types_mean", "diff",
              "erratum"]


def _f(x: float | None, spec: str = ".3f") -> str:
    return MISSING if x is None else format(x, spec)


def to_csv(rows: list[dict], cols: list[str]) -> str:
    """``rows`` as CSV with columns ``cols`` (None → empty, the seeds list → "0;1;2"), header first."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if r[c] is None else (";".join(map(str, r[c])) if c == "seeds" else r[c])
                    for c in cols])
    return buf.getvalue()


def _flat(wide: pd.DataFrame) -> pd.DataFrame:
    """A wide table with its index as columns and its column levels joined by spaces."""
    flat = wide.copy()
    flat.columns = [" ".join(str(p) for p in c if p) if isinstance(c, tuple) else str(c) for c in flat.columns]
    return flat.reset_index()


def to_markdown(wide: pd.DataFrame) -> str:
    """A table of :func:`~atac.reporting.table1.table1_wide` or :func:`~atac.reporting.table2.table2_wide`
    as Markdown: its caption, the table (the index levels as the first, left-aligned columns; the
    column levels joined, e.g. ``M = 10 DRA ours``; cells right-aligned), then its notes. Ends in a
    newline."""
    flat = _flat(wide)
    n_index = wide.index.nlevels
    table = flat.to_markdown(index=False, disable_numparse=True,   # "1.000" stays as it is
                             colalign=["left"] * n_index + ["right"] * (flat.shape[1] - n_index))
    notes = "".join(f"\n{n}\n" for n in wide.attrs.get("notes", []))
    return f"{wide.attrs.get('caption', '')}\n\n{table}\n{notes}"


def _inline(text: str) -> str:
    """Caption text (Markdown's `code` and **bold** only) as HTML."""
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)


#: one cell of ours as :func:`atac.reporting.summary.ours_cell` writes it, and what may follow it (‡)
_OURS_CELL = re.compile(r"^(?P<mean>-?\d+\.\d+)(?: ± (?P<std>\d+\.\d+))? \((?P<n>\d+)\)(?P<rest>.*)$")


def _short(number: str) -> str:
    """``"0.004"`` → ``".004"`` (a std below one without its leading zero); others as they are."""
    return number[1:] if number.startswith("0.") else number


def _common_n(cells) -> int | None:
    """The number of seeds most cells of ours have (the larger on a tie); None when no cell has one."""
    ns = [int(m["n"]) for c in cells if (m := _OURS_CELL.match(c))]
    if not ns:
        return None
    return max(set(ns), key=lambda n: (ns.count(n), n))


def _html_cell(cell: str, common: int | None) -> str:
    """A text cell as compact HTML: ours ``mean ± .std`` (narrow no-break spaces around ``±``), the
    number of seeds as a superscript ``n=k`` only where it is not ``common``; any other cell escaped,
    its spaces before ``(`` and around ``±`` narrow and unbreakable."""
    m = _OURS_CELL.match(cell)
    if m is None:
        return html.escape(cell.replace(" ± ", THIN + "±" + THIN).replace(" (", THIN + "("), quote=False)
    text = m["mean"] + (f"{THIN}±{THIN}{_short(m['std'])}" if m["std"] else "")
    if int(m["n"]) != common:
        text += f'<sup class="n">n={m["n"]}</sup>'
    return text + html.escape(m["rest"].replace(" ", THIN), quote=False)


def to_html(wide: pd.DataFrame) -> str:
    """A wide table as HTML for the book: its caption in a ``<p class="atac-results-caption">``,
    the table (a pandas Styler; ``class="atac-results"``, whose CSS in ``book/_static/book.css``
    keeps every cell on one line in a compact font; a two-level header, the method over ``ours`` and
    ``paper``; the paper's cells of class ``paper``), then its notes in a ``<p
    class="atac-results-notes">``. To fit the book's article, ours are written compactly: ``0.979 ±
    .004`` (narrow no-break spaces, :data:`THIN`), the number of seeds said once in the caption
    ("n = 3 seeds per cell unless marked") and as a superscript ``n=1`` on a cell of another n."""
    classes = pd.DataFrame([["paper" if c[-1] == "paper" else "ours" for c in wide.columns]] * len(wide),
                           index=wide.index, columns=wide.columns)
    digest = hashlib.sha256(wide.to_csv().encode()).hexdigest()[:8]   # the same table, the same id
    ours = [c for col in wide.columns if col[-1] != "paper" for c in wide[col]]
    common = _common_n(ours)
    cells = wide.map(lambda c: _html_cell(c, common))
    table = (Styler(cells, uuid=digest, cell_ids=False).set_table_attributes(f'class="{HTML_CLASS}"')
             .set_td_classes(classes).to_html())
    said = ""
    if common is not None:
        marked = any((m := _OURS_CELL.match(c)) and int(m["n"]) != common for c in ours)
        said = (f" Each cell of ours: mean ± std over n = {common} seed{'s' if common != 1 else ''}"
                + (", unless marked with another n." if marked else "."))
    caption = f'<p class="{HTML_CLASS}-caption">{_inline(wide.attrs.get("caption", "") + said)}</p>\n'
    notes = "".join(f'<p class="{HTML_CLASS}-notes">{_inline(n)}</p>\n' for n in wide.attrs.get("notes", []))
    return caption + table + notes


def render_table1(rows: list[dict], fmt: str = "markdown") -> str:
    """Rows of :func:`atac.reporting.table1.table1_rows` as text.

    Args:
        rows: from ``table1_rows``.
        fmt: ``"markdown"``: :func:`to_markdown` of :func:`~atac.reporting.table1.table1_wide` (the
            paper's layout: classes as rows, per method ours beside the paper's). ``"csv"``: the long
            form, header + one line per row with plain numeric columns :data:`TABLE1_CSV` (empty
            where None; seeds joined by ";").
    Returns:
        The text, ending in a newline.
    Raises:
        ValueError: no rows, or an unknown ``fmt``.
    """
    return _render(rows, fmt, TABLE1_CSV, table1_wide)


def render_table2(rows: list[dict], fmt: str = "markdown") -> str:
    """Rows of :func:`atac.reporting.table2.table2_rows` as text.

    Args:
        rows: from ``table2_rows``.
        fmt: ``"markdown"``: :func:`to_markdown` of :func:`~atac.reporting.table2.table2_wide` (the
            paper's layout: known types as rows, one and ten anomalies side by side, per method ours
            beside the paper's; the paper's erratum marked †, a mean over types of uneven seeds ‡,
            with notes under the table). ``"csv"``: the long form, :data:`TABLE2_CSV` (empty where
            None; seeds joined by ";"), including ``seeds_note``, ``paper_types_mean`` and ``erratum``.
    Returns:
        The text, ending in a newline.
    Raises:
        ValueError: no rows, or an unknown ``fmt``.
    """
    return _render(rows, fmt, TABLE2_CSV, table2_wide)


def _render(rows: list[dict], fmt: str, columns: list[str], wide) -> str:
    """``rows`` as the long-form CSV of ``columns`` or as Markdown of ``wide(rows)``."""
    if not rows:
        raise ValueError("no rows to render")
    if fmt == "csv":
        return to_csv(rows, columns)
    if fmt != "markdown":
        raise ValueError(f"unknown format '{fmt}'; choose markdown or csv")
    return to_markdown(wide(rows))


def render_class_table2(rows: list[dict], dataset: str = "mvtec_ad", category: str = "metal_nut",
                        fmt: str = "markdown", shots_as: str = "columns") -> str:
    """One class of Table 2 in the paper's layout, ours beside the paper's (:func:`to_markdown` or
    :func:`to_html` of :func:`~atac.reporting.table2.table2_wide` of that class), its caption headed
    by the class's name.

    Args:
        rows: from :func:`atac.reporting.table2.table2_rows` (rows of other classes are ignored;
            there may be none of this class: then ours are "—" and the caption says so).
        dataset, category: the class (the paper's Table 2 classes are ``mvtec_ad`` tile and
            metal_nut; for another class the paper's columns are "—").
        fmt: ``"markdown"`` or ``"html"`` (for the book).
        shots_as: as in :func:`~atac.reporting.table2.table2_wide` (``"rows"``: half as wide).
    Returns:
        The text, ending in a newline. Raises ValueError when neither we nor the paper have the
        class, or on an unknown ``fmt``.
    """
    if fmt not in ("markdown", "html"):
        raise ValueError(f"unknown format '{fmt}'; choose markdown or html")
    mine = [r for r in rows if (r["dataset"], r["category"]) == (dataset, category)]
    wide = table2_wide(mine, classes=[(dataset, category)], shots_as=shots_as)
    metric = mine[0]["metric"] if mine else "image_auroc"
    wide.attrs["caption"] = f"**{dataset} / {category}**: " + table2_caption(mine, metric)
    return to_markdown(wide) if fmt == "markdown" else to_html(wide)


def render_published_table2(fmt: str = "markdown") -> str:
    """The paper's Table 2 as it is printed (one line per class, known type and shots; DevNet, DRA,
    ATAC-Net columns), for showing it where we have no runs.

    ``"markdown"``: a caption citing the paper and the table, the erratum marked † with both values
    and a note; ``"csv"``: the rows of :func:`published_table2`. Raises ValueError on another fmt.
    """
    pub = published_table2()
    if fmt == "csv":
        cols = ["dataset", "category", "known_type", "shots", "method", "image_auroc", "types_mean", "erratum"]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in pub:
            w.writerow(["" if r[c] is None else r[c] for c in cols])
        return buf.getvalue()
    if fmt != "markdown":
        raise ValueError(f"unknown format '{fmt}'; choose markdown or csv")
    by = {(p["category"], p["known_type"], p["shots"], p["method"]): p for p in pub}
    names = PAPER_NAMES
    lines = [f"Image AUROC, hard setting, ResNet-50 — the paper's numbers as printed. Source: "
             f"{CITATION}, Table 2.", "",
             "| class | shots | known type | " + " | ".join(names[m] for m in TABLE2_ORDER) + " |",
             "|---|---:|---|" + "---:|" * len(TABLE2_ORDER)]
    seen = []
    for p in pub:
        key = (p["category"], p["shots"], p["known_type"])
        if key in seen:
            continue
        seen.append(key)
        cells = [paper_cell(by[(key[0], key[2], key[1], m)]["image_auroc"],
                             by[(key[0], key[2], key[1], m)]["types_mean"],
                             by[(key[0], key[2], key[1], m)]["erratum"]) for m in TABLE2_ORDER]
        kt = f"**{MEAN}**" if key[2] == MEAN else key[2]
        lines.append(f"| {key[0]} | {key[1]} | {kt} | " + " | ".join(cells) + " |")
    errata = sorted({p["erratum"] for p in pub if p["erratum"]})
    return "\n".join(lines) + "\n" + "".join(
        f"\n{ERRATUM_MARK} {e[0].upper()}{e[1:]}; both are shown, the printed value first.\n" for e in errata)


def render_view_summary(rows: list[dict]) -> str:
    """:func:`atac.reporting.summary.view_summary` rows as a Markdown table (mean image AUROC of each view over runs)."""
    head = ["dataset", "category", "setting", "M", "method", "backbone", "budget", "runs", "full image", "zoomed view",
            "final (mean of both)", "zoom > full", "final > full"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        n = r["n"]
        lines.append("| " + " | ".join([
            str(r["dataset"]), str(r["category"]), str(r["setting"]), str(r["shots"]), str(r["method"]),
            str(r["backbone"]), str(r["budget"]), str(n) + (f" (+{r['n_without']} without views)" if r["n_without"] else ""),
            _f(r["full"]), _f(r["zoom"]), _f(r["final"]),
            f"{r['zoom_better']} of {n}" if n else "—", f"{r['final_better']} of {n}" if n else "—",
        ]) + " |")
    return "\n".join(lines)



def paper_table1_sentence(category: str) -> str | None:
    """The paper's Table 1 row of an MVTec AD class as a sentence ("The paper's Table 1 row for
    metal_nut (ResNet-50, its budget, ten anomalies): I cutmix_bce 0.763, ..."), or None when the
    class has no row there."""
    paper = paper_table1()
    vals = [(m, paper[(category, m)]) for m in LADDER if (category, m) in paper]
    if not vals or category == "mean":
        return None
    return (f"The paper's Table 1 row for {category} (ResNet-50, its budget, ten anomalies): "
            + ", ".join(f"{LADDER[m]} {m} {v:.3f}" for m, v in vals) + ".")



def render_progress(progress: list[dict], which: str, sweep_name: str = "the sweep",
                    present: set[tuple[str, str]] | None = None) -> str:
    """What :func:`atac.reporting.records.sweep_progress` says, as Markdown for under a table: one line per class whose runs
    are not all in the results. A class with none of them recorded says so and shows the paper's
    values for it instead (Table 1: :func:`paper_table1_sentence`; Table 2: the paper-only
    :func:`render_class_table2`), so that a table without them is not read as complete.

    Args:
        progress: from :func:`atac.reporting.records.sweep_progress`.
        which: "table1" or "table2".
        sweep_name: how to name the sweep in the text.
        present: the (dataset, category) classes the table has rows of (None: unknown); a class
            with rows but none of the sweep's runs is said to have rows from other runs.
    Returns:
        The text ("" when every class is complete), ending in a newline when not empty.
    Raises:
        ValueError: ``which`` is neither.
    """
    if which not in ("table1", "table2"):
        raise ValueError(f"which must be table1 or table2, got {which!r}")
    parts = []
    for p in progress:
        name = p["category"] if p["category"] == p["dataset"] else f"{p['dataset']} / {p['category']}"
        if p["n_recorded"] == p["n_runs"]:
            continue
        if p["n_recorded"]:
            parts.append(f"- **{name}**: {p['n_recorded']} of {sweep_name}'s {p['n_runs']} runs are in "
                         "these results; its rows above are over those only.\n")
            continue
        if present is not None and (p["dataset"], p["category"]) in present:
            parts.append(f"- **{name}**: none of {sweep_name}'s {p['n_runs']} runs of it is in these "
                         "results; its rows above come from other runs (other configs).\n")
            continue
        parts.append(f"- **{name}**: none of {sweep_name}'s {p['n_runs']} runs of it is in these "
                     "results yet, so the table has no row of ours for it.")
        if p["dataset"] == "mvtec_ad" and which == "table1":
            sentence = paper_table1_sentence(p["category"])
            parts[-1] += f" {sentence}" if sentence else " The paper's Table 1 has no row for it."
            parts[-1] += "\n"
        elif p["dataset"] == "mvtec_ad" and any(k[0] == p["category"] for k in paper_table2()):
            parts[-1] += " The paper's values for it:\n\n" + render_class_table2(
                [], p["dataset"], p["category"])
        else:
            parts[-1] += f" The paper's {'Table 1' if which == 'table1' else 'Table 2'} has no row for it.\n"
    return "".join(parts)


# --- compact tables for the book's prose: a DataFrame, its constant columns said once ---------------

_BUDGET = re.compile(r"^(?P<preset>[^:]+): (?P<epochs>\S+) epochs × (?P<steps>\S+) steps, batch (?P<batch>\S+), "
                     r"(?P<px>\S+) px(?:; (?P<variant>.*))?$")
#: how a column constant over every row is said in the caption ({} is its value)
CONSTANT_WORDING = {"backbone": "backbone {}", "steps": "{} steps per epoch", "batch": "batch {}",
                    "px": "{} px", "method": "method {}", "M": "M = {}", "budget": "budget {}",
                    "setting": "the {} setting", "runs": "{} runs", "variant": "{}"}


def budget_columns(label: str) -> dict[str, str]:
    """A budget label (:func:`atac.reporting.summary.setups`, e.g. ``"cpu: 15 epochs × 20 steps, batch
    16, 224 px; zoom_loss=per_view"``) cut into short columns: ``budget`` (``"cpu, 15 epochs"``),
    ``steps``, ``batch``, ``px`` and ``variant`` (``""`` where none). A label of another form is the
    ``budget`` whole, the other columns empty."""
    m = _BUDGET.match(label)
    if m is None:
        return {"budget": label, "steps": "", "batch": "", "px": "", "variant": ""}
    return {"budget": f"{m['preset']}, {m['epochs']} epochs", "steps": m["steps"], "batch": m["batch"],
            "px": m["px"], "variant": m["variant"] or ""}


def drop_constant(frame: pd.DataFrame, keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """``frame`` without the columns that hold one value in every row (those of ``keep`` stay), said
    instead in ``attrs["constant"]``: a sentence such as ``"In every row: backbone mobilenet_v2, 20
    steps per epoch."`` (:data:`CONSTANT_WORDING`; an empty value is left unsaid), ``""`` when no
    column is constant. A frame of fewer than two rows is returned whole."""
    out = frame.copy()
    out.attrs = dict(frame.attrs)
    said = []
    if len(frame) > 1:
        for c in frame.columns:
            values = frame[c].astype(str).unique()
            if c not in keep and len(values) == 1:
                out = out.drop(columns=c)
                if values[0]:
                    said.append(CONSTANT_WORDING.get(c, f"{c} {{}}").format(values[0]))
    out.attrs["constant"] = f"In every row: {', '.join(said)}." if said else ""
    return out


def frame_markdown(frame: pd.DataFrame, right: tuple[str, ...] = ()) -> str:
    """A small table (a DataFrame of strings and numbers, its index ignored) as Markdown: the columns
    of ``right`` right-aligned (numbers: the book keeps a right-aligned cell on one line), the others
    left-aligned (they wrap at spaces); ``attrs["constant"]`` (:func:`drop_constant`), if any, after
    the table."""
    table = frame.to_markdown(index=False, disable_numparse=True,
                              colalign=["right" if c in right else "left" for c in frame.columns])
    constant = frame.attrs.get("constant", "")
    return table + (f"\n\n{constant}" if constant else "")


def view_frame(rows: list[dict]) -> pd.DataFrame:
    """:func:`atac.reporting.summary.view_summary` rows as a DataFrame for the book, in short columns:
    ``data`` (the class and setting, e.g. ``"tile, hard"``), ``M``, ``method``, ``backbone``, the budget
    (:func:`budget_columns`), ``runs``, the three mean image AUROCs (``full``, ``zoom``, ``final``) and
    the two counts (``zoom > full``, ``final > full``, "k of n"). Columns constant over the rows are
    dropped into ``attrs["constant"]`` (:func:`drop_constant`); render with :func:`frame_markdown` and
    :data:`VIEW_RIGHT` right-aligned."""
    out = []
    for r in rows:
        n = r["n"]
        out.append({"data": f"{r['category']}, {r['setting']}", "M": str(r["shots"]), "method": str(r["method"]),
                    "backbone": str(r["backbone"]), **budget_columns(str(r["budget"])),
                    "runs": str(n) + (f" (+{r['n_without']} without views)" if r["n_without"] else ""),
                    "full": _f(r["full"]), "zoom": _f(r["zoom"]), "final": _f(r["final"]),
                    "zoom > full": f"{r['zoom_better']} of {n}" if n else MISSING,
                    "final > full": f"{r['final_better']} of {n}" if n else MISSING})
    columns = ["data", "M", "method", "backbone", "budget", "steps", "batch", "px", "variant", "runs", "full",
               "zoom", "final", "zoom > full", "final > full"]
    return drop_constant(pd.DataFrame(out, columns=columns), keep=("data", "full", "zoom", "final"))


#: the columns of :func:`view_frame` and :func:`atac.reporting.records.measured_frame` that hold numbers
VIEW_RIGHT = ("M", "runs", "full", "zoom", "final", "zoom > full", "final > full")
