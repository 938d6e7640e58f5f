"""The pre-registered zoom study (``paper_runs/zoom-study-cpu.yaml``): its arms and hypotheses as
code, read from its results with the paired statistics of :mod:`atac.stats`.

The sweep file's header is the registration (hypotheses H1–H5, arms A–H, seeds, decision rule);
this module only names the same arms by their labels (:func:`atac.frame.arm_labels`) and computes
the comparisons the header names, so that a chapter's sentences come from the results.
"""

from __future__ import annotations

import pandas as pd

from .methods import METHODS
from .results import cpu_type
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


#: the CPU type of a record that names none and falls in no window (:func:`record_cpu_types`)
UNKNOWN_CPU = "not recorded"


def _require_cpu(frame: pd.DataFrame, caller: str) -> None:
    if "cpu" not in frame.columns:
        raise KeyError(f"{caller} needs a 'cpu' column: "
                       "frame.assign(cpu=study.record_cpu_types(records, windows))")


def _pairs(frame: pd.DataFrame, labels) -> pd.DataFrame:
    """Per (class, seed) with a run of every arm in ``labels``: ``mixed``, whether those runs were
    trained on more than one CPU type (``cpu`` column; an unknown type counts as its own)."""
    sub = frame[frame["arm"].isin(list(labels))]
    groups = sub.assign(cpu=sub["cpu"].fillna(UNKNOWN_CPU)).groupby(["category", "seed"])
    out = groups.agg(arms=("arm", "nunique"), kinds=("cpu", "nunique"))
    out = out[out["arms"] == len(set(labels))]
    return out.assign(mixed=out["kinds"] > 1)[["mixed"]]


def _one_cpu_type(frame: pd.DataFrame, labels) -> pd.DataFrame:
    """``frame`` without the runs of ``labels``' arms in the pairs of :func:`_pairs` that are mixed."""
    mixed = _pairs(frame, labels).query("mixed").index
    keys = pd.MultiIndex.from_frame(frame[["category", "seed"]])
    return frame[~(frame["arm"].isin(list(labels)) & keys.isin(mixed))]


def comparisons(frame: pd.DataFrame, metric: str = "image_auroc", one_cpu_type: bool = False) -> pd.DataFrame:
    """Every pre-registered comparison, pooled over the classes: ``hypothesis``, ``comparison``,
    ``n`` (pairs), ``mean``, ``ci_low``, ``ci_high``, ``n_positive``, ``verdict``, the t check
    ``t_low``, ``t_high``, ``t_verdict`` (:func:`atac.stats.t_interval`; not the registered rule) and
    ``reading`` (of ``verdict``, against the predicted sign). A comparison whose arms have no run yet
    has n = 0. ``one_cpu_type``: leave out, per comparison, the pairs whose arms were trained on
    more than one CPU type (``frame`` then needs a ``cpu`` column: :func:`record_cpu_types`); a
    check outside the registration.

    Raises:
        KeyError: ``one_cpu_type`` without a ``cpu`` column.
    """
    if one_cpu_type and len(frame):
        _require_cpu(frame, "comparisons(one_cpu_type=True)")
    present = set(frame["arm"]) if len(frame) else set()
    rows = []
    for hyp, what, terms, sign in COMPARISONS:
        labels = {ARMS[k]: c for k, c in terms.items()}
        if set(labels) <= present:
            s = summarize_contrast(contrast(_one_cpu_type(frame, labels) if one_cpu_type else frame,
                                            labels, metric))
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


