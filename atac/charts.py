"""Charts of measured numbers: the results tables as figures (ours against the paper's values), and
plain charts of a value against a swept setting or per group.

Every function returns a :class:`matplotlib.figure.Figure` built without ``pyplot``, as
:mod:`atac.plots` does; nothing here computes a number (the rows come from :mod:`atac.reporting`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from .reporting.published import (ERRATUM_MARK, LADDER, MEAN, PAPER_NAMES, TABLE2_ORDER, method_order,
                                  paper_table1, paper_table2, table2_method_order, type_order)


def _panels(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    """``rows`` by the values of ``keys``, one panel each, in order of first appearance; ValueError
    when there are no rows."""
    if not rows:
        raise ValueError("no rows to plot")
    panels: dict[tuple, list[dict]] = {}
    for r in rows:
        panels.setdefault(tuple(r[k] for k in keys), []).append(r)
    return panels


def _metric_label(metric: str) -> str:
    """An axis label for a record's metric name: ``image_auroc`` -> ``image AUROC``."""
    return " ".join({"auroc": "AUROC", "auprc": "AUPRC"}.get(w, w) for w in metric.split("_"))


def table1_figure(rows: list[dict], path=None) -> Figure:
    """Our means ± std against the paper's values, one panel per (dataset, category).

    Methods on the x axis in ladder order (for MVTec AD classes the four Table 1 methods are always
    shown, so the paper's values appear even where we have no run). Ours: filled points with error
    bars (sample std; none for n = 1), one series per (shots, backbone, budget), offset sideways.
    The paper's Table 1 value: a hollow black circle.

    Args:
        rows: from :func:`atac.reporting.table1_rows`.
        path: where to save the figure (any format matplotlib knows), or None.
    Returns:
        A Figure with exactly one axes per (dataset, category), y = the rows' metric.
    Raises:
        ValueError: no rows.
    """
    panels = _panels(rows, ("dataset", "category"))
    series = sorted({(r["shots"], r["backbone"], r["budget"]) for r in rows}, key=str)
    paper = paper_table1()
    n = len(panels)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        fig.delaxes(ax)
    colors = [f"C{i}" for i in range(10)]
    for ax, ((dataset, category), prs) in zip(axes, panels.items()):
        methods = {r["method"] for r in prs}
        if dataset == "mvtec_ad":
            methods |= {m for (c, m) in paper if c == category}
        methods = sorted(methods, key=method_order)
        x = {m: i for i, m in enumerate(methods)}
        width = 0.5 / max(1, len(series))
        for j, s in enumerate(series):
            pts = [r for r in prs if (r["shots"], r["backbone"], r["budget"]) == s]
            if not pts:
                continue
            off = (j - (len(series) - 1) / 2) * width
            ax.errorbar([x[r["method"]] + off for r in pts], [r["mean"] for r in pts],
                        yerr=[r["std"] or 0.0 for r in pts], fmt="o", ms=5, capsize=3,
                        color=colors[j % 10], label=f"ours, {s[0]} shots, {s[1]} ({s[2]})")
        if dataset == "mvtec_ad":
            pm = [m for m in methods if (category, m) in paper]
            if pm:
                ax.plot([x[m] for m in pm], [paper[(category, m)] for m in pm], "o", ms=9,
                        mfc="none", mec="black", mew=1.3, ls="none", label="paper (ResNet-50, 10 shots)")
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels([f"{LADDER[m]}\n{m}" if m in LADDER else m for m in methods], fontsize=8)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_title(category if category == dataset else f"{dataset} / {category}", fontsize=10)
        ax.set_ylabel(_metric_label(prs[0]["metric"]))
        ax.grid(axis="y", alpha=0.3)
    handles, labels = {}, []
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", fontsize=8,
               ncols=min(2, len(handles)))
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


