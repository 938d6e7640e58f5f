"""The pre-registered zoom study (``paper_runs/zoom-study-cpu.yaml``): its arms and hypotheses as
code, read from its results with the paired statistics of :mod:`atac.stats`.

The sweep file's header is the registration (hypotheses H1–H5, arms A–H, seeds, decision rule);
this module only names the same arms by their labels (:func:`atac.frame.arm_labels`) and computes
the comparisons the header names, so that a chapter's sentences come from the results.
"""

from __future__ import annotations

import pandas as pd

from .stats import contrast, interval_text, summarize_contrast, t_check_text

ARMS = {
    "A": "deviation",
    "B": "atac",
    "C": "atac zoom_loss=per_view",
    "D": "atac batchnorm=frozen",
    "E": "atac batchnorm=frozen zoom_loss=per_view",
    "F": "deviation batchnorm=frozen",
    "G": "deviation augment=rotate batch_mix=half_normals",
    "H": "atac augment=rotate batch_mix=half_normals",
}
CLASSES = 3
SEEDS = 6
SIGMA_SHARE_BOUND = 0.05

# (hypothesis, what is compared, the contrast as {arm letter: coefficient}, the predicted sign; 0
# where the registration states no direction: the reading is then two-sided)
COMPARISONS = (
    ("H1", "C − B: per-view loss against literal ATAC-Net", {"C": 1, "B": -1}, +1),
    ("H2", "D − B: frozen BatchNorm against literal ATAC-Net", {"D": 1, "B": -1}, +1),
    ("H2", "(D − F) − (B − A): the zoom's effect under frozen against train-mode BatchNorm",
     {"D": 1, "F": -1, "B": -1, "A": 1}, 0),
    ("H3", "B − A: literal ATAC-Net against step III", {"B": 1, "A": -1}, +1),
    ("H3", "C − A: per-view loss against step III", {"C": 1, "A": -1}, +1),
    ("H3", "D − A: frozen BatchNorm against step III", {"D": 1, "A": -1}, +1),
    ("H3", "E − A: per-view loss and frozen BatchNorm against step III", {"E": 1, "A": -1}, +1),
    ("H4", "H − A: ATAC-Net with the lineage's rotation and batch mix against step III",
     {"H": 1, "A": -1}, +1),
    ("H4", "(H − G) − (B − A): the zoom's effect with against without the lineage's rotation and batch mix",
     {"H": 1, "G": -1, "B": -1, "A": 1}, 0),
)


def _reading(verdict: str, sign: int) -> str:
    if verdict == "too few pairs":
        return "not yet measured"
    if verdict == "not distinguishable":
        return "not shown (interval includes 0)"
    if sign == 0:
        return f"a difference ({verdict} 0; no direction was registered)"
    return "as predicted" if (verdict == "above") == (sign > 0) else "opposite to the prediction"


def comparisons(frame: pd.DataFrame, metric: str = "image_auroc") -> pd.DataFrame:
    """Every pre-registered comparison, pooled over the classes: ``hypothesis``, ``comparison``,
    ``n`` (pairs), ``mean``, ``ci_low``, ``ci_high``, ``n_positive``, ``verdict``, the t check
    ``t_low``, ``t_high``, ``t_verdict`` (:func:`atac.stats.t_interval`; not the registered rule) and
    ``reading`` (of ``verdict``, against the predicted sign). A comparison whose arms have no run yet
    has n = 0."""
    present = set(frame["arm"]) if len(frame) else set()
    rows = []
    for hyp, what, terms, sign in COMPARISONS:
        labels = {ARMS[k]: c for k, c in terms.items()}
        if set(labels) <= present:
            s = summarize_contrast(contrast(frame, labels, metric))
        else:
            s = summarize_contrast(pd.DataFrame({"class": [], "diff": []}))
        rows.append({"hypothesis": hyp, "comparison": what, **s, "reading": _reading(s["verdict"], sign)})
    return pd.DataFrame(rows)