def _last_epoch(telemetry: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The rows of :func:`atac.frame.telemetry_frame` at each run's (``keys``) last epoch."""
    return telemetry[telemetry["epoch"] == telemetry.groupby(keys)["epoch"].transform("max")]


def sigma_share(telemetry: pd.DataFrame) -> dict:
    """H5 from :func:`atac.frame.telemetry_frame`: σ's share of the crop map at the last epoch of each
    literal ATAC-Net run (arm B): ``n`` runs, ``max``, ``median`` and ``reading`` (all under
    :data:`SIGMA_SHARE_BOUND`: as predicted)."""
    t = telemetry[telemetry["arm"] == ARMS["B"]] if len(telemetry) else telemetry
    if not len(t):
        return {"n": 0, "max": None, "median": None, "reading": "not yet measured"}
    per_run = _last_epoch(t, ["category", "seed"]).groupby(["category", "seed"])["sigma_share_crop_map"].first().astype(float)
    per_run = per_run.dropna()
    if not len(per_run):
        return {"n": 0, "max": None, "median": None, "reading": "not yet measured"}
    ok = bool((per_run < SIGMA_SHARE_BOUND).all())
    return {"n": len(per_run), "max": float(per_run.max()), "median": float(per_run.median()),
            "reading": "as predicted" if ok else "opposite to the prediction"}


#: the comparison each hypothesis's registration predicts (the prefix of its ``comparison`` before
#: the colon); H3 is read from all its comparisons (:func:`claim`), H5 from :func:`sigma_share`
PRIMARY = {"H1": "C − B", "H2": "D − B", "H4": "(H − G) − (B − A)"}

#: the lead each hypothesis tests, as the chapter names it
LEADS = {"H1": "a shortcut in the loss", "H2": "two BatchNorm contexts",
         "H4": "the lineage's rotation and batch mix", "H5": "σ's role in the crop"}

_OUTCOME = {"as predicted": "supported", "opposite to the prediction": "refuted",
            "not shown (interval includes 0)": "not shown", "not yet measured": "not yet measured"}


def comparison_row(verdicts: pd.DataFrame, prefix: str) -> pd.Series | None:
    """The row of :func:`comparisons` whose comparison starts with ``prefix`` (its text before the
    colon, e.g. ``"C − B"``), or None when there is none or it has no pairs."""
    rows = verdicts[verdicts["comparison"].str.split(":").str[0] == prefix] if len(verdicts) else verdicts
    return rows.iloc[0] if len(rows) and rows["n"].iloc[0] else None


def findings(verdicts: pd.DataFrame, h5: dict) -> dict[str, str]:
    """Each hypothesis's outcome, read from its registered comparison (:data:`PRIMARY`) in
    :func:`comparisons` and, for H5, from :func:`sigma_share`: ``{"H1": "supported", ...}`` with one
    of supported / refuted / not shown / not yet measured. A two-sided comparison (no registered
    direction) supports its hypothesis when its interval excludes 0. H3 is :func:`claim`."""
    out = {}
    for hyp, prefix in PRIMARY.items():
        row = comparison_row(verdicts, prefix)
        reading = "not yet measured" if row is None else row["reading"]
        out[hyp] = "supported" if reading.startswith("a difference") else _OUTCOME[reading]
    out["H5"] = _OUTCOME[h5["reading"]]
    return out


def claim(verdicts: pd.DataFrame) -> dict[str, list[str]]:
    """H3, the paper's claim: the arms of step V compared with step III (B, C, D, E against A),
    grouped by verdict: ``{"above": [...], "not distinguishable": [...], "below": [...],
    "too few pairs": [...]}`` (arm letters; every key present). The claim is recovered when "above"
    is not empty."""
    out = {"above": [], "not distinguishable": [], "below": [], "too few pairs": []}
    rows = verdicts[verdicts["hypothesis"] == "H3"] if len(verdicts) else verdicts
    for _, r in rows.iterrows():
        out[r["verdict"]].append(r["comparison"].split(" ")[0])
    return out


def margin_check(frame: pd.DataFrame, telemetry: pd.DataFrame, n_resamples: int = 10_000) -> dict:
    """H1's registered telemetry prediction: the share of anomaly slots whose full-image score alone
    meets the deviation loss's margin (``margin_met_full_anomalous``) is higher with the per-view
    loss (C) than in literal ATAC-Net (B). The registration names no epoch; this reads each run's
    last. Paired C − B by class and seed as :func:`comparisons` does.

    Args:
        frame: :func:`atac.frame.records_frame` of the study (``arm``, class fields, ``seed``,
            ``split_id``).
        telemetry: :func:`atac.frame.telemetry_frame` of the same records.

    Returns:
        :func:`atac.stats.summarize_contrast`'s dict, ``reading`` (against the predicted sign),
        ``n_ties`` (pairs with C = B) and ``b_at_ceiling`` (pairs whose B run's share is 1, where C
        cannot be higher).
    """
    col = "margin_met_full_anomalous"
    arms = [ARMS["C"], ARMS["B"]]
    t = telemetry[telemetry["arm"].isin(arms)] if len(telemetry) else telemetry
    if not len(t) or set(t["arm"]) != set(arms):
        s = summarize_contrast(pd.DataFrame({"class": [], "diff": []}))
        return {**s, "reading": _reading(s["verdict"], +1), "n_ties": 0, "b_at_ceiling": 0}
    keys = ["arm", "dataset", "category", "shots", "setting", "seed"]
    per_run = _last_epoch(t, keys).groupby(keys)[col].first().astype(float).reset_index()
    runs = frame[frame["arm"].isin(arms)].merge(per_run, on=keys, how="inner")
    values = contrast(runs, {ARMS["C"]: 1, ARMS["B"]: -1}, col)
    s = summarize_contrast(values, n_resamples=n_resamples)
    paired = runs[runs["arm"] == ARMS["B"]].merge(values[["category", "seed"]], on=["category", "seed"])
    return {**s, "reading": _reading(s["verdict"], +1), "n_ties": int((values["diff"].abs() < 1e-12).sum()),
            "b_at_ceiling": int((paired[col] >= 1 - 1e-12).sum())}


def full_image_auroc(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (:func:`atac.frame.records_frame`) with ``full_image_auroc``: the image AUROC of the
    full-image score alone (``view_auroc_full`` for a zoom method; ``image_auroc`` for a method
    without a zoom, whose score is the full image's; NaN for a zoom run that recorded no
    ``view_auroc``), for :func:`atac.stats.contrast` with that metric."""
    full = frame["view_auroc_full"] if "view_auroc_full" in frame else pd.Series(None, index=frame.index)
    full = pd.to_numeric(full, errors="coerce")
    no_zoom = frame["method"].map(lambda m: m in METHODS and not METHODS[m].zoom)
    return frame.assign(full_image_auroc=full.where(full.notna() | ~no_zoom, frame["image_auroc"]))


def zoom_effect(diagnostics: pd.DataFrame, arm: str = ARMS["B"]) -> dict:
    """What the zoomed view did to the test ranking of one arm's runs: the final image AUROC
    (``image_auroc``, of the mean of the full-image and crop scores) against that of the full-image
    score alone (``view_auroc_full``), with the zoom rates and the zoomed/unzoomed AUROCs.

    Args:
        diagnostics: :func:`atac.frame.diagnostics_frame` (one row per zoom run).

    Returns:
        ``n`` (the arm's runs with ``view_auroc_full``), the means over runs of
        ``zoom_rate_anomalous``, ``zoom_rate_normal``, ``auroc_zoomed`` and ``auroc_unzoomed``
        (final scores of each kind of anomaly against all normals; None where no run has one),
        ``n_changed`` (runs whose final AUROC differs from the full-image one),
        ``n_changed_normals_zoomed`` (of those, runs where some normal test image was zoomed; None
        where no changed run recorded its zoom rate), ``mean_change`` (over all ``n`` runs) and
        ``max_abs_change`` (final − full-image AUROC). With ``n`` 0 every other value is None.
    """
    keys = ("zoom_rate_anomalous", "zoom_rate_normal", "auroc_zoomed", "auroc_unzoomed", "n_changed",
            "n_changed_normals_zoomed", "mean_change", "max_abs_change")
    d = diagnostics[(diagnostics["arm"] == arm) & diagnostics["view_auroc_full"].notna()] if len(diagnostics) else diagnostics
    if not len(d):
        return {"n": 0, **dict.fromkeys(keys)}
    change = d["image_auroc"].astype(float) - d["view_auroc_full"].astype(float)
    changed = change.abs() > 1e-9
    normal_rate = pd.to_numeric(d["zoom_rate_normal"], errors="coerce")
    known = normal_rate[changed].dropna()

    def mean(column: str) -> float | None:
        v = pd.to_numeric(d[column], errors="coerce").dropna()
        return float(v.mean()) if len(v) else None

    return {"n": len(d), "zoom_rate_anomalous": mean("zoom_rate_anomalous"), "zoom_rate_normal": mean("zoom_rate_normal"),
            "auroc_zoomed": mean("auroc_zoomed_anomalies"), "auroc_unzoomed": mean("auroc_unzoomed_anomalies"),
            "n_changed": int(changed.sum()), "n_changed_normals_zoomed": int((known > 0).sum()) if len(known) else None,
            "mean_change": float(change.mean()), "max_abs_change": float(change.abs().max())}

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


def _utc(text, where: str):
    """An ISO 8601 time as an aware UTC datetime (a time without an offset is read as UTC);
    None stays None. Raises ValueError naming ``where``."""
    from datetime import datetime, timezone

    if text is None:
        return None
    try:
        t = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"{where}: {text!r} is not an ISO 8601 time") from exc
    return t.replace(tzinfo=timezone.utc) if t.tzinfo is None else t.astimezone(timezone.utc)


def load_machine_windows(path, required: bool = False) -> list[dict]:
    """The CPU types the sittings of a study ran on, read from the JSON file ``path``
    (``paper_runs/results/zoom-study-cpu.machines.json``): its ``windows``, a list of objects with
    ``from`` and ``until`` (ISO 8601 times, UTC where no offset is given; null: open),
    ``cpu_model`` and ``cpu_capability``, in time order and not overlapping. A record belongs to
    the window with ``from`` < ``finished`` ≤ ``until``.

    Returns:
        the windows, ``from``/``until`` parsed to aware UTC datetimes; ``[]`` when ``path`` does not
        exist and ``required`` is false.
    Raises:
        FileNotFoundError: ``path`` does not exist and ``required`` is true.
        ValueError: the file is not JSON with a ``windows`` list of objects, a window lacks a field
            or has a time that does not parse, ``from`` is not before ``until``, or two windows
            overlap (each message names the file and the window's index).
    """
    import json
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"machine-windows file not found: {path}")
        return []
    try:
        windows = json.loads(path.read_text())["windows"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a machine-windows file (JSON with a 'windows' list): {exc}") from exc
    if not isinstance(windows, list) or not all(isinstance(w, dict) for w in windows):
        raise ValueError(f"{path}: 'windows' must be a list of objects")
    out = []
    for i, w in enumerate(windows):
        missing = [k for k in ("from", "until", "cpu_model", "cpu_capability") if k not in w]
        if missing:
            raise ValueError(f"{path}: window {i} lacks {', '.join(missing)}")
        lo, hi = _utc(w["from"], f"{path}, window {i}, from"), _utc(w["until"], f"{path}, window {i}, until")
        if lo is not None and hi is not None and not lo < hi:
            raise ValueError(f"{path}: window {i} has 'from' not before 'until'")
        if out and (out[-1]["until"] is None or lo is None or lo < out[-1]["until"]):
            raise ValueError(f"{path}: window {i} overlaps window {i - 1} (windows go in time order)")
        out.append({**w, "from": lo, "until": hi})
    return out


def record_cpu_types(records: list[dict], windows: list[dict] = ()) -> list[str | None]:
    """The CPU type ("model, capability") that trained each record, in order: the record's own
    ``machine.cpu_model`` and ``machine.cpu_capability`` where it holds both
    (:func:`atac.results.cpu_type`); otherwise that of the
    window of :func:`load_machine_windows` its ``finished`` time falls in; otherwise None (a
    record of code that records no CPU type, outside every window).

    Raises:
        ValueError: a record's ``finished`` is not an ISO 8601 time (named by its position).
    """
    spans = [(w["from"], w["until"], cpu_type(w)) for w in windows]
    out = []
    for i, r in enumerate(records):
        cpu = cpu_type(r.get("machine"))
        if cpu is None and r.get("finished") and spans:
            t = _utc(r["finished"], f"record {i + 1}, finished")
            cpu = next((c for lo, hi, c in spans if (lo is None or lo < t) and (hi is None or t <= hi)), None)
        out.append(cpu)
    return out


def machine_types(records: list[dict], windows: list[dict] = ()) -> pd.DataFrame:
    """:func:`record_cpu_types` counted: one row per CPU type, in order of first appearance, with
    ``cpu`` ("model, capability"; "not recorded" for records of no known type), ``runs`` and
    ``seeds`` (sorted ints; records without a seed are counted in ``runs`` only)."""
    cpus = record_cpu_types(records, windows)
    rows = {}
    for cpu, r in zip(cpus, records):
        row = rows.setdefault(cpu or UNKNOWN_CPU, {"runs": 0, "seeds": set()})
        row["runs"] += 1
        if r.get("seed") is not None:
            row["seeds"].add(int(r["seed"]))
    return pd.DataFrame([{"cpu": c, "runs": v["runs"], "seeds": sorted(v["seeds"])} for c, v in rows.items()],
                        columns=["cpu", "runs", "seeds"]).astype({"runs": int})


def machine_sentence(types: pd.DataFrame) -> str:
    """:func:`machine_types` in words, e.g. "one CPU type: X (12 runs, seeds 0–5)" or "2 CPU types:
    X (81 runs, seeds 0–3); Y (5 runs, seed 3)", then ", and n run(s) of no recorded CPU type"
    where some are unknown; "no runs yet" for an empty frame."""
    if not len(types):
        return "no runs yet"

    def seeds(s):
        s = list(s)
        if not s:
            return "no seed"
        if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
            return f"seeds {s[0]}–{s[-1]}"
        return ("seed " if len(s) == 1 else "seeds ") + ", ".join(map(str, s))

    def runs(n):
        return f"{n} run{'s' if n != 1 else ''}"

    known = types[types["cpu"] != UNKNOWN_CPU]
    unknown = int(types.loc[types["cpu"] == UNKNOWN_CPU, "runs"].sum())
    parts = [f"{r['cpu']} ({runs(r['runs'])}, {seeds(r['seeds'])})" for _, r in known.iterrows()]
    text = ("no recorded CPU type" if not parts else f"one CPU type: {parts[0]}" if len(parts) == 1
            else f"{len(parts)} CPU types: " + "; ".join(parts))
    if unknown and parts:
        text += f", and {runs(unknown)} of no recorded CPU type"
    elif unknown:
        text += f" ({runs(unknown)})"
    return text


def cross_type_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """For each comparison of :data:`COMPARISONS`: ``n`` (class, seed) pairs with every arm of the
    contrast recorded, and ``mixed``, how many of them had their arms trained on more than one CPU
    type. ``frame`` is :func:`atac.frame.records_frame` with a ``cpu`` column
    (:func:`record_cpu_types`; None where unknown, counted as its own type).

    Raises:
        KeyError: ``frame`` has no ``cpu`` column.
    """
    _require_cpu(frame, "cross_type_pairs")
    rows = []
    for hyp, what, coefs, _sign in COMPARISONS:
        pairs = _pairs(frame, {ARMS[k] for k in coefs})
        rows.append({"hypothesis": hyp, "comparison": what.split(":")[0], "n": len(pairs),
                     "mixed": int(pairs["mixed"].sum())})
    return pd.DataFrame(rows)
