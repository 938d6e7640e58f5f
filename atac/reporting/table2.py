"""Table 2, the hard setting (the known anomalies all of one defect type, that type removed from the
test set): DevNet, DRA and ATAC-Net per known type and as the mean over types, beside the paper's
values; long (one row per group of runs) and in the paper's layout (known types as rows, one and
ten anomalies side by side)."""

from __future__ import annotations

import statistics

import pandas as pd

from .published import (CITATION, ERRATUM_MARK, MEAN, MISSING, PAPER_NAMES, TABLE2_ORDER, paper_cell,
                        paper_table2, table2_entry, table2_method_order, type_order)
from .summary import METRIC_NAMES, as_rows, check_records, class_name, defect_types, ours_cell, summarise
from .table1 import setup_label

TABLE2_KEYS = ("dataset", "category", "backbone", "budget", "shots", "known_type", "method")
CLASS_KEYS = tuple(k for k in TABLE2_KEYS if k != "known_type")


def table2_rows(records: list[dict], metric: str = "image_auroc",
                types: dict[tuple[str, str], list[str]] | None = None) -> list[dict]:
    """Our hard-setting results per (dataset, category, backbone, budget, shots, known type, method)
    and run identity minus the seed, with the paper's Table 2 value beside them, plus a mean over
    the known types.

    Args:
        records: results records (``metrics.json`` dicts). Each needs ``method``, ``backbone``,
            ``dataset``, ``category``, ``setting``, ``shots``, ``seed`` and ``metric``; a hard-setting
            record also needs ``known_type``. General-setting records are left out; records whose
            configs differ in anything but the seed and the known type are never averaged together.
        metric: the record key to summarise (the paper's values are image AUROC only).
        types: {(dataset, category): every defect type} for classes that
            :func:`atac.reporting.summary.defect_types` does not know (or to override it); a mean row
            is made only when all types of the class are known.
    Returns:
        Per-type rows sorted by dataset, category, backbone, budget, shots, known type (the mean
        last), then method (deviation, dra, atac; others after): ``dataset``, ``category``,
        ``backbone``, ``budget`` (str), ``shots``, ``known_type``, ``method``, ``setting`` ("hard"),
        ``metric``, ``run``, ``n`` (seeds), ``seeds``, ``values``, ``mean``, ``std`` (sample std;
        None when n = 1), ``seeds_note`` (None on a per-type row), ``paper`` (the supplement's
        Table 2 value for an MVTec AD tile/metal_nut row; else None), ``paper_types_mean`` (mean
        rows: the mean of the paper's per-type values), ``erratum`` (the sentence of
        :func:`atac.reporting.published.published_table2` where the printed mean is wrong; else
        None), ``diff`` (mean − paper, or None) and ``n_types`` (1 on a per-type row).
        A mean row (``known_type`` "mean") per (dataset, category, backbone, budget, shots, method,
        run) whose rows cover every defect type of the class, over the seeds every type has:
        ``values`` = per such seed, the mean over types (as the paper averages); ``mean``, ``std``
        (None when fewer than two) and ``n``/``seeds`` over those same seeds, so the cell
        ``mean ± std (n)`` describes one set of runs; ``seeds_note`` says how many runs of other
        seeds were left out (None when none). When no seed is common to all types, ``mean`` is the
        mean of the per-type means over all their seeds, ``n`` = 0, ``std`` None, and ``seeds_note``
        says so. ``n_types`` = the number of types.
    Raises:
        ValueError: the list is empty, a record lacks a required key (named), no record is of the
            hard setting, a hard record has no known type, or one seed appears twice in a group.
    """
    check_records(records, metric)
    hard = [r for r in records if r["setting"] == "hard"]
    if not hard:
        found = sorted({str(r["setting"]) for r in records})
        raise ValueError(f"no hard-setting records (settings found: {', '.join(found)})")
    for r in hard:
        if not r.get("known_type"):
            raise ValueError(f"hard-setting record ({r['method']}/{r['dataset']}/{r['category']}, seed "
                             f"{r['seed']}) has no known_type")
        if r["known_type"] == MEAN:
            raise ValueError(f"a record's known_type is '{MEAN}', the name of the mean rows")
    rows = [_with_paper({**row, "setting": "hard", "metric": metric, "seeds_note": None}, metric, 1)
            for row in summarise(hard, TABLE2_KEYS, metric)]
    rows += _type_means(rows, metric, types or {})
    rows.sort(key=lambda r: (str(r["dataset"]), str(r["category"]), str(r["backbone"]), r["budget"],
                             r["shots"], type_order(r["known_type"]), table2_method_order(r["method"])))
    return rows


