"""Results as a tidy frame (pandas): one row per run, and the arm each run belongs to.

An *arm* is a run identity (:func:`atac.config.identity`) minus the seed and the fields that choose
the data and its split (dataset, category, setting, known type, shots): two runs of one arm on one
class differ in their seed only, and runs of one class and seed share a split, so arms compare
paired. Runs of different arms are never pooled.

Example:
    >>> from atac.frame import load_frame                                 # doctest: +SKIP
    >>> frame = load_frame(["paper_runs/results/zoom-study-cpu.jsonl"])   # doctest: +SKIP
    >>> frame.groupby(["category", "arm"]).image_auroc.agg(["mean", "std", "count"])  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from pathlib import Path

import pandas as pd

from .config import RunConfig, identity
from .results import load_records

# the fields that choose the data and its split: a class is one value of these (with the seed, a split)
CLASS_FIELDS = ("dataset", "category", "setting", "known_type", "shots")
SPLIT_FIELDS = (*CLASS_FIELDS, "seed", "mt_test_normals", "mt_split_seed")
METRICS = ("image_auroc", "image_auprc", "pixel_auroc", "zoom_rate_normal", "zoom_rate_anomalous")
_DEFAULTS = {f.name: getattr(RunConfig(), f.name) for f in fields(RunConfig)}


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


def arm_identity(config: dict) -> dict:
    """A run's arm: :func:`atac.config.identity` of its config without :data:`SPLIT_FIELDS`."""
    return {k: v for k, v in identity(config).items() if k not in SPLIT_FIELDS}


def _digest(d: dict) -> str:
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:10]


def arm_labels(configs: list[dict], ignore: tuple[str, ...] = (), within_method: bool = False) -> list[str]:
    """A readable label per config: its method, then ``field=value`` for

    - every reading of :data:`atac.config.READING_FIELDS` that is not the literal one, where that
      reading differs among all the arms (whatever the method, so that a reading never hides
      behind the label of a literal arm of another method), and
    - every other field that differs among the arms (all arms, or with ``within_method`` those of
      the same method) where this arm's value is not the most common one among them (ties: the
      dataclass default, else the smallest value), so that an arm added later never takes over the
      label of the arms that were there.

    ``"deviation"``, ``"atac batchnorm=frozen zoom_loss=per_view"``. Fields in ``ignore`` are left
    out of arms and labels alike.
    """
    from collections import Counter

    from .config import READING_FIELDS

    arms = [{k: v for k, v in arm_identity(c).items() if k not in ignore} for c in configs]
    def key(v):
        return json.dumps(_plain(v), default=str)

    def reference(group: list[dict]) -> dict[str, str]:
        keys = sorted({k for a in group for k in a} - {"method"} - set(READING_FIELDS))
        ref = {}
        for k in keys:
            counts = Counter(key(a.get(k, _DEFAULTS.get(k))) for a in group)
            if len(counts) > 1:
                top = max(counts.values())
                tied = sorted(v for v, n in counts.items() if n == top)
                default = key(_DEFAULTS.get(k))
                ref[k] = default if default in tied else tied[0]
        return ref

    varying_readings = [k for k in READING_FIELDS
                        if len({key(a.get(k, READING_FIELDS[k])) for a in arms}) > 1]
    # the most common value counts runs, not arms: the arm with the most runs keeps its plain label
    methods = {str(a.get("method")) for a in arms}
    if within_method:
        refs = {m: reference([a for a in arms if str(a.get("method")) == m]) for m in methods}
    else:
        shared = reference(arms)
        refs = {m: shared for m in methods}
    labels = []
    for a in arms:
        method = str(a.get("method"))
        parts = {k: _plain(a[k]) for k in varying_readings if k in a and _plain(a[k]) != READING_FIELDS[k]}
        for k, ref in refs[method].items():
            if key(a.get(k, _DEFAULTS.get(k))) != ref:
                parts[k] = _plain(a.get(k, _DEFAULTS.get(k)))
        labels.append(" ".join([method, *(f"{k}={parts[k]}" for k in sorted(parts))]))
    return labels


def split_id(record: dict) -> str | None:
    """A short hash of a record's split (its file lists), or None where the record has none."""
    split = record.get("split") or {}
    files = {k: split.get(k) for k in ("train_normal", "train_anomalous", "test") if k in split}
    return _digest(files) if files else None