def format_comparisons(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`comparisons` for reading: ``hypothesis``, ``comparison``, ``difference`` as
    ``+0.012 [-0.004, +0.030]`` (three decimals), ``positive`` as ``5/6``, ``verdict``, ``reading``
    and ``t check`` (the t interval and its verdict; not the registered rule), as
    :func:`atac.stats.format_comparison` writes them."""
    return pd.DataFrame({
        "hypothesis": table["hypothesis"], "comparison": table["comparison"],
        "difference": [interval_text(*v) for v in zip(table["mean"], table["ci_low"], table["ci_high"])],
        "positive": [f"{p}/{n}" for p, n in zip(table["n_positive"], table["n"])],
        "verdict": table["verdict"], "reading": table["reading"],
        "t check": [t_check_text(*v) for v in zip(table["t_low"], table["t_high"], table["t_verdict"])]})


def completeness(frame: pd.DataFrame, classes: int = CLASSES, seeds: int = SEEDS) -> pd.DataFrame:
    """Per registered arm: ``arm`` (letter), ``label``, ``runs`` recorded, ``classes`` and
    ``seeds`` it has runs of, ``planned`` (classes × seeds) and ``complete`` (every class has every
    seed 0..seeds-1); then one row per arm of the frame that the registration does not name,
    ``arm`` = "exploratory"."""
    rows = []
    registered = set(ARMS.values())
    labels = list(ARMS.items()) + [("exploratory", a) for a in sorted(set(frame["arm"]) - registered)] \
        if len(frame) else list(ARMS.items())
    for letter, label in labels:
        sub = frame[frame["arm"] == label] if len(frame) else frame
        per_class = sub.groupby("category")["seed"].apply(set) if len(sub) else pd.Series(dtype=object)
        full = sum(1 for s in per_class if set(range(seeds)) <= set(s))
        rows.append({"arm": letter, "label": label, "runs": len(sub), "classes": len(per_class),
                     "planned": classes * seeds, "complete": letter != "exploratory" and full >= classes})
    return pd.DataFrame(rows)


def sigma_share(telemetry: pd.DataFrame) -> dict:
    """H5 from :func:`atac.frame.telemetry_frame`: σ's share of the crop map at the last epoch of each
    literal ATAC-Net run (arm B): ``n`` runs, ``max``, ``median`` and ``reading`` (all under
    :data:`SIGMA_SHARE_BOUND`: as predicted)."""
    t = telemetry[telemetry["arm"] == ARMS["B"]] if len(telemetry) else telemetry
    if not len(t):
        return {"n": 0, "max": None, "median": None, "reading": "not yet measured"}
    last = t[t["epoch"] == t.groupby(["category", "seed"])["epoch"].transform("max")]
    per_run = last.groupby(["category", "seed"])["sigma_share_crop_map"].first().astype(float)
    per_run = per_run.dropna()
    if not len(per_run):
        return {"n": 0, "max": None, "median": None, "reading": "not yet measured"}
    ok = bool((per_run < SIGMA_SHARE_BOUND).all())
    return {"n": len(per_run), "max": float(per_run.max()), "median": float(per_run.median()),
            "reading": "as predicted" if ok else "opposite to the prediction"}


#: the diagnostics a study run records (:func:`atac.frame.diagnostics_frame` columns) and their short,
#: readable names in :func:`diagnostics_summary`
DIAGNOSTIC_NAMES = {
    "zoom_rate_normal": "zoom rate, normal",
    "zoom_rate_anomalous": "zoom rate, anomalous",
    "auroc_zoomed_anomalies": "AUROC, zoomed anomalies",
    "auroc_unzoomed_anomalies": "AUROC, unzoomed anomalies",
    "box_coverage.mean": "defect in box",
    "forced_zoom.auroc_crop_vs_full": "forced zoom: crop vs full AUROC",
    "batchnorm.spearman_vs_recorded": "batch norm: Spearman vs recorded",
}


def diagnostics_summary(diagnostics: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """The mean of each diagnostic (:data:`DIAGNOSTIC_NAMES`) per arm and class, rounded to ``digits``,
    its columns named in words (a diagnostic the frame lacks is left out)."""
    keys = [k for k in DIAGNOSTIC_NAMES if k in diagnostics.columns]
    return (diagnostics.groupby(["arm", "category"])[keys].mean().round(digits)
            .rename(columns=DIAGNOSTIC_NAMES).rename_axis(index={"category": "class"}))
