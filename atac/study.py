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


def load_machine_windows(path) -> list[dict]:
    """The CPU types a results file's sittings ran on, from a JSON file beside it
    (``paper_runs/results/zoom-study-cpu.machines.json``): its ``windows``, each a dict with
    ``from`` and ``until`` (ISO 8601 UTC times; null for open), ``cpu_model`` and
    ``cpu_capability``. An absent file gives ``[]``.

    Raises:
        ValueError: the file is not JSON, or a window lacks one of those fields (the message
            names the file and the window).
    """
    import json
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        return []
    try:
        windows = json.loads(path.read_text())["windows"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a machine-windows file (JSON with a 'windows' list): {exc}") from exc
    for i, w in enumerate(windows):
        missing = [k for k in ("from", "until", "cpu_model", "cpu_capability") if k not in w]
        if missing:
            raise ValueError(f"{path}: window {i} lacks {', '.join(missing)}")
    return windows


def machine_types(records: list[dict], windows: list[dict] = ()) -> pd.DataFrame:
    """Which CPU type trained each run, counted: one row per type with ``cpu`` ("model, capability"),
    ``runs`` and ``seeds`` (sorted). A record's type is its own ``machine.cpu_model`` and
    ``machine.cpu_capability`` where it records them; otherwise that of the window (see
    :func:`load_machine_windows`) its ``finished`` time falls in (``from`` < finished ≤ ``until``);
    otherwise "not recorded". Older code did not record the CPU type, hence the windows."""
    from datetime import datetime

    def when(text):
        return None if text is None else datetime.fromisoformat(str(text).replace("Z", "+00:00"))

    spans = [(when(w["from"]), when(w["until"]), f"{w['cpu_model']}, {w['cpu_capability']}")
             for w in windows]
    rows = []
    for r in records:
        m = r.get("machine") or {}
        cpu = (f"{m['cpu_model']}, {m['cpu_capability']}"
               if m.get("cpu_model") and m.get("cpu_capability") else None)
        if cpu is None and r.get("finished"):
            t = when(r["finished"])
            cpu = next((c for lo, hi, c in spans
                        if (lo is None or lo < t) and (hi is None or t <= hi)), None)
        rows.append({"cpu": cpu or "not recorded", "seed": r.get("seed")})
    if not rows:
        return pd.DataFrame({"cpu": [], "runs": [], "seeds": []})
    frame = pd.DataFrame(rows)
    out = frame.groupby("cpu", sort=False).agg(runs=("seed", "size"),
                                               seeds=("seed", lambda s: sorted(set(s))))
    return out.reset_index()


def machine_sentence(types: pd.DataFrame) -> str:
    """:func:`machine_types` in words: "one CPU type: X (n runs)" or "k CPU types: X (n runs, seeds
    0–2), Y (m runs, seeds 3, 4)"."""
    if not len(types):
        return "no CPU type yet (no runs)"

    def seeds(s):
        s = list(s)
        if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
            return f"seeds {s[0]}–{s[-1]}"
        return ("seed " if len(s) == 1 else "seeds ") + ", ".join(map(str, s))

    parts = [f"{r['cpu']} ({r['runs']} run{'s' if r['runs'] != 1 else ''}, {seeds(r['seeds'])})"
             for _, r in types.iterrows()]
    return (f"one CPU type: {parts[0]}" if len(parts) == 1
            else f"{len(parts)} CPU types: " + "; ".join(parts))