def records_frame(records: list[dict], source: str | None = None) -> pd.DataFrame:
    """One row per record: the class fields, ``seed``, ``method``, ``backbone``, the metrics
    (:data:`METRICS`, ``view_auroc_full`` / ``view_auroc_zoom`` where recorded), ``arm`` (label,
    :func:`arm_labels`), ``arm_id`` (hash of :func:`arm_identity`), ``split_id``, ``git_commit``,
    ``train_seconds``, ``source`` and every config field not already a column.

    Raises:
        ValueError: a record without a config or without ``image_auroc`` (named by its position).
    """
    rows = []
    for i, r in enumerate(records):
        cfg = r.get("config")
        if not isinstance(cfg, dict) or r.get("image_auroc") is None:
            raise ValueError(f"{source or 'records'}, record {i + 1}: no config or no image_auroc")
        row = {k: r.get(k) for k in (*CLASS_FIELDS, "seed", "method", "backbone", *METRICS,
                                     "train_seconds", "git_commit")}
        views = r.get("view_auroc") or {}
        row["view_auroc_full"], row["view_auroc_zoom"] = views.get("full"), views.get("zoom")
        row["arm_id"] = _digest(arm_identity(cfg))
        row["split_id"] = split_id(r)
        row["source"] = source
        for k, v in cfg.items():
            if k not in row and k != "extra":
                row[k] = json.dumps(v) if isinstance(v, (list, dict)) else v
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame.insert(0, "arm", arm_labels([r["config"] for r in records]) if records else [])
    return frame


def load_frame(paths) -> pd.DataFrame:
    """The tidy frame of one or more results files (``.jsonl``, :func:`atac.results.load_records`):
    one row per run (see :func:`records_frame`); arm labels are computed over all files together."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    records, sources = [], []
    for p in paths:
        recs = load_records(p)
        records += recs
        sources += [str(p)] * len(recs)
    frame = records_frame(records)
    frame["source"] = sources
    return frame


def telemetry_frame(records: list[dict]) -> pd.DataFrame:
    """The zoom runs' training telemetry in long form: one row per (run, epoch, slot) with ``arm``,
    the class fields, ``seed``, ``epoch``, ``slot`` (normal / pseudo / anomalous), ``zoom_rate``,
    ``score_full``, ``score_crop``, and the per-epoch ``gamma``, ``sigma_share_score_map``,
    ``sigma_share_crop_map``, ``margin_met_full_anomalous``.

    Args:
        records: ``metrics.json`` dicts; runs without ``train_telemetry`` are left out. Arm labels
            are those of :func:`arm_labels` over all the records given.
    """
    recs = list(records)
    labels = arm_labels([r.get("config") or {} for r in recs]) if recs else []
    rows = []
    for r, arm in zip(recs, labels):
        for e in r.get("train_telemetry") or []:
            for slot in ("normal", "pseudo", "anomalous"):
                rows.append({"arm": arm, **{k: r.get(k) for k in (*CLASS_FIELDS, "seed")},
                             "epoch": e["epoch"], "slot": slot, "zoom_rate": e.get(f"zoom_rate_{slot}"),
                             "score_full": e.get(f"score_full_{slot}"), "score_crop": e.get(f"score_crop_{slot}"),
                             **{k: e.get(k) for k in ("gamma", "sigma_share_score_map", "sigma_share_crop_map",
                                                      "margin_met_full_anomalous")}})
    return pd.DataFrame(rows)


DIAGNOSTIC_COLUMNS = ("auroc_zoomed_anomalies", "auroc_unzoomed_anomalies", "box_coverage.mean",
                      "box_coverage.share_below_half", "forced_zoom.auroc_crop_vs_full",
                      "forced_zoom.image_auroc_if_normals_zoomed", "batchnorm.image_auroc_bn_reestimated",
                      "batchnorm.spearman_vs_recorded")


def diagnostics_frame(records: list[dict]) -> pd.DataFrame:
    """The zoom runs' test diagnostics, one row per run (``zoom_diagnostics`` flattened with dots:
    ``box_coverage.mean``, ``forced_zoom.auroc_crop_vs_full``, ``batchnorm.spearman_vs_recorded``, ...)
    beside ``arm``, the class fields, ``seed``, ``image_auroc``, ``zoom_rate_normal``,
    ``zoom_rate_anomalous`` and ``view_auroc_full`` (the full-image score's AUROC); runs without
    diagnostics are left out."""
    labels = arm_labels([r.get("config") or {} for r in records]) if records else []
    rows = []
    for r, arm in zip(records, labels):
        diag = r.get("zoom_diagnostics")
        if not diag:
            continue
        flat = {k: v for k, v in pd.json_normalize(diag).iloc[0].to_dict().items()
                if not isinstance(v, dict) and not (k in ("forced_zoom", "batchnorm") and v is None)}
        rows.append({"arm": arm, **{k: r.get(k) for k in (*CLASS_FIELDS, "seed", "image_auroc",
                                                          "zoom_rate_normal", "zoom_rate_anomalous")},
                     "view_auroc_full": (r.get("view_auroc") or {}).get("full"), **flat})
    out = pd.DataFrame(rows)
    for col in DIAGNOSTIC_COLUMNS:   # a probe that could not run (no zoomed anomaly) is NaN
        if col not in out:
            out[col] = float("nan")
    return out
