"""Paired comparisons of arms: mean paired difference, a 95% bootstrap interval, and a verdict.

Two arms are compared on the runs they share a split with: same class (dataset, category, setting,
known type, shots) and same seed (:mod:`atac.frame`). The statistic is the mean over those pairs of
``arm − baseline`` (image AUROC by default). Its interval is ``scipy.stats.bootstrap`` (BCa,
10,000 resamples, a fixed seed): per class over the seeds; pooled over classes with the seeds
resampled within each class (each class a separate sample). The verdict is read from the interval
only: ``above`` (lower end > 0), ``below`` (upper end < 0), else ``not distinguishable``.

Example:
    >>> from atac.frame import load_frame                                 # doctest: +SKIP
    >>> from atac.stats import paired_comparison                           # doctest: +SKIP
    >>> paired_comparison(load_frame("paper_runs/results/zoom-study-cpu.jsonl"), "deviation")  # doctest: +SKIP
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats

from .frame import CLASS_FIELDS

POOLED = "pooled"
VERDICTS = ("above", "below", "not distinguishable", "too few pairs")


def _class_label(row) -> str:
    parts = [str(row["category"])]
    if row.get("setting") == "hard":
        parts.append(f"hard:{row['known_type']}")
    parts.append(f"{row['shots']}-shot")
    return " ".join(parts)


def bootstrap_interval(samples: list[np.ndarray], confidence: float = 0.95, n_resamples: int = 10_000,
                       seed: int = 0) -> tuple[float, float]:
    """The BCa bootstrap interval of the mean over all values of ``samples`` (a list of 1-d arrays,
    each resampled on its own: strata; a stratum of one value is held fixed, and when every stratum
    has one value the values are resampled as one sample). Fewer than two values in all: (nan, nan).
    Values all equal (no spread to resample): that value at both ends."""
    allv = np.concatenate(samples)
    if len(allv) < 2:
        return float("nan"), float("nan")
    if np.ptp(allv) == 0:
        return float(allv[0]), float(allv[0])
    # a stratum of one value cannot be resampled into anything else; keep it fixed
    fixed = [s for s in samples if len(s) < 2]
    free = [s for s in samples if len(s) >= 2]
    if not free:   # one value per stratum (e.g. one seed per known type): the values are the units
        free, fixed = [allv], []

    def mean(*xs):
        return np.mean(np.concatenate([*xs, *fixed]))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")       # BCa warns on nearly degenerate jackknife values
        res = stats.bootstrap(tuple(free), mean, n_resamples=n_resamples, confidence_level=confidence,
                              method="BCa", vectorized=False, random_state=np.random.default_rng(seed))
    lo, hi = res.confidence_interval
    if not (np.isfinite(lo) and np.isfinite(hi)):   # BCa undefined here: the percentile interval
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = stats.bootstrap(tuple(free), mean, n_resamples=n_resamples,
                                  confidence_level=confidence, method="percentile", vectorized=False,
                                  random_state=np.random.default_rng(seed))
        lo, hi = res.confidence_interval
    return float(lo), float(hi)


def verdict(lo: float, hi: float) -> str:
    """``above`` / ``below`` / ``not distinguishable`` from an interval; ``too few pairs`` if undefined."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "too few pairs"
    return "above" if lo > 0 else "below" if hi < 0 else "not distinguishable"


def paired_differences(frame: pd.DataFrame, arm: str, baseline: str, metric: str = "image_auroc") -> pd.DataFrame:
    """The pairs of ``arm`` and ``baseline`` runs (same class and seed): the class fields, ``seed``,
    ``class`` (a label), the two values and ``diff`` (arm − baseline).

    Raises:
        ValueError: an arm is not in the frame (the arms present are named); two runs of one arm
            share a class and seed; a pair's splits differ (not the same split: not paired).
    """
    arms = sorted(frame["arm"].unique())
    for a in (arm, baseline):
        if a not in arms:
            raise ValueError(f"arm {a!r} is not in the results; arms: {', '.join(arms)}")
    keys = [*CLASS_FIELDS, "seed"]
    parts = []
    for a in (arm, baseline):
        sub = frame[frame["arm"] == a]
        dup = sub[sub.duplicated(keys, keep=False)]
        if len(dup):
            first = dup.iloc[0]
            raise ValueError(f"arm {a!r} has several runs of {first['category']}, seed {first['seed']}; "
                             "remove the duplicates")
        parts.append(sub[[*keys, metric, "split_id"]])
    pairs = parts[0].merge(parts[1], on=keys, suffixes=("_arm", "_base"))
    bad = pairs[(pairs["split_id_arm"] != pairs["split_id_base"]) & pairs["split_id_arm"].notna()
                & pairs["split_id_base"].notna()]
    if len(bad):
        b = bad.iloc[0]
        raise ValueError(f"{arm!r} and {baseline!r} differ in the split of {b['category']}, seed {b['seed']}: "
                         "not paired")
    pairs = pairs.rename(columns={f"{metric}_arm": "value_arm", f"{metric}_base": "value_base"})
    pairs["diff"] = pairs["value_arm"].astype(float) - pairs["value_base"].astype(float)
    pairs["class"] = [_class_label(r) for _, r in pairs.iterrows()]
    return pairs.drop(columns=["split_id_arm", "split_id_base"]).sort_values(["class", "seed"]).reset_index(drop=True)


