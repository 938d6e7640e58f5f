"""Results records summarised per group of runs: mean ± sample std over seeds, by a pandas groupby
over the tidy frame of :func:`atac.frame.records_frame`.

A group is one run identity (:func:`atac.config.identity`) minus the seed and the class fields
(dataset, category, setting, known type, shots), within one (dataset, category, shots, known type):
runs whose configs differ in anything but the seed are never pooled. Each group is shown by its
keys and a setup label (:func:`setups`: the training budget, then the config fields in which it
differs from the other runs of its method).
"""

from __future__ import annotations

import json
import math
import statistics

import pandas as pd

from ..config import RunConfig, identity_key
from ..frame import CLASS_FIELDS, SPLIT_FIELDS, arm_labels, records_frame

REQUIRED_KEYS = ("method", "backbone", "dataset", "category", "setting", "shots", "seed")
METRIC_NAMES = {"image_auroc": "Image AUROC", "image_auprc": "Image AUPRC", "pixel_auroc": "Pixel AUROC"}
# fields the budget label (or a key of its own) already names: left out of the variant label
_NAMED = ("backbone", "preset", "epochs", "steps_per_epoch", "batch_size", "image_size")
# fields of a run's identity that arm labels leave out (they choose the split) but that are neither
# a class field nor the seed: where runs of one row differ in them, the setup label names them
_SPLIT_ONLY = tuple(f for f in SPLIT_FIELDS if f not in (*CLASS_FIELDS, "seed"))

# Defect types of MVTec AD classes (the folder names under test/ of the published data set): a
# mean row over known types is made only when every type of the class has a row. Magnetic Tile's
# and the synthetic categories' come from atac.data.
MVTEC_DEFECT_TYPES: dict[str, tuple[str, ...]] = {
    "carpet": ("color", "cut", "hole", "metal_contamination", "thread"),
    "grid": ("bent", "broken", "glue", "metal_contamination", "thread"),
    "metal_nut": ("bent", "color", "flip", "scratch"),
    "tile": ("crack", "glue_strip", "gray_stroke", "oil", "rough"),
}


def defect_types(dataset: str, category: str) -> tuple[str, ...] | None:
    """Every defect type of a class, sorted: MVTec AD from :data:`MVTEC_DEFECT_TYPES`, Magnetic
    Tile from :data:`atac.data.datasets.MT_CLASSES`, synthetic from :data:`atac.data.synth.CATEGORIES`;
    None for a class whose types are not known without reading its data."""
    if dataset == "mvtec_ad":
        return MVTEC_DEFECT_TYPES.get(category)
    if dataset == "magnetic_tile":
        from ..data.datasets import MT_CLASSES
        return tuple(sorted(c.removeprefix("MT_").lower() for c in MT_CLASSES))
    if dataset == "synthetic":
        from ..data.synth import CATEGORIES
        return tuple(sorted(CATEGORIES.get(category, ()))) or None
    return None


def budget(record: dict) -> str:
    """A short label of a record's training budget, from its config: e.g.
    ``"cpu: 15 epochs × 20 steps, batch 16, 224 px"``; ``"unknown"`` when the record has no config."""
    c = record.get("config") or {}
    if not c:
        return "unknown"
    return (f"{c.get('preset', '?')}: {c.get('epochs', '?')} epochs × {c.get('steps_per_epoch', '?')} "
            f"steps, batch {c.get('batch_size', '?')}, {c.get('image_size', '?')} px")


def setups(records: list[dict], shown: tuple[str, ...] = ()) -> list[str]:
    """Each record's setup label: :func:`budget`, then (after ``"; "``) the config fields in which runs
    of its method differ among ``records`` (:func:`atac.frame.arm_labels`, e.g. ``lr=0.001``), so
    that runs whose configs differ in anything but the seed and the class are never pooled. Fields in
    ``shown`` are left out of the label (a table that has a column of their own)."""
    labels = arm_labels([r.get("config") or {} for r in records], ignore=(*_NAMED, *shown),
                        within_method=True)
    out = []
    for r, label in zip(records, labels):
        variant = label.partition(" ")[2]
        out.append(f"{budget(r)}; {variant}" if variant else budget(r))
    return out


def _full(config: dict) -> dict:
    """A config with the fields it lacks at their :class:`atac.config.RunConfig` defaults (as arm
    labels read a missing field)."""
    return {**_DEFAULTS, **config}


_DEFAULTS = RunConfig().to_dict()


def run_key(config: dict) -> str:
    """The run identity minus the seed and the class fields, as text (equal for two runs exactly
    when they differ in nothing but those; a missing field counts as its default)."""
    return identity_key(_full(config), without=("seed", *CLASS_FIELDS))


