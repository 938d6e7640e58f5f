"""Figures of the zoom diagnostics and of paired comparisons, drawn with seaborn from tidy frames
(:func:`atac.frame.telemetry_frame`, :func:`atac.frame.diagnostics_frame`,
:func:`atac.stats.paired_comparison`). Each returns a :class:`matplotlib.figure.Figure` built
without ``pyplot``, as :mod:`atac.plots` does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

SLOT_ORDER = ("normal", "pseudo", "anomalous")


def telemetry_figure(telemetry: pd.DataFrame, arm: str) -> Figure:
    """One arm's training telemetry over epochs, mean over runs with a 95% band (seaborn): the zoom
    rate by slot, the full-image and crop scores by slot, and σ's share of the crop and score maps.

    Raises:
        ValueError: the arm has no telemetry.
    """
    t = telemetry[telemetry["arm"] == arm]
    if t.empty:
        raise ValueError(f"no training telemetry for arm {arm!r}")
    fig = Figure(figsize=(11, 3.2), layout="constrained")
    ax1, ax2, ax3 = fig.subplots(1, 3)
    sns.lineplot(t, x="epoch", y="zoom_rate", hue="slot", hue_order=SLOT_ORDER, ax=ax1)
    ax1.set(ylabel="zoomed share of the slots", ylim=(-0.02, 1.02), title="training batches: zoom rate")
    scores = t.melt(id_vars=["epoch", "slot"], value_vars=["score_full", "score_crop"], var_name="view",
                    value_name="score")
    scores["view"] = scores["view"].map({"score_full": "full image (a1)", "score_crop": "crop (a2)"})
    sns.lineplot(scores, x="epoch", y="score", hue="slot", hue_order=SLOT_ORDER, style="view", ax=ax2)
    ax2.set(ylabel="mean score", title="scores by slot")
    ax2.legend(fontsize=7)
    share = t.drop_duplicates(["category", "seed", "epoch"]).melt(
        id_vars=["epoch"], value_vars=["sigma_share_crop_map", "sigma_share_score_map"], var_name="map",
        value_name="share")
    share["map"] = share["map"].map({"sigma_share_crop_map": "attention (crop) map",
                                     "sigma_share_score_map": "score map"})
    sns.lineplot(share, x="epoch", y="share", hue="map", ax=ax3)
    ax3.set(ylabel="σ's share", title="how much of each map σ makes")
    fig.suptitle(arm, fontsize=10)
    return fig


def diagnostics_figure(diagnostics: pd.DataFrame) -> Figure:
    """Test diagnostics per arm and class, one point per run (seaborn strip plots): the share of the
    defect inside the crop box (zoomed anomalies), the forced-zoom probe (AUROC of normals' crops
    against their full images: 0.5 = a crop alone changes nothing) and the rank correlation of the
    scores after re-estimating BatchNorm on training normals with the recorded scores.

    Raises:
        ValueError: an empty frame.
    """
    if diagnostics.empty:
        raise ValueError("no zoom diagnostics to draw")
    panels = [("box_coverage.mean", "defect share inside the crop", (0, 1.02)),
              ("forced_zoom.auroc_crop_vs_full", "crop vs full, normals (AUROC)", (0, 1.02)),
              ("batchnorm.spearman_vs_recorded", "BN re-estimated vs recorded (Spearman)", (-1.02, 1.02))]
    fig = Figure(figsize=(11, 0.6 + 0.45 * max(3, diagnostics["arm"].nunique())), layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    for ax, (col, title, lim) in zip(axes, panels):
        d = diagnostics.assign(value=pd.to_numeric(diagnostics.get(col), errors="coerce"))
        sns.stripplot(d, x="value", y="arm", hue="category", dodge=True, ax=ax, size=4)
        ax.set(xlabel=title, ylabel="", xlim=lim)
        if col.startswith("forced"):
            ax.axvline(0.5, color="0.5", lw=0.8, ls="--")
        if ax is not axes[-1] and ax.get_legend():
            ax.get_legend().remove()
    return fig


def contrast_figure(table: pd.DataFrame, title: str | None = None) -> Figure:
    """Paired differences with their 95% intervals (rows of :func:`atac.stats.paired_comparison`):
    one row per arm, a point per class (pooled in black), the zero line dashed.

    Raises:
        ValueError: an empty table.
    """
    if table.empty:
        raise ValueError("no paired comparisons to draw")
    arms = list(dict.fromkeys(table["arm"]))
    classes = list(dict.fromkeys(c for c in table["class"] if c != "pooled")) + ["pooled"]
    fig = Figure(figsize=(7.5, 0.9 + 0.5 * len(arms)), layout="constrained")
    ax = fig.subplots()
    step = 0.7 / max(1, len(classes))
    for j, cls in enumerate(classes):
        sub = table[table["class"] == cls]
        if sub.empty:
            continue
        y = np.array([arms.index(a) for a in sub["arm"]]) + (j - (len(classes) - 1) / 2) * step
        lo = (sub["mean_diff"] - sub["ci_low"]).fillna(0).clip(lower=0)
        hi = (sub["ci_high"] - sub["mean_diff"]).fillna(0).clip(lower=0)
        color = "black" if cls == "pooled" else f"C{j}"
        ax.errorbar(sub["mean_diff"], y, xerr=[lo, hi], fmt="o", color=color, ms=4, capsize=2, label=cls)
    ax.axvline(0, color="0.4", ls="--", lw=0.8)
    ax.set_yticks(range(len(arms)), arms)
    ax.invert_yaxis()
    base = ", ".join(dict.fromkeys(table["baseline"]))
    ax.set_xlabel(f"image AUROC, arm − {base} (paired; 95% interval)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def batchnorm_shift_frame(record: dict) -> pd.DataFrame:
    """The layers of a ``paper_runs/bn_shift.py`` record as a tidy frame: one row per class and
    BatchNorm layer (``category``, ``layer``, ``name``, ``var_ratio``, ``mean_shift``)."""
    return pd.DataFrame([{"category": c["category"], **layer} for c in record["classes"]
                         for layer in c["layers"]])


def batchnorm_shift_figure(record: dict) -> Figure:
    """Per BatchNorm layer of the backbone (forward order), the variance of a class's training
    normals over the layer's running variance (log scale; 1 = what frozen BatchNorm expects), one
    line per class: the record of ``paper_runs/bn_shift.py``
    (:func:`atac.diagnostics.batchnorm_input_shift`).

    Raises:
        ValueError: a record without classes.
    """
    d = batchnorm_shift_frame(record)
    if d.empty:
        raise ValueError("no BatchNorm layers in the record")
    fig = Figure(figsize=(7.5, 3.0), layout="constrained")
    ax = fig.subplots()
    sns.lineplot(d, x="layer", y="var_ratio", hue="category", marker="o", markersize=3, ax=ax)
    ax.set_yscale("log")
    ax.axhline(1.0, color="0.5", lw=0.8, ls="--")
    ax.set(xlabel="BatchNorm layer (input to output)", ylabel="variance / running variance",
           title="training normals against ImageNet BatchNorm statistics")
    ax.legend(title=None, fontsize=8, loc="lower left", ncols=3)
    return fig