def paired_comparison(frame: pd.DataFrame, baseline: str, arms: list[str] | None = None,
                      metric: str = "image_auroc", confidence: float = 0.95,
                      n_resamples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Every arm (or ``arms``) against ``baseline``: one row per (arm, class) and a pooled row per
    arm, with ``n`` (pairs), ``mean_diff``, ``ci_low``, ``ci_high``, ``n_positive`` (pairs with
    arm > baseline) and ``verdict`` (:func:`verdict`). Arms without a shared (class, seed) are left
    out. See the module docstring for the interval."""
    arms = [a for a in (arms or sorted(frame["arm"].unique())) if a != baseline]
    rows = []
    for arm in arms:
        pairs = paired_differences(frame, arm, baseline, metric)
        if pairs.empty:
            continue
        samples = []
        for cls, g in pairs.groupby("class", sort=True):
            d = g["diff"].to_numpy(dtype=float)
            samples.append(d)
            lo, hi = bootstrap_interval([d], confidence, n_resamples, seed)
            rows.append({"arm": arm, "baseline": baseline, "class": cls, "n": len(d), "mean_diff": d.mean(),
                         "ci_low": lo, "ci_high": hi, "n_positive": int((d > 0).sum()), "verdict": verdict(lo, hi)})
        if len(samples) > 1:
            d = np.concatenate(samples)
            lo, hi = bootstrap_interval(samples, confidence, n_resamples, seed)
            rows.append({"arm": arm, "baseline": baseline, "class": POOLED, "n": len(d), "mean_diff": d.mean(),
                         "ci_low": lo, "ci_high": hi, "n_positive": int((d > 0).sum()), "verdict": verdict(lo, hi)})
    return pd.DataFrame(rows, columns=["arm", "baseline", "class", "n", "mean_diff", "ci_low", "ci_high",
                                       "n_positive", "verdict"])


def format_comparison(table: pd.DataFrame) -> pd.DataFrame:
    """The comparison for reading: ``difference`` as ``+0.012 [-0.004, +0.030]`` (three decimals),
    ``positive`` as ``5/6``, beside arm, baseline, class and verdict."""
    def cell(r):
        ci = "" if not np.isfinite(r.ci_low) else f" [{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
        return f"{r.mean_diff:+.3f}{ci}"

    return pd.DataFrame({"arm": table["arm"], "baseline": table["baseline"], "class": table["class"],
                         "difference": [cell(r) for r in table.itertuples()],
                         "positive": [f"{p}/{n}" for p, n in zip(table["n_positive"], table["n"])],
                         "verdict": table["verdict"]})


def contrast(frame: pd.DataFrame, terms: dict[str, float], metric: str = "image_auroc") -> pd.DataFrame:
    """A linear contrast of arms, per (class, seed) where every arm of ``terms`` has a run:
    ``value = sum(coef * metric of that arm)`` — e.g. ``{"atac": 1, "deviation": -1}`` is the paired
    difference, ``{D: 1, F: -1, B: -1, A: 1}`` a difference of differences. Returns the class fields,
    ``seed``, ``class`` and ``diff`` (the contrast), sorted by class and seed.

    Raises:
        ValueError: an arm is not in the frame, or the runs of one (class, seed) differ in their split.
    """
    arms = sorted(frame["arm"].unique())
    missing = [a for a in terms if a not in arms]
    if missing:
        raise ValueError(f"arm {missing[0]!r} is not in the results; arms: {', '.join(arms)}")
    keys = [*CLASS_FIELDS, "seed"]
    sub = frame[frame["arm"].isin(list(terms))].copy()
    sub[keys] = sub[keys].astype(object).where(sub[keys].notna(), "")
    dup = sub[sub.duplicated([*keys, "arm"], keep=False)]
    if len(dup):
        d = dup.iloc[0]
        raise ValueError(f"arm {d['arm']!r} has several runs of {d['category']}, seed {d['seed']}; "
                         "remove the duplicates")
    splits = sub.groupby(keys)["split_id"].nunique(dropna=True)
    if (splits > 1).any():
        k = dict(zip(keys, splits[splits > 1].index[0]))
        raise ValueError(f"the runs of {k['category']}, seed {k['seed']} differ in their split: not paired")
    wide = sub.pivot_table(index=keys, columns="arm", values=metric, aggfunc="mean").dropna()
    diff = sum(coef * wide[a].astype(float) for a, coef in terms.items())
    out = diff.rename("diff").reset_index()
    out["class"] = [_class_label(r) for _, r in out.iterrows()]
    return out.sort_values(["class", "seed"]).reset_index(drop=True)


def summarize_contrast(values: pd.DataFrame, confidence: float = 0.95, n_resamples: int = 10_000,
                       seed: int = 0) -> dict:
    """Pooled summary of :func:`contrast` values: ``n``, ``mean``, ``ci_low``, ``ci_high``
    (seeds resampled within each class), ``n_positive`` and ``verdict``."""
    samples = [g["diff"].to_numpy(dtype=float) for _, g in values.groupby("class")]
    if not samples:
        return {"n": 0, "mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                "n_positive": 0, "verdict": "too few pairs"}
    d = np.concatenate(samples)
    lo, hi = bootstrap_interval(samples, confidence, n_resamples, seed)
    return {"n": len(d), "mean": float(d.mean()), "ci_low": lo, "ci_high": hi,
            "n_positive": int((d > 0).sum()), "verdict": verdict(lo, hi)}