def table2_figure(rows: list[dict], path=None) -> Figure:
    """Per known type: our means ± std and the paper's values, one panel per (dataset, category,
    shots).

    Known types on the x axis (then "mean" where there is a mean row; for the paper's classes the
    paper's types are always shown, so its values appear even where we have no run). One series per
    method (colour: deviation, dra, atac; with several backbones/budgets, one series per method and
    setup, marker shape by setup), offset sideways. Ours: filled points with error bars (sample std;
    none for n = 1). The paper's Table 2 value: a hollow circle of the method's colour; where the
    printed mean is an erratum, a hollow square at the mean of the paper's per-type values, marked †.

    Args:
        rows: from :func:`atac.reporting.table2_rows`.
        path: where to save the figure (any format matplotlib knows), or None.
    Returns:
        A Figure with exactly one axes per (dataset, category, shots), y = the rows' metric.
    Raises:
        ValueError: no rows.
    """
    panels = _panels(rows, ("dataset", "category", "shots"))
    setups = sorted({(r["backbone"], r["budget"]) for r in rows}, key=str)
    methods = sorted({r["method"] for r in rows} | set(TABLE2_ORDER), key=table2_method_order)
    series = [(m, s) for m in methods for s in setups]
    paper = paper_table2()
    n = len(panels)
    shots_all = sorted({k[2] for k in panels})
    ncols = min(max(1, len(shots_all)), n) if n > 1 else 1
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.4 * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        fig.delaxes(ax)
    color = {m: f"C{i}" for i, m in enumerate(methods)}
    markers = "osD^v<>"
    for ax, ((dataset, category, shots), prs) in zip(axes, sorted(panels.items(), key=lambda kv: str(kv[0]))):
        types = {r["known_type"] for r in prs}
        pkeys = [k for k in paper if dataset == "mvtec_ad" and k[0] == category and k[2] == shots]
        types |= {k[1] for k in pkeys}
        types = sorted(types, key=type_order)
        x = {t: i for i, t in enumerate(types)}
        width = 0.6 / max(1, len(series))
        for j, (m, s) in enumerate(series):
            off = (j - (len(series) - 1) / 2) * width
            pts = [r for r in prs if r["method"] == m and (r["backbone"], r["budget"]) == s]
            mk = markers[setups.index(s) % len(markers)]
            if pts:
                label = (f"ours, {PAPER_NAMES.get(m, m)}"
                         + (f", {s[0]} ({s[1]})" if len(setups) > 1 else ""))
                ax.errorbar([x[r["known_type"]] + off for r in pts], [r["mean"] for r in pts],
                            yerr=[r["std"] or 0.0 for r in pts], fmt=mk, ms=5, capsize=3,
                            color=color[m], label=label)
            if setups.index(s) == 0:
                pp = [(t, paper[(category, t, shots, m)]["image_auroc"]) for t in types
                      if (category, t, shots, m) in paper and dataset == "mvtec_ad"]
                if pp:
                    ax.plot([x[t] + off for t, _ in pp], [v for _, v in pp], "o", ms=9, mfc="none",
                            mec=color[m], mew=1.3, ls="none", label=f"paper, {PAPER_NAMES[m]} (ResNet-50)")
                for t in types:   # an erratum: the mean of the paper's types too, marked †
                    p = paper.get((category, t, shots, m)) if dataset == "mvtec_ad" else None
                    if p and p["erratum"]:
                        ax.plot([x[t] + off], [p["types_mean"]], "s", ms=8, mfc="none", mec=color[m],
                                mew=1.0, ls="none", label="paper: mean of its types, where the printed "
                                                         f"mean is an erratum ({ERRATUM_MARK})")
                        ax.annotate(ERRATUM_MARK, (x[t] + off, p["types_mean"]), xytext=(5, 2),
                                    textcoords="offset points", fontsize=9, color=color[m])
        if MEAN in x:
            ax.axvline(x[MEAN] - 0.5, color="0.7", lw=0.8)
        ax.set_xticks(range(len(types)))
        ax.set_xticklabels([t.replace("_", "\n") for t in types], fontsize=8)
        ax.set_xlim(-0.6, len(types) - 0.4)
        name = category if category == dataset else f"{dataset} / {category}"
        ax.set_title(f"{name}, {shots} known anomal{'y' if shots == 1 else 'ies'}", fontsize=10)
        ax.set_xlabel("known (training) anomaly type", fontsize=8)
        ax.set_ylabel(_metric_label(prs[0]["metric"]) + " on unseen types")
        ax.grid(axis="y", alpha=0.3)
    handles: dict = {}
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", fontsize=8,
               ncols=min(3, len(handles)))
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig



def metric_curves(x: Sequence[float], series: Mapping[str, Sequence[float]], xlabel: str,
                  ylabel: str, title: str | None = None, ylim: tuple[float, float] | None = None) -> Figure:
    """One or more measured quantities against a swept value (e.g. AUROC and zoom rates against w).

    Args:
        x: the swept values; series: ``{name: values}`` of len(x) each (None or NaN: not drawn).
        xlabel, ylabel, title: labels; ylim: optional y range.
    Returns:
        A Figure with one axes, a marked line per series.
    Raises:
        ValueError: a series of another length than ``x``, or no series.
    """
    if not series:
        raise ValueError("metric_curves needs at least one series")
    xs = np.asarray(list(x), dtype=np.float64)
    fig = Figure(figsize=(5.0, 3.3), layout="constrained")
    ax = fig.subplots()
    markers = "osD^vx"
    for j, (name, vals) in enumerate(series.items()):
        v = np.array([np.nan if a is None else float(a) for a in vals], dtype=np.float64)
        if v.shape != xs.shape:
            raise ValueError(f"series '{name}' has {v.size} values for {xs.size} x values")
        ax.plot(xs, v, marker=markers[j % len(markers)], ms=4, lw=1.5, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def grouped_bars(groups: Sequence[str], series: Mapping[str, Sequence[float]], ylabel: str,
                 title: str | None = None, ylim: tuple[float, float] | None = (0.0, 1.0)) -> Figure:
    """Bars of a measured value per group and series (e.g. image AUROC per method, with and without
    pseudo-anomalies), each bar labelled with its value.

    Args:
        groups: the x-axis groups; series: ``{name: one value per group}`` (None: no bar).
        ylabel, title: labels; ylim: y range (default 0..1, for AUROC).
    Returns:
        A Figure with one axes.
    Raises:
        ValueError: no series, or a series of another length than ``groups``.
    """
    if not series:
        raise ValueError("grouped_bars needs at least one series")
    k, n = len(series), len(groups)
    width = 0.8 / k
    fig = Figure(figsize=(max(3.6, 1.2 * n * k + 1.2), 3.3), layout="constrained")
    ax = fig.subplots()
    for j, (name, vals) in enumerate(series.items()):
        vals = list(vals)
        if len(vals) != n:
            raise ValueError(f"series '{name}' has {len(vals)} values for {n} groups")
        xs = np.arange(n) + (j - (k - 1) / 2) * width
        for x0, v in zip(xs, vals):
            if v is None:
                continue
            ax.bar(x0, float(v), width=width * 0.95, color=f"C{j}")
            ax.text(x0, float(v), f"{float(v):.3f}", ha="center", va="bottom", fontsize=7)
        ax.bar(np.nan, 0, color=f"C{j}", label=name)  # legend entry
    ax.set_xticks(np.arange(n), [str(g) for g in groups])
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig
