"""Paired comparisons of arms: mean paired difference, a 95% bootstrap interval, and a verdict.

Two arms are compared on the runs they share a split with: same class (dataset, category, setting,
known type, shots) and same seed (:mod:`atac.frame`). The statistic is the mean over those pairs of
``arm − baseline`` (image AUROC by default). Its interval is ``scipy.stats.bootstrap`` (BCa,
10,000 resamples, a fixed seed): per class over the seeds; pooled over classes with the seeds
resampled within each class (each class a separate sample). The verdict is read from the interval
only: ``above`` (lower end > 0), ``below`` (upper end < 0), else ``not distinguishable``.

Beside it, every table carries a check that is not the decision rule: a t interval of the same mean
(:func:`t_interval`; pooled: the stratified mean's standard error, Welch–Satterthwaite degrees of
freedom) and its verdict, ``t_verdict``. A bootstrap interval from three to six values covers less
often than its nominal 95%: it cannot reach beyond the values' own range (from three values, the
resampled means take at most ten distinct values), where a t interval from three values reaches
4.3 standard errors either side. Where the bootstrap's above/below is not the t check's, the
bootstrap's verdict is fragile.

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


def t_interval(samples: list[np.ndarray], confidence: float = 0.95) -> tuple[float, float]:
    """The t interval of the mean over all values of ``samples`` (strata, as in
    :func:`bootstrap_interval`): the mean ± t quantile × its standard error, with the standard error
    of a stratified mean, sqrt(sum_k n_k s_k² / N²), and Welch–Satterthwaite degrees of freedom.
    One stratum: ``scipy.stats.ttest_1samp(x, 0).confidence_interval(confidence)``. A stratum of one
    value adds no variance (held fixed); every stratum of one value: the values as one sample.
    Fewer than two values in all, or a value not finite: (nan, nan), which :func:`verdict` reads
    as "too few pairs". No spread within any stratum: the mean at both ends.

    Source: Satterthwaite, *Biometrics Bulletin* 2 (1946); Welch, *Biometrika* 34 (1947);
    Cochran, *Sampling Techniques* (1977), ch. 5 (the stratified mean)."""
    allv = np.concatenate(samples) if len(samples) else np.array([])
    n_all = len(allv)
    if n_all < 2 or not np.isfinite(allv).all():
        return float("nan"), float("nan")
    free = [s for s in samples if len(s) >= 2] or [allv]
    m = float(allv.mean())
    parts = np.array([0.0 if np.ptp(s) == 0 else len(s) * np.var(s, ddof=1) / n_all ** 2 for s in free])
    se2 = float(parts.sum())
    if se2 == 0:
        return m, m
    df = se2 ** 2 / float(sum(p ** 2 / (len(s) - 1) for p, s in zip(parts, free)))
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * se2 ** 0.5
    return m - half, m + half


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


def _t_check(samples: list[np.ndarray], confidence: float) -> dict:
    lo, hi = t_interval(samples, confidence)
    return {"t_low": lo, "t_high": hi, "t_verdict": verdict(lo, hi)}


def paired_comparison(frame: pd.DataFrame, baseline: str, arms: list[str] | None = None,
                      metric: str = "image_auroc", confidence: float = 0.95,
                      n_resamples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Every arm (or ``arms``) against ``baseline``: one row per (arm, class) and a pooled row per
    arm, with ``n`` (pairs), ``mean_diff``, ``ci_low``, ``ci_high``, ``n_positive`` (pairs with
    arm > baseline) and ``verdict`` (:func:`verdict`), then the check ``t_low``, ``t_high`` and
    ``t_verdict`` (:func:`t_interval`). Arms without a shared (class, seed) are left out. See the
    module docstring for the intervals.

    Raises:
        ValueError: as :func:`paired_differences`."""
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
                         "ci_low": lo, "ci_high": hi, "n_positive": int((d > 0).sum()), "verdict": verdict(lo, hi),
                         **_t_check([d], confidence)})
        if len(samples) > 1:
            d = np.concatenate(samples)
            lo, hi = bootstrap_interval(samples, confidence, n_resamples, seed)
            rows.append({"arm": arm, "baseline": baseline, "class": POOLED, "n": len(d), "mean_diff": d.mean(),
                         "ci_low": lo, "ci_high": hi, "n_positive": int((d > 0).sum()), "verdict": verdict(lo, hi),
                         **_t_check(samples, confidence)})
    return pd.DataFrame(rows, columns=["arm", "baseline", "class", "n", "mean_diff", "ci_low", "ci_high",
                                       "n_positive", "verdict", "t_low", "t_high", "t_verdict"])