def check_records(records: list[dict], metric: str) -> None:
    """Raise ValueError unless ``records`` is a non-empty list of dicts that each have
    :data:`REQUIRED_KEYS` and ``metric`` (the seed may be None; the error names the record)."""
    if not records:
        raise ValueError("no results records (empty list)")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise ValueError(f"record {i} is a {type(r).__name__}, not a dict")
        missing = [k for k in (*REQUIRED_KEYS, metric) if r.get(k) is None and k != "seed"]
        if "seed" not in r:
            missing.append("seed")
        if missing:
            what = f"{r.get('method', '?')}/{r.get('dataset', '?')}/{r.get('category', '?')}"
            raise ValueError(f"record {i} ({what}) lacks required key(s): {', '.join(missing)}")


def runs_frame(records: list[dict], metric: str) -> pd.DataFrame:
    """The tidy frame of ``records`` (:func:`atac.frame.records_frame`, one row per record, in
    order) with ``value`` (``metric`` as float), ``budget`` (the setup label of :func:`setups`),
    ``run`` (:func:`run_key`) and ``record`` (the record's position).

    Raises:
        ValueError: a value is not a finite number (the record is named).
    """
    plain = [dict(r, config=r.get("config") or {},
                  image_auroc=r[metric] if r.get("image_auroc") is None else r["image_auroc"])
             for r in records]
    frame = records_frame(plain)
    frame["value"] = [float(r[metric]) for r in records]
    bad = [i for i, v in enumerate(frame["value"]) if not math.isfinite(v)]
    if bad:
        r = records[bad[0]]
        raise ValueError(f"{metric} of the record {r.get('method')}/{r.get('category')}/seed "
                         f"{r.get('seed')} is not a finite number ({r[metric]!r})")
    frame["budget"] = setups(records)
    frame["run"] = [run_key(c["config"]) for c in plain]
    frame["record"] = range(len(records))
    frame["seed_order"] = [str(r["seed"]) for r in records]
    _name_split_fields(frame, plain)
    return frame


def _name_split_fields(frame: pd.DataFrame, plain: list[dict]) -> None:
    """Where runs that would share a row's label differ in a field of :data:`_SPLIT_ONLY`, add
    ``field=value`` to their ``budget`` label (arm labels leave those fields out). The runs compared
    are those of one (dataset, category, setting, shots, method, backbone, budget) over every known
    type: a field that varies for only some types names the runs of every type, so that the types of
    one split still share a label (and Table 2 its mean over types)."""
    cols = [*(f for f in CLASS_FIELDS if f != "known_type"), "method", "backbone", "budget"]
    shown = pd.Series(["|".join(map(str, t)) for t in zip(*(frame[k] for k in cols))], index=frame.index)
    for f in _SPLIT_ONLY:
        values = pd.Series([json.dumps(_full(p["config"]).get(f)) for p in plain], index=frame.index)
        varies = values.groupby(shown).transform("nunique") > 1
        frame.loc[varies, "budget"] = frame.loc[varies, "budget"] + f"; {f}=" + values[varies]


def summarise(records: list[dict], keys: tuple[str, ...], metric: str) -> list[dict]:
    """Records grouped by ``keys`` (record fields; ``budget`` is the setup label of :func:`setups`)
    and the run identity minus the seed (:func:`run_key`), each group summarised.

    Returns:
        One dict per group, in the order of first appearance: the ``keys`` (the values of the
        group's records), ``run`` (:func:`run_key`), ``n`` (seeds), ``seeds`` (sorted as text),
        ``values`` (``metric`` per seed, in that order), ``mean`` and ``std`` (sample std, None
        when n = 1).
    Raises:
        ValueError: a value is not finite, or one seed appears twice in a group (a rerun appended
            to a sweep file would otherwise count twice).
    """
    frame = runs_frame(records, metric)
    frame["group"] = frame.groupby([*keys, "run"], sort=False, dropna=False).ngroup()
    dup = frame[frame.duplicated(["group", "seed_order"], keep=False)]
    if len(dup):
        first = dup.iloc[0]
        key = {k: first[k] for k in keys}
        seeds = sorted(set(dup.loc[dup["group"] == first["group"], "seed"]), key=str)
        raise ValueError(f"seed(s) {seeds} appear more than once in group {key}; remove the duplicate "
                         "records")
    by = frame.sort_values("seed_order", kind="stable").groupby("group", sort=True)
    members = by["record"].agg(list)
    rows = []
    for g, idx in members.items():
        first = frame.loc[frame["group"] == g].iloc[0]
        recs = [records[i] for i in idx]
        values = [float(r[metric]) for r in recs]
        # statistics.fmean / stdev (a correctly rounded sum, exact arithmetic) rather than pandas'
        # mean / std, whose last digit may differ: the CSV's numbers are compared exactly
        rows.append({**{k: (first["budget"] if k == "budget" else records[first["record"]].get(k))
                        for k in keys},
                     "run": first["run"], "n": len(values), "seeds": [r["seed"] for r in recs],
                     "values": values, "mean": statistics.fmean(values),
                     "std": statistics.stdev(values) if len(values) > 1 else None})
    return rows