def _type_means(rows: list[dict], metric: str, types: dict) -> list[dict]:
    """The mean-over-types rows of the per-type ``rows`` (see :func:`table2_rows`)."""
    if not rows:
        return []
    runs = pd.DataFrame([{**{k: r[k] for k in CLASS_KEYS}, "run": r["run"], "known_type": r["known_type"],
                          "row": i, "seed_order": str(s), "seed": s, "value": v}
                         for i, r in enumerate(rows) for s, v in zip(r["seeds"], r["values"])])
    out = []
    for _, runs_of in runs.groupby([*CLASS_KEYS, "run"], sort=False, dropna=False):
        first = rows[int(runs_of["row"].iloc[0])]
        want = types.get((first["dataset"], first["category"])) or defect_types(first["dataset"], first["category"])
        if not want or not set(want) <= set(runs_of["known_type"]):
            continue
        mine = runs_of[runs_of["known_type"].isin(list(want))]
        common = mine.pivot(index="seed_order", columns="known_type", values="value").dropna().sort_index()
        values = [statistics.fmean(float(v) for v in line) for line in common.to_numpy()]   # per seed, over types
        seed_of = dict(zip(mine["seed_order"].tolist(), mine["seed"].tolist()))
        seeds = [seed_of[s] for s in common.index]
        left_out = len(mine) - len(seeds) * len(want)
        if values:   # mean, std and n all over the seeds every type has
            mean = statistics.fmean(values)
            note = f"{left_out} run(s) of seeds not shared by every type left out" if left_out else None
        else:        # no seed common to all types: the mean of the per-type means, marked
            mean = statistics.fmean(rows[i]["mean"] for i in mine["row"].unique())
            note = "no seed common to all types: mean of the per-type means over all their seeds"
        row = {**{k: first[k] for k in CLASS_KEYS}, "known_type": MEAN, "run": first["run"], "setting": "hard",
               "metric": metric, "n": len(seeds), "seeds": seeds, "values": values, "mean": mean,
               "std": statistics.stdev(values) if len(values) > 1 else None, "seeds_note": note}
        out.append(_with_paper(row, metric, len(want)))
    return out


def _with_paper(row: dict, metric: str, n_types: int) -> dict:
    p = (table2_entry(row["dataset"], row["category"], row["known_type"], row["shots"], row["method"])
         if metric == "image_auroc" else None)
    row["paper"] = p["image_auroc"] if p else None
    row["paper_types_mean"] = p["types_mean"] if p else None
    row["erratum"] = p["erratum"] if p else None
    row["diff"] = row["mean"] - row["paper"] if p else None
    row["n_types"] = n_types
    return row


