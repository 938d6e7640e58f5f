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


def arm_labels(configs: list[dict], ignore: tuple[str, ...] = ()) -> list[str]:
    """A readable label per config: its method, then ``field=value`` for each field that differs
    among the arms of that method and is not at its default here (``"deviation"``,
    ``"atac batchnorm=frozen zoom_loss=per_view"``). Distinct arms of one method get distinct labels
    (unless they differ only in ``ignore``d fields, which are left out of arm and label alike).
    """
    arms = [{k: v for k, v in arm_identity(c).items() if k not in ignore} for c in configs]
    by_method: dict[str, dict[str, dict]] = {}
    for a in arms:
        by_method.setdefault(str(a.get("method")), {})[_digest(a)] = a
    varying: dict[str, list[str]] = {}
    for method, group in by_method.items():
        keys = sorted({k for a in group.values() for k in a} - {"method"})
        varying[method] = [k for k in keys
                           if len({json.dumps(_plain(a.get(k, _DEFAULTS.get(k))), default=str)
                                   for a in group.values()}) > 1]
    labels = []
    for a in arms:
        method = str(a.get("method"))
        parts = [f"{k}={_plain(a[k])}" for k in varying[method]
                 if k in a and _plain(a[k]) != _plain(_DEFAULTS.get(k))]
        labels.append(" ".join([method, *parts]))
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
    beside ``arm``, the class fields, ``seed``, ``image_auroc``, ``zoom_rate_normal`` and
    ``zoom_rate_anomalous``; runs without diagnostics are left out."""
    labels = arm_labels([r.get("config") or {} for r in records]) if records else []
    rows = []
    for r, arm in zip(records, labels):
        diag = r.get("zoom_diagnostics")
        if not diag:
            continue
        flat = {k: v for k, v in pd.json_normalize(diag).iloc[0].to_dict().items()
                if not isinstance(v, dict) and not (k in ("forced_zoom", "batchnorm") and v is None)}
        rows.append({"arm": arm, **{k: r.get(k) for k in (*CLASS_FIELDS, "seed", "image_auroc",
                                                          "zoom_rate_normal", "zoom_rate_anomalous")}, **flat})
    out = pd.DataFrame(rows)
    for col in DIAGNOSTIC_COLUMNS:   # a probe that could not run (no zoomed anomaly) is NaN
        if col not in out:
            out[col] = float("nan")
    return out