def view_summary(records: list[dict], methods: tuple[str, ...] = ("atac",)) -> list[dict]:
    """Which view ranks the test set better: the full image, the zoomed crop, or their mean?

    Beyond the paper (it reports the final score only): records of zoom recipes carry
    ``view_auroc`` = {``full``, ``zoom``}, the image AUROC of each view's score alone
    (:func:`atac.run.evaluate_run`); the final score is their mean (supplement, Algorithm 2).

    Args:
        records: results records (``metrics.json``); those of ``methods`` without ``view_auroc``
            (made before it was recorded) are counted in ``n_without`` and otherwise left out.
        methods: the recipes to summarise.
    Returns:
        One row per (dataset, category, setting, shots, method, backbone, budget) and run identity
        minus the seed and the known type — runs of other configs are never pooled, as in the
        tables — sorted: ``n`` runs, the mean over runs of ``full``, ``zoom`` and ``final`` (the
        record's ``image_auroc``), ``zoom_better`` (runs where the zoomed view alone beats the full
        image alone), ``final_better`` (runs where the final score beats the full image alone) and
        ``n_without``.
    Raises:
        ValueError: a ``view_auroc`` lacks ``full`` or ``zoom`` or holds a non-finite value.
    """
    keys = ["dataset", "category", "setting", "shots", "method", "backbone", "budget"]
    mine = [i for i, r in enumerate(records) if r.get("method") in methods]
    if not mine:
        return []
    label = setups(records)
    rows = []
    for i in mine:
        r = records[i]
        row = {**{k: r.get(k) for k in keys[:-1]}, "budget": label[i], "run": run_key(r.get("config") or {}),
               "full": None, "zoom": None, "final": None}
        v = r.get("view_auroc")
        if v is not None:
            try:
                row.update(full=float(v["full"]), zoom=float(v["zoom"]), final=float(r["image_auroc"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"record {i} ({r.get('method')}/{r.get('category')}): view_auroc {v!r} "
                                 f"or image_auroc unreadable ({exc})") from None
            if not all(math.isfinite(row[k]) for k in ("full", "zoom", "final")):
                raise ValueError(f"record {i} ({r.get('method')}/{r.get('category')}): view_auroc "
                                 f"{v!r} is not finite")
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame[["full", "zoom", "final"]] = frame[["full", "zoom", "final"]].astype(float)
    frame["with"] = frame["full"].notna()
    frame["zoom_better"] = frame["with"] & (frame["zoom"] > frame["full"])
    frame["final_better"] = frame["with"] & (frame["final"] > frame["full"])
    frame["group"] = frame.groupby([*keys, "run"], sort=False, dropna=False).ngroup()
    agg = frame.groupby("group").agg(n=("with", "sum"), n_all=("with", "size"), full=("full", "mean"),
                                     zoom=("zoom", "mean"), final=("final", "mean"),
                                     zoom_better=("zoom_better", "sum"), final_better=("final_better", "sum"))
    out = []
    for g, a in agg.iterrows():
        first = rows[int(frame.index[frame["group"] == g][0])]
        n = int(a["n"])
        out.append({**{k: first[k] for k in keys}, "n": n, "n_without": int(a["n_all"]) - n,
                    **{k: float(a[k]) if n else None for k in ("full", "zoom", "final")},
                    "zoom_better": int(a["zoom_better"]), "final_better": int(a["final_better"])})
    return sorted(out, key=lambda r: str(tuple(r[k] for k in keys)))


def ours_cell(row: dict) -> str:
    """Our cell of a summarised row: ``mean ± std (n)`` to three decimals (no ± for one seed)."""
    return (f"{row['mean']:.3f}" + (f" ± {row['std']:.3f}" if row["std"] is not None else "")
            + f" ({row['n']})")


def as_rows(rows) -> list[dict]:
    """Rows given as a list of dicts or as a DataFrame of them (``pd.DataFrame(rows)``), as a list
    of dicts (NaN cells of a frame read as None)."""
    if isinstance(rows, pd.DataFrame):
        return [{k: (None if not isinstance(v, (list, tuple, dict)) and pd.isna(v) else v)
                 for k, v in r.items()} for r in rows.to_dict("records")]
    return list(rows)


def class_name(dataset: str, category: str) -> str:
    """How a class is named in a row or title: the category, or "dataset / category" where the
    category is not the data set's own name and the data set is not MVTec AD."""
    return category if category == dataset or dataset == "mvtec_ad" else f"{dataset} / {category}"
