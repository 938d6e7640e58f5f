"""Table 1, the ablation ladder (general setting): our rows beside the paper's values, long (one row
per group of runs) and in the paper's layout (classes as rows, methods as columns)."""

from __future__ import annotations

import pandas as pd

from .published import CITATION, LADDER, MISSING, PAPER_NAMES, TABLE1_METHODS, method_order, table1_value
from .summary import METRIC_NAMES, as_rows, check_records, class_name, ours_cell, summarise

TABLE1_KEYS = ("dataset", "category", "backbone", "budget", "shots", "method")


def table1_rows(records: list[dict], metric: str = "image_auroc") -> list[dict]:
    """Our general-setting results per (dataset, category, backbone, budget, shots, method) and run
    identity minus the seed, with the paper's Table 1 value beside them.

    Args:
        records: results records (``metrics.json`` dicts). Each needs ``method``, ``backbone``,
            ``dataset``, ``category``, ``setting``, ``shots``, ``seed`` and ``metric``. Records of
            the hard setting are left out; records whose configs differ in anything but the seed
            (backbone, budget, any other field) are never averaged together.
        metric: the record key to summarise (Table 1 is ``image_auroc``; the paper's value is only
            given for that metric).
    Returns:
        One dict per group, sorted by dataset, category, backbone, budget, shots, then method in
        ladder order I..V (others, e.g. ``dra``, after): ``dataset``, ``category``, ``backbone``,
        ``budget`` (str, :func:`atac.reporting.summary.setups`), ``shots``, ``method``, ``setting``
        ("general"), ``known_type`` (None), ``step`` ("I".."V" or None), ``metric``, ``run``
        (:func:`atac.reporting.summary.run_key`), ``n`` (seeds), ``seeds``, ``values``, ``mean``,
        ``std`` (sample std; None when n = 1), ``paper`` (the supplement's Table 1 value where one
        exists: MVTec AD class, ten shots, a Table 1 method; else None) and ``diff`` (mean − paper,
        or None).
    Raises:
        ValueError: the list is empty, a record lacks a required key (named), no record is of the
            general setting, or one seed appears twice in a group.
    """
    check_records(records, metric)
    general = [r for r in records if r["setting"] == "general"]
    if not general:
        found = sorted({str(r["setting"]) for r in records})
        raise ValueError(f"no general-setting records (settings found: {', '.join(found)})")
    rows = []
    for row in summarise(general, TABLE1_KEYS, metric):
        p = (table1_value(row["dataset"], row["category"], row["shots"], row["method"])
             if metric == "image_auroc" else None)
        rows.append({**row, "setting": "general", "known_type": None, "step": LADDER.get(row["method"]),
                     "metric": metric, "paper": p, "diff": row["mean"] - p if p is not None else None})
    rows.sort(key=lambda r: (str(r["dataset"]), str(r["category"]), str(r["backbone"]),
                             r["budget"], r["shots"], method_order(r["method"])))
    return rows


def method_header(method: str) -> str:
    """A method's column header: its ladder step and name (``"V atac"``), else the paper's name of
    it (``"DRA"``) or our name."""
    return f"{LADDER[method]} {method}" if method in LADDER else PAPER_NAMES.get(method, method)


def setup_label(row: dict) -> str:
    """``"backbone, budget"`` of a row (the setup its runs share)."""
    return f"{row['backbone']}, {row['budget']}"


def table1_wide(rows) -> pd.DataFrame:
    """Table 1 in the paper's layout: one line per class (and number of known anomalies M, and
    setup where the rows hold several), per method our cell beside the paper's.

    Args:
        rows: from :func:`table1_rows` (a list, or a DataFrame of them).
    Returns:
        A DataFrame of text cells. Index: ``class`` (the category), ``setup`` (``"backbone, budget"``,
        only when the rows hold more than one) and ``M``. Columns: a MultiIndex (method, ``"ours"`` or
        ``"paper"``), methods in ladder order I..V, then others (``DRA``); a ``paper`` column for the
        four Table 1 methods when the metric is image AUROC (the four are shown whenever a row is an
        MVTec AD class at ten shots, so the paper's values appear where we have no run). Ours:
        ``mean ± std (n)`` (:func:`atac.reporting.summary.ours_cell`), the paper's value to three
        decimals, "—" where there is none. ``attrs["caption"]``: what the table shows and whence;
        ``attrs["notes"]``: [].
    Raises:
        ValueError: no rows.
    """
    rows = as_rows(rows)
    if not rows:
        raise ValueError("no rows to lay out")
    metric = rows[0].get("metric", "image_auroc")
    with_paper = metric == "image_auroc"
    methods = {r["method"] for r in rows}
    if with_paper and any(r["dataset"] == "mvtec_ad" and r["shots"] == 10 for r in rows):
        methods |= set(TABLE1_METHODS.values())
    methods = sorted(methods, key=method_order)
    columns = [(method_header(m), part) for m in methods
               for part in (("ours", "paper") if with_paper and m in TABLE1_METHODS.values() else ("ours",))]
    several = len({setup_label(r) for r in rows}) > 1
    lines: dict[tuple, dict] = {}
    for r in rows:
        key = (class_name(r["dataset"], r["category"]),) + ((setup_label(r),) if several else ()) + (r["shots"],)
        line = lines.setdefault(key, {"_where": (r["dataset"], r["category"], r["shots"])})
        line[(method_header(r["method"]), "ours")] = ours_cell(r)
    for line in lines.values():
        dataset, category, shots = line.pop("_where")
        for m in methods:
            if (method_header(m), "paper") in columns:
                p = table1_value(dataset, category, shots, m)
                line[(method_header(m), "paper")] = MISSING if p is None else f"{p:.3f}"
    index = pd.MultiIndex.from_tuples(list(lines), names=["class", *(["setup"] if several else []), "M"])
    out = pd.DataFrame(list(lines.values()), index=index)
    out = out.reindex(columns=pd.MultiIndex.from_tuples(columns, names=["method", ""]))
    out = out.astype(object).fillna(MISSING)
    out.attrs["caption"] = table1_caption(rows)
    out.attrs["notes"] = []
    return out


def table1_caption(rows: list[dict]) -> str:
    """The caption of a Table 1 of ``rows``: the metric, how ours are given, the paper's source and
    setup, and our backbones and budgets."""
    ours = sorted({f"{r['backbone']} ({r['budget']})" for r in rows})
    metric = METRIC_NAMES.get(rows[0].get("metric", "image_auroc"), rows[0].get("metric"))
    return (f"{metric}, general setting, ours as mean ± sample std (n seeds). Paper: {CITATION}, "
            f"Table 1 — the paper's own numbers (ResNet-50, paper budget, ten anomalies). "
            f"Ours: {'; '.join(ours)}.")
