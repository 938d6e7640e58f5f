"""The paper's own numbers: the supplement's Table 1 and Table 2, its erratum, and the names of its
methods and columns.

The numbers are the project's copy of the supplement's tables, shipped as package data
(``atac/published/table1.csv``, ``table2.csv``; see ``atac/published/README.md``).
"""

from __future__ import annotations

import csv
import io
import statistics
from functools import lru_cache
from importlib import resources

MISSING = "—"    # a cell with no value (ours or the paper's), in every table of atac.reporting
CITATION = ("Gupta, Gautam, Malyala, \"ATAC-Net: Zoomed view works better for Anomaly Detection\", "
            "arXiv 2406.14398, 2024, supplementary material")

# The ablation ladder of the supplement (§3) in its order; step IV has no column in Table 1.
LADDER = {"cutmix_bce": "I", "weighted_ce": "II", "deviation": "III", "gradcam_zoom": "IV", "atac": "V"}
# Table 1 column -> our method name.
TABLE1_METHODS = {"cutmix_bce": "cutmix_bce", "weighted_ce": "weighted_ce",
                  "deviation_loss": "deviation", "atac_net": "atac"}
# The paper's claimed ordering, best first.
PAPER_ORDER = ("atac", "deviation", "weighted_ce", "cutmix_bce")
PAPER_BACKBONE = "resnet50"

# Table 2 column -> our method name. The paper's DevNet column is DevNet as published (its numbers
# are the ones the DRA paper printed); ours is the `deviation` recipe (step III: DevNet's top-k
# scoring and deviation loss on our backbone), the closest thing atac trains.
TABLE2_METHODS = {"devnet": "deviation", "dra": "dra", "atac_net": "atac"}
TABLE2_ORDER = ("deviation", "dra", "atac")     # Table 2's column order
PAPER_NAMES = {"deviation": "DevNet", "dra": "DRA", "atac": "ATAC-Net"}   # the paper's column names
RIVALS = ("deviation", "dra")                   # what ATAC-Net is claimed to beat on unseen types
MEAN = "mean"                                   # the known_type of a mean-over-types row
# A printed mean further than this from the mean of its printed per-type values is an erratum.
# Every printed value is rounded to three decimals, each off by at most 0.0005: the mean of the
# rounded per-type values is then off by at most 0.0005 and the printed (rounded) mean by at most
# 0.0005 more, so rounding alone can put the two up to 0.001 apart.
ERRATUM_TOLERANCE = 0.001
ERRATUM_MARK = "†"


def _published_csv(name: str) -> list[dict]:
    text = resources.files("atac").joinpath("published", name).read_text()
    return list(csv.DictReader(io.StringIO(text)))


def published_table1() -> list[dict]:
    """The paper's Table 1 (supplement): image AUROC per MVTec AD class and ladder method.

    Source: ``atac/published/table1.csv`` (a copy of the supplement's Table 1; MVTec AD, general
    setting, ten known anomalies, ResNet-50, the paper's training budget).

    Returns:
        One dict per (class, method), 16 classes × 4 methods: ``dataset`` ("mvtec_ad"),
        ``category`` (MVTec class; the paper's 15-class mean is category "mean"),
        ``n_anomaly_types`` (int, None on the mean row), ``method`` (our name: cutmix_bce,
        weighted_ce, deviation, atac), ``step`` (I, II, III, V), ``setting`` ("general"),
        ``shots`` (10), ``backbone`` ("resnet50"), ``image_auroc`` (float in [0, 1]).
    """
    out = []
    for line in _published_csv("table1.csv"):
        n_types = line["n_anomaly_types"].strip()
        for column, method in TABLE1_METHODS.items():
            out.append({"dataset": "mvtec_ad", "category": line["class"],
                        "n_anomaly_types": int(n_types) if n_types else None,
                        "method": method, "step": LADDER[method], "setting": "general", "shots": 10,
                        "backbone": PAPER_BACKBONE, "image_auroc": float(line[column])})
    return out