def condense_hard(rows: list[dict]) -> list[dict]:
    """Rows for an overview: a hard-setting class with a mean over its known types keeps only that
    mean row; every other row (general setting, a class whose types are not all there) is kept.

    Args:
        rows: rows of :func:`atac.reporting.table1.table1_rows` and/or :func:`table2_rows` (as
            :func:`atac.reporting.records.recorded_results` gives them).
    Returns:
        The rows in their order, fewer of them; a kept mean row gets ``known_type`` ``"mean over N
        known types"`` (N = its ``n_types``) so that a reader sees what it averages.
    """
    def key(r):
        return tuple(r.get(k) for k in (*CLASS_KEYS, "run"))

    with_mean = {key(r) for r in rows if r.get("setting") == "hard" and r.get("known_type") == MEAN}
    out = []
    for r in rows:
        if r.get("setting") != "hard" or key(r) not in with_mean:
            out.append(r)
        elif r.get("known_type") == MEAN:
            out.append(dict(r, known_type=f"mean over {r['n_types']} known types"))
    return out


def table2_wide(rows, classes: list[tuple[str, str]] | None = None, shots_as: str = "columns") -> pd.DataFrame:
    """Table 2 in the paper's layout: per class, one line per known type (the mean over types last),
    and per number of known anomalies M (side by side) and method our cell beside the paper's.

    Args:
        rows: from :func:`table2_rows` (a list, or a DataFrame of them); may be empty when
            ``classes`` names classes of the paper.
        classes: the (dataset, category) classes to show, in this order; None: those of ``rows``.
            A class without rows of ours shows the paper's values only (ours "—").
        shots_as: ``"columns"``: the numbers of known anomalies side by side, as the paper prints
            them; ``"rows"``: one line per known type and M (M = 1 and M = 10 of a type adjacent),
            the columns per method only — half as wide, for the book's article.
    Returns:
        A DataFrame of text cells. Index: ``class``, ``setup`` (``"backbone, budget"``, only when the
        rows of a shown class hold more than one; never pooled) and ``known type`` (the class's
        types of ours and of the paper, then ``"mean (N types)"``). Columns: a MultiIndex (``"M = 1"``, ...;
        method: DevNet, DRA, ATAC-Net, others after; ``"ours"`` or ``"paper"``; ``paper`` only when
        the metric is image AUROC). Ours: ``mean ± std (n)``; a mean whose runs differ in seeds
        between types is marked ‡ (``"(no common seed) ‡"`` where none is shared); the paper's
        erratum (Tile, ten shots, DRA: printed 0.935) is marked †. ``attrs["caption"]``: what the
        table shows and whence; ``attrs["notes"]``: the ‡ and † notes, one string each. With
        ``shots_as="rows"`` the index ends in ``M`` (an int) and the columns are (method, part).
    Raises:
        ValueError: a class to show has neither rows of ours nor values of the paper, nothing to
            show, or ``shots_as`` is neither.
    """
    if shots_as not in ("columns", "rows"):
        raise ValueError(f"shots_as must be 'columns' or 'rows', got {shots_as!r}")
    by_rows = shots_as == "rows"
    rows = as_rows(rows)
    metric = rows[0].get("metric", "image_auroc") if rows else "image_auroc"
    with_paper = metric == "image_auroc"
    classes = list(classes) if classes is not None else list(dict.fromkeys(
        (r["dataset"], r["category"]) for r in rows))
    if not classes:
        raise ValueError("no rows to lay out")
    paper = paper_table2() if with_paper else {}
    methods = sorted({r["method"] for r in rows} | set(TABLE2_ORDER), key=table2_method_order)
    lines: dict[tuple, dict] = {}
    notes: list[str] = []
    all_shots: set = set()
    several = any(len({setup_label(r) for r in rows if (r["dataset"], r["category"]) == c}) > 1 for c in classes)
    for dataset, category in classes:
        mine = [r for r in rows if (r["dataset"], r["category"]) == (dataset, category)]
        theirs = {k: p for k, p in paper.items() if dataset == "mvtec_ad" and k[0] == category}
        if not mine and not theirs:
            raise ValueError(f"no rows of {dataset}/{category} and no Table 2 values of the paper for it")
        types = sorted({r["known_type"] for r in mine} | {k[1] for k in theirs}, key=type_order)
        shots = {r["shots"] for r in mine} | {k[2] for k in theirs}
        all_shots |= shots
        for setup in sorted({setup_label(r) for r in mine}) or [""]:
            by = {(r["shots"], r["known_type"], r["method"]): r for r in mine if setup_label(r) == setup}
            for t in types:
                shown = f"{MEAN} ({len(types) - 1} types)" if t == MEAN else t
                key = (class_name(dataset, category),) + ((setup,) if several else ()) + (shown,)
                for s in sorted(shots):
                    line = lines.setdefault(key + ((s,) if by_rows else ()), {})
                    head = () if by_rows else (f"M = {s}",)
                    for m in methods:
                        r = by.get((s, t, m))
                        line[(*head, PAPER_NAMES.get(m, m), "ours")] = _ours(r, notes)
                        p = theirs.get((category, t, s, m))
                        if with_paper:
                            line[(*head, PAPER_NAMES.get(m, m), "paper")] = (
                                MISSING if p is None else paper_cell(p["image_auroc"], p["types_mean"],
                                                                     p["erratum"], types=False))
                        if p is not None and p["erratum"] and p["erratum"] not in notes:
                            notes.append(p["erratum"])
    parts = ("ours", "paper") if with_paper else ("ours",)
    if by_rows:
        columns = [(PAPER_NAMES.get(m, m), part) for m in methods for part in parts]
    else:
        columns = [(f"M = {s}", PAPER_NAMES.get(m, m), part) for s in sorted(all_shots) for m in methods
                   for part in parts]
    names = ["class", *(["setup"] if several else []), "known type", *(["M"] if by_rows else [])]
    out = pd.DataFrame(list(lines.values()), index=pd.MultiIndex.from_tuples(list(lines), names=names))
    out = out.reindex(columns=pd.MultiIndex.from_tuples(columns, names=[*([] if by_rows else ["M"]), "method", ""]))
    out = out.astype(object).fillna(MISSING)
    out.attrs["caption"] = table2_caption(rows, metric)
    out.attrs["notes"] = _notes(notes, paper)
    return out