def t_check_note(paired: dict) -> str:
    """A clause for a sentence whose verdict is read from the bootstrap interval of
    :func:`summarize_contrast` (or a row of :func:`paired_comparison`): empty when the t check
    agrees or either has no interval; where the bootstrap says above or below and the t interval
    includes 0, e.g. ``"fragile: a t interval over the same pairs, [-0.173, +0.094], includes 0"``;
    where the bootstrap includes 0 and the t interval does not, e.g. ``"a t interval over the same
    pairs, [+0.001, +0.020], lies above 0"``. ``paired``: a dict or a pandas row with ``verdict``,
    ``t_verdict``, ``t_low`` and ``t_high``."""
    tv, bv = paired.get("t_verdict"), paired.get("verdict")
    if tv in (None, "too few pairs", bv) or bv == "too few pairs":
        return ""
    interval = f"a t interval over the same pairs, [{paired['t_low']:+.3f}, {paired['t_high']:+.3f}]"
    if tv == "not distinguishable":
        return f"fragile: {interval}, includes 0"
    return f"{interval}, lies {tv} 0"


def interval_text(mean: float, lo: float, hi: float) -> str:
    """A mean and its interval for reading, three decimals: ``+0.012 [-0.004, +0.030]``; the mean
    alone when the interval is undefined; ``—`` when the mean is (no pairs)."""
    if not np.isfinite(mean):
        return "—"
    return f"{mean:+.3f}" + ("" if not np.isfinite(lo) else f" [{lo:+.3f}, {hi:+.3f}]")


def t_check_text(lo: float, hi: float, t_verdict: str) -> str:
    """The t check for a table cell: ``[-0.173, +0.094] not distinguishable``; the verdict alone
    when the interval is undefined."""
    return ("" if not np.isfinite(lo) else f"[{lo:+.3f}, {hi:+.3f}] ") + t_verdict


def format_comparison(table: pd.DataFrame, check: bool = False) -> pd.DataFrame:
    """The comparison for reading: ``difference`` as ``+0.012 [-0.004, +0.030]`` (three decimals),
    ``positive`` as ``5/6``, beside arm, baseline, class and verdict; with ``check``, a column
    ``t check`` (the t interval and its verdict, e.g. ``[-0.173, +0.094] not distinguishable``).

    Raises:
        KeyError: ``check`` on a table without ``t_low``, ``t_high`` and ``t_verdict``."""
    out = pd.DataFrame({"arm": table["arm"], "baseline": table["baseline"], "class": table["class"],
                        "difference": [interval_text(*v) for v in
                                       zip(table["mean_diff"], table["ci_low"], table["ci_high"])],
                        "positive": [f"{p}/{n}" for p, n in zip(table["n_positive"], table["n"])],
                        "verdict": table["verdict"]})
    if check:
        out["t check"] = [t_check_text(*v) for v in zip(table["t_low"], table["t_high"], table["t_verdict"])]
    return out


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
    (seeds resampled within each class), ``n_positive`` and ``verdict``, then the check ``t_low``,
    ``t_high`` and ``t_verdict`` (:func:`t_interval`, stratified by class)."""
    samples = [g["diff"].to_numpy(dtype=float) for _, g in values.groupby("class")]
    if not samples:
        return {"n": 0, "mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
                "n_positive": 0, "verdict": "too few pairs", "t_low": float("nan"),
                "t_high": float("nan"), "t_verdict": "too few pairs"}
    d = np.concatenate(samples)
    lo, hi = bootstrap_interval(samples, confidence, n_resamples, seed)
    return {"n": len(d), "mean": float(d.mean()), "ci_low": lo, "ci_high": hi,
            "n_positive": int((d > 0).sum()), "verdict": verdict(lo, hi), **_t_check(samples, confidence)}