def published_table2() -> list[dict]:
    """The paper's Table 2 (supplement): image AUROC in the hard setting, per class, known type,
    number of anomalies and method.

    Source: ``atac/published/table2.csv`` (a copy of the supplement's Table 2: MVTec AD tile and
    metal_nut, ResNet-50, the known anomalies all of one type and that type removed from the test
    set). Values are as printed, errata included.

    Returns:
        One dict per (class, known type, shots, method), 2 classes × (5 + 1 or 4 + 1) rows × 2 shots
        × 3 methods = 66: ``dataset`` ("mvtec_ad"), ``category`` (tile, metal_nut), ``known_type``
        (a defect type, or "mean" for the paper's mean over the types), ``shots`` (1 or 10),
        ``method`` (our name: deviation for the DevNet column, dra, atac), ``setting`` ("hard"),
        ``backbone`` ("resnet50"), ``image_auroc`` (as printed), ``types_mean`` (mean rows: the mean
        of the printed per-type values; else None) and ``erratum`` (a sentence where the printed
        mean and ``types_mean`` differ by more than rounding — Tile, ten shots, DRA: printed 0.935,
        the types average 0.953; else None).
    """
    out = []
    for line in _published_csv("table2.csv"):
        for column, method in TABLE2_METHODS.items():
            out.append({"dataset": "mvtec_ad", "category": line["class"],
                        "known_type": line["known_anomaly_type"], "shots": int(line["shots"]),
                        "method": method, "setting": "hard", "backbone": PAPER_BACKBONE,
                        "image_auroc": float(line[column]), "types_mean": None, "erratum": None})
    for r in out:
        if r["known_type"] != MEAN:
            continue
        vals = [p["image_auroc"] for p in out if p["known_type"] != MEAN and
                (p["category"], p["shots"], p["method"]) == (r["category"], r["shots"], r["method"])]
        r["types_mean"] = statistics.fmean(vals)
        if abs(r["types_mean"] - r["image_auroc"]) > ERRATUM_TOLERANCE:
            r["erratum"] = (f"erratum: the paper prints {r['image_auroc']:.3f} as the mean of "
                            f"{r['category']}, {r['shots']} shots, {r['method']}, but its {len(vals)} "
                            f"per-type values average {r['types_mean']:.3f}")
    return out


@lru_cache(maxsize=1)
def _table1_lookup() -> dict[tuple[str, str], float]:
    return {(r["category"], r["method"]): r["image_auroc"] for r in published_table1()}


@lru_cache(maxsize=1)
def _table2_lookup() -> dict[tuple[str, str, int, str], dict]:
    return {(p["category"], p["known_type"], p["shots"], p["method"]): p for p in published_table2()}


def paper_table1() -> dict[tuple[str, str], float]:
    """The paper's Table 1 as ``{(MVTec AD category, our method): image AUROC}`` (a new dict)."""
    return dict(_table1_lookup())


def paper_table2() -> dict[tuple[str, str, int, str], dict]:
    """The paper's Table 2 as ``{(category, known type, shots, our method): row of
    :func:`published_table2`}`` (a new dict; the rows are shared, do not change them)."""
    return dict(_table2_lookup())


def table1_value(dataset: str, category: str, shots: int, method: str) -> float | None:
    """The paper's Table 1 value for one of our general-setting rows: an MVTec AD class (not the
    "mean" row) at ten shots and a Table 1 method; else None."""
    if dataset != "mvtec_ad" or shots != 10 or category == MEAN:
        return None
    return _table1_lookup().get((category, method))


def table2_entry(dataset: str, category: str, known_type: str, shots: int, method: str) -> dict | None:
    """The paper's Table 2 row (:func:`published_table2`) for one of our hard-setting rows, or None
    where the paper has none (a class other than MVTec AD tile and metal_nut)."""
    if dataset != "mvtec_ad":
        return None
    return _table2_lookup().get((category, known_type, shots, method))


def method_order(method: str) -> tuple:
    """A sort key: the ladder's order I..V first, then other methods (e.g. dra) by name."""
    order = list(LADDER)
    return (order.index(method), "") if method in LADDER else (len(order), method)


def table2_method_order(method: str) -> tuple:
    """A sort key: Table 2's column order (deviation, dra, atac), then other methods by name."""
    return (TABLE2_ORDER.index(method), "") if method in TABLE2_ORDER else (len(TABLE2_ORDER), method)


def type_order(known_type: str) -> tuple:
    """A sort key of known types: by name, the mean over types last."""
    return (known_type == MEAN, known_type)


def paper_cell(value: float | None, types_mean: float | None = None, erratum: str | None = None,
               types: bool = True) -> str:
    """A cell of the paper's value: ``0.988``; an erratum marked ``0.935 † (types: 0.953)`` (with
    ``types`` False just ``0.935 †``); "—" where there is none."""
    if value is None:
        return MISSING
    if erratum:
        return f"{value:.3f} {ERRATUM_MARK}" + (f" (types: {types_mean:.3f})" if types else "")
    return f"{value:.3f}"