def _ours(r: dict | None, notes: list[str]) -> str:
    if r is None:
        return MISSING
    if r["known_type"] == MEAN and r.get("seeds_note"):
        if r["seeds_note"] not in notes:
            notes.append(r["seeds_note"])
        return f"{r['mean']:.3f} (no common seed) ‡" if r["n"] == 0 else ours_cell(r) + " ‡"
    return ours_cell(r)


def _notes(notes: list[str], paper: dict) -> list[str]:
    """The notes under a wide Table 2: the paper's errata (†, with the mean of its per-type values)
    first, then the seed notes of means over types (‡)."""
    errata = {p["erratum"]: p for p in paper.values() if p["erratum"]}
    out = [f"{ERRATUM_MARK} {e[0].upper()}{e[1:]}; the printed value is shown." for e in notes if e in errata]
    out += [f"‡ A mean over types: {n}." for n in sorted(n for n in notes if n not in errata)]
    return out


def table2_caption(rows: list[dict], metric: str = "image_auroc") -> str:
    """The caption of a Table 2 of ``rows`` (may be empty: then it says the paper's values only)."""
    mname = METRIC_NAMES.get(metric, metric)
    if not rows:
        return (f"{mname}, hard setting: no runs of ours in these results, so only the paper's values "
                f"are shown (ResNet-50; {CITATION}, Table 2).")
    ours = sorted({f"{r['backbone']} ({r['budget']})" for r in rows})
    return (f"{mname}, hard setting (the known anomalies all of one defect type, that type removed "
            f"from the test set, so every test anomaly is of a type never seen in training); ours as "
            f"mean ± sample std (n seeds), \"mean\" = the mean over the known types. Paper: {CITATION}, "
            f"Table 2 — the paper's own numbers (ResNet-50; its DevNet column is DevNet as published, "
            f"set against our `deviation` recipe). Ours: {'; '.join(ours)}.")
