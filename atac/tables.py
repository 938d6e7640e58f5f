"""Our results next to the paper's: Table 1 (the ablation ladder) and Table 2 (the hard setting) as
rows, Markdown/CSV and figures, and the paper's claims checked on them.

The paper's numbers are the project's own copy of the supplement's tables, shipped as package data
(``atac/published/table1.csv``, ``table2.csv``; see ``atac/published/README.md``). Ours come from
results records (the ``metrics.json`` dicts ``atac train`` writes; a sweep file is JSONL of them,
read with :func:`atac.results.load_records`).

Rows are built in two steps that a Table 2 can reuse: :func:`_group` collects records into groups
keyed by what must not be averaged together (dataset, category, backbone, budget, shots, method, and
for Table 2 the known anomaly type), and :func:`_stats` turns a group into mean ± sample std.

Table 1: :func:`published_table1`, :func:`table1_rows`, :func:`render_table1`, :func:`table1_figure`,
:func:`ladder_order`, :func:`ladder_pairs`. Recorded results, file by file: :func:`recorded_results`,
:func:`describe_setups`. Table 2 (hard setting: DevNet, DRA, ATAC-Net per known defect type):
:func:`published_table2`, :func:`table2_rows`, :func:`render_table2`, :func:`render_published_table2`,
:func:`table2_figure`, :func:`table2_claims`. One class in the paper's Table 2 layout, ours beside
the paper's (e.g. metal_nut): :func:`render_class_table2`; what a sweep has not recorded yet, with
the paper's values for a class without runs: :func:`sweep_progress`, :func:`render_progress`,
:func:`paper_table1_sentence`; what differs from the paper's runs, from the configs:
:func:`setup_differences`.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import statistics
from importlib import resources
from pathlib import Path

from matplotlib.figure import Figure

CITATION = ("Gupta, Gautam, Malyala, \"ATAC-Net: Zoomed view works better for Anomaly Detection\", "
            "arXiv 2406.14398, 2024, supplementary material")

# The ablation ladder of the supplement (§3) in its order; step IV has no column in Table 1.
LADDER = {"cutmix_bce": "I", "weighted_ce": "II", "deviation": "III", "gradcam_zoom": "IV", "atac": "V"}
# Table 1 column -> our method name.
TABLE1_METHODS = {"cutmix_bce": "cutmix_bce", "weighted_ce": "weighted_ce",
                  "deviation_loss": "deviation", "atac_net": "atac"}
# The paper's claimed ordering, best first (checked by ladder_order).
PAPER_ORDER = ("atac", "deviation", "weighted_ce", "cutmix_bce")

REQUIRED_KEYS = ("method", "backbone", "dataset", "category", "setting", "shots", "seed")
MISSING = "—"


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
                        "backbone": "resnet50", "image_auroc": float(line[column])})
    return out


def _paper_lookup() -> dict[tuple[str, str], float]:
    return {(r["category"], r["method"]): r["image_auroc"] for r in published_table1()}


def budget(record: dict) -> str:
    """A short label of a record's training budget, from its config: e.g.
    ``"cpu: 15 epochs × 20 steps, batch 16, 224 px"``; ``"unknown"`` when the record has no config."""
    c = record.get("config") or {}
    if not c:
        return "unknown"
    return (f"{c.get('preset', '?')}: {c.get('epochs', '?')} epochs × {c.get('steps_per_epoch', '?')} "
            f"steps, batch {c.get('batch_size', '?')}, {c.get('image_size', '?')} px")


def _method_key(method: str) -> tuple:
    """Ladder order I..V first, then other methods (e.g. dra) by name."""
    order = list(LADDER)
    return (order.index(method), "") if method in LADDER else (len(order), method)


def _check(records: list[dict], metric: str) -> None:
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


# fields the budget label (or a key of its own) already names: left out of the variant label
_NAMED = ("backbone", "preset", "epochs", "steps_per_epoch", "batch_size", "image_size")


def setups(records: list[dict]) -> list[str]:
    """Each record's setup label: :func:`budget`, then (after ``"; "``) the config fields in which runs
    of its method differ among ``records`` (:func:`atac.frame.arm_labels`, e.g. ``lr=0.001``), so
    that runs whose configs differ in anything but the seed and the class are never pooled."""
    from .frame import arm_labels

    labels = arm_labels([r.get("config") or {} for r in records], ignore=_NAMED, within_method=True)
    out = []
    for r, label in zip(records, labels):
        variant = label.partition(" ")[2]
        out.append(f"{budget(r)}; {variant}" if variant else budget(r))
    return out


def _group(records: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    """Records grouped by ``keys`` (``budget`` is the setup label of :func:`setups`, derived from the
    config); a seed that appears twice in one group is an error (a rerun appended to a sweep file
    would otherwise count twice)."""
    groups: dict[tuple, list[dict]] = {}
    setup = setups(records) if "budget" in keys else [None] * len(records)
    for r, label in zip(records, setup):
        key = tuple(label if k == "budget" else r.get(k) for k in keys)
        groups.setdefault(key, []).append(r)
    for key, recs in groups.items():
        seeds = [r["seed"] for r in recs]
        dup = sorted({s for s in seeds if seeds.count(s) > 1}, key=str)
        if dup:
            raise ValueError(f"seed(s) {dup} appear more than once in group "
                             f"{dict(zip(keys, key))}; remove the duplicate records")
    return groups


METRIC_NAMES = {"image_auroc": "Image AUROC", "image_auprc": "Image AUPRC", "pixel_auroc": "Pixel AUROC"}


def _stats(recs: list[dict], metric: str) -> dict:
    vals = [float(r[metric]) for r in sorted(recs, key=lambda r: str(r["seed"]))]
    if not all(math.isfinite(v) for v in vals):
        bad = next(r for r in recs if not math.isfinite(float(r[metric])))
        raise ValueError(f"{metric} of the record {bad.get('method')}/{bad.get('category')}/seed "
                         f"{bad.get('seed')} is not a finite number ({bad[metric]!r})")
    return {"n": len(vals), "seeds": sorted((r["seed"] for r in recs), key=str), "values": vals,
            "mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None}


TABLE1_KEYS = ("dataset", "category", "backbone", "budget", "shots", "method")


def table1_rows(records: list[dict], metric: str = "image_auroc") -> list[dict]:
    """Our general-setting results per (dataset, category, backbone, budget, shots, method), with
    the paper's Table 1 value beside them.

    Args:
        records: results records (``metrics.json`` dicts). Each needs ``method``, ``backbone``,
            ``dataset``, ``category``, ``setting``, ``shots``, ``seed`` and ``metric``. Records of
            the hard setting are left out; records of different backbones or budgets (the config's
            preset, epochs, steps, batch, image size) are never averaged together.
        metric: the record key to summarise (Table 1 is ``image_auroc``; the paper's value is only
            given for that metric).
    Returns:
        One dict per group, sorted by dataset, category, backbone, budget, shots, then method in
        ladder order I..V (others, e.g. ``dra``, after): ``dataset``, ``category``, ``backbone``,
        ``budget`` (str), ``shots``, ``method``, ``setting`` ("general"), ``known_type`` (None),
        ``step`` ("I".."V" or None), ``metric``, ``n``
        (seeds), ``seeds``, ``values``, ``mean``, ``std`` (sample std; None when n = 1), ``paper``
        (the supplement's Table 1 value where one exists: MVTec AD class, ten shots, a Table 1
        method; else None) and ``diff`` (mean − paper, or None).
    Raises:
        ValueError: the list is empty, a record lacks a required key (named), no record is of the
            general setting, or one seed appears twice in a group.
    """
    _check(records, metric)
    general = [r for r in records if r["setting"] == "general"]
    if not general:
        found = sorted({str(r["setting"]) for r in records})
        raise ValueError(f"no general-setting records (settings found: {', '.join(found)})")
    paper = _paper_lookup() if metric == "image_auroc" else {}
    rows = []
    for key, recs in _group(general, TABLE1_KEYS).items():
        row = {**dict(zip(TABLE1_KEYS, key)), "setting": "general", "known_type": None,
               "step": LADDER.get(key[-1]), "metric": metric, **_stats(recs, metric)}
        p = None
        if row["dataset"] == "mvtec_ad" and row["shots"] == 10 and row["category"] != "mean":
            p = paper.get((row["category"], row["method"]))
        row["paper"] = p
        row["diff"] = row["mean"] - p if p is not None else None
        rows.append(row)
    rows.sort(key=lambda r: (str(r["dataset"]), str(r["category"]), str(r["backbone"]),
                             r["budget"], r["shots"], _method_key(r["method"])))
    return rows


def _metric_label(metric: str) -> str:
    """An axis label for a record's metric name: ``image_auroc`` -> ``image AUROC``."""
    return " ".join({"auroc": "AUROC", "auprc": "AUPRC"}.get(w, w) for w in metric.split("_"))


def _f(x: float | None, spec: str = ".3f") -> str:
    return MISSING if x is None else format(x, spec)


def _caption(rows: list[dict]) -> str:
    ours = sorted({f"{r['backbone']} ({r['budget']})" for r in rows})
    metric = METRIC_NAMES.get(rows[0].get("metric", "image_auroc"), rows[0].get("metric"))
    return (f"{metric}, general setting, ours as mean ± sample std (n seeds). Paper: {CITATION}, "
            f"Table 1 — the paper's own numbers (ResNet-50, paper budget, ten anomalies). "
            f"Ours: {'; '.join(ours)}.")


def _csv(rows: list[dict], cols: list[str]) -> str:
    """``rows`` as CSV with columns ``cols`` (None → empty, the seeds list → "0;1;2")."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if r[c] is None else (";".join(map(str, r[c])) if c == "seeds" else r[c])
                    for c in cols])
    return buf.getvalue()


def _ours(r: dict) -> str:
    """Our cell: ``mean ± std (n)`` (no ± for a single seed)."""
    return f"{r['mean']:.3f}" + (f" ± {r['std']:.3f}" if r["std"] is not None else "") + f" ({r['n']})"


def render_table1(rows: list[dict], fmt: str = "markdown") -> str:
    """Rows of :func:`table1_rows` as text.

    Args:
        rows: from :func:`table1_rows`.
        fmt: ``"markdown"``: a one-line caption citing the paper (its numbers are the paper's,
            ResNet-50 at the paper's budget; ours name their backbone and budget), then a table with
            ``mean ± std (n)``, the paper's value and Δ = ours − paper, "—" where there is none;
            backbone and budget columns appear only when the rows hold more than one of them.
            ``"csv"``: header + one line per row with plain numeric columns (empty where None;
            seeds joined by ";").
    Returns:
        The text, ending in a newline.
    Raises:
        ValueError: no rows, or an unknown ``fmt``.
    """
    if not rows:
        raise ValueError("no rows to render")
    if fmt == "csv":
        cols = ["dataset", "category", "backbone", "budget", "shots", "step", "method", "metric",
                "n", "seeds", "mean", "std", "paper", "diff"]
        return _csv(rows, cols)
    if fmt != "markdown":
        raise ValueError(f"unknown format '{fmt}'; choose markdown or csv")
    # backbone and budget get a column only when they vary; the caption names them either way
    keys = ["dataset", "category"] + [k for k in ("backbone", "budget")
                                      if len({r[k] for r in rows}) > 1] + ["shots", "step", "method"]
    head = keys + ["ours", "paper", "Δ"]
    lines = [_caption(rows), "", "| " + " | ".join(head) + " |",
             "|" + "|".join("---:" if h in ("shots", "ours", "paper", "Δ") else "---" for h in head) + "|"]
    for r in rows:
        ours = _ours(r)
        cells = [MISSING if r[k] is None else r[k] for k in keys]
        cells += [ours, _f(r["paper"]), _f(r["diff"], "+.3f")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def table1_figure(rows: list[dict], path=None) -> Figure:
    """Our means ± std against the paper's values, one panel per (dataset, category).

    Methods on the x axis in ladder order (for MVTec AD classes the four Table 1 methods are always
    shown, so the paper's values appear even where we have no run). Ours: filled points with error
    bars (sample std; none for n = 1), one series per (shots, backbone, budget), offset sideways.
    The paper's Table 1 value: a hollow black circle.

    Args:
        rows: from :func:`table1_rows`.
        path: where to save the figure (any format matplotlib knows), or None.
    Returns:
        A Figure with exactly one axes per (dataset, category), y = the rows' metric.
    Raises:
        ValueError: no rows.
    """
    if not rows:
        raise ValueError("no rows to plot")
    panels: dict[tuple, list[dict]] = {}
    for r in rows:
        panels.setdefault((r["dataset"], r["category"]), []).append(r)
    series = sorted({(r["shots"], r["backbone"], r["budget"]) for r in rows}, key=str)
    paper = _paper_lookup()
    n = len(panels)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        fig.delaxes(ax)
    colors = [f"C{i}" for i in range(10)]
    for ax, ((dataset, category), prs) in zip(axes, panels.items()):
        methods = {r["method"] for r in prs}
        if dataset == "mvtec_ad":
            methods |= {m for (c, m) in paper if c == category}
        methods = sorted(methods, key=_method_key)
        x = {m: i for i, m in enumerate(methods)}
        width = 0.5 / max(1, len(series))
        for j, s in enumerate(series):
            pts = [r for r in prs if (r["shots"], r["backbone"], r["budget"]) == s]
            if not pts:
                continue
            off = (j - (len(series) - 1) / 2) * width
            ax.errorbar([x[r["method"]] + off for r in pts], [r["mean"] for r in pts],
                        yerr=[r["std"] or 0.0 for r in pts], fmt="o", ms=5, capsize=3,
                        color=colors[j % 10], label=f"ours, {s[0]} shots, {s[1]} ({s[2]})")
        if dataset == "mvtec_ad":
            pm = [m for m in methods if (category, m) in paper]
            if pm:
                ax.plot([x[m] for m in pm], [paper[(category, m)] for m in pm], "o", ms=9,
                        mfc="none", mec="black", mew=1.3, ls="none", label="paper (ResNet-50, 10 shots)")
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels([f"{LADDER[m]}\n{m}" if m in LADDER else m for m in methods], fontsize=8)
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_title(category if category == dataset else f"{dataset} / {category}", fontsize=10)
        ax.set_ylabel(_metric_label(prs[0]["metric"]))
        ax.grid(axis="y", alpha=0.3)
    handles, labels = {}, []
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in handles:
                handles[lab] = h
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", fontsize=8,
               ncols=min(2, len(handles)))
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


def ladder_order(rows: list[dict], shots: int = 10) -> list[dict]:
    """Does the paper's ordering atac > deviation > weighted_ce > cutmix_bce hold for our means?

    Args:
        rows: from :func:`table1_rows`.
        shots: only rows with this many known anomalies are compared.
    Returns:
        One dict per (dataset, category, backbone, budget) with rows at ``shots``: those keys,
        ``shots``, ``means`` ({method: our mean} for the four methods we have), ``missing`` (methods
        of the four without a run), ``holds`` (True / False; None when a method is missing),
        ``paper_holds`` (the same check on the paper's Table 1 values for an MVTec AD class at ten
        shots; else None) and ``verdict``: "holds", "does not hold: deviation 0.978 > atac 0.917"
        (every adjacent pair out of order), or "cannot tell: no run of weighted_ce, cutmix_bce".
    Raises:
        ValueError: no rows at ``shots``.
    """
    groups: dict[tuple, dict[str, float]] = {}
    for r in rows:
        if r["shots"] == shots:
            key = (r["dataset"], r["category"], r["backbone"], r["budget"])
            groups.setdefault(key, {})[r["method"]] = r["mean"]
    if not groups:
        raise ValueError(f"no rows with {shots} shots (found: {sorted({r['shots'] for r in rows})})")
    paper = _paper_lookup()
    out = []
    for (dataset, category, backbone, bud), means in groups.items():
        mine = {m: means[m] for m in PAPER_ORDER if m in means}
        missing = [m for m in PAPER_ORDER if m not in means]
        if missing:
            holds, verdict = None, f"cannot tell: no run of {', '.join(missing)}"
        else:
            holds, verdict = _order_verdict(mine)
        paper_holds = None
        if dataset == "mvtec_ad" and shots == 10 and all((category, m) in paper for m in PAPER_ORDER):
            paper_holds = _order_verdict({m: paper[(category, m)] for m in PAPER_ORDER})[0]
        out.append({"dataset": dataset, "category": category, "backbone": backbone, "budget": bud,
                    "shots": shots, "means": mine, "missing": missing, "holds": holds,
                    "paper_holds": paper_holds, "verdict": verdict})
    return out


def _order_verdict(means: dict[str, float]) -> tuple[bool, str]:
    """(holds, sentence) for the strict ordering PAPER_ORDER over ``means`` (all four present)."""
    broken = []
    for hi, lo in zip(PAPER_ORDER, PAPER_ORDER[1:]):
        if not means[hi] > means[lo]:
            sign = ">" if means[lo] > means[hi] else "="
            broken.append(f"{lo} {means[lo]:.3f} {sign} {hi} {means[hi]:.3f}")
    return (not broken, "holds" if not broken else "does not hold: " + "; ".join(broken))



# The supplement's three step-by-step claims of Table 1, (better, worse) in ladder order.
LADDER_CLAIMS = (("weighted_ce", "cutmix_bce"), ("deviation", "weighted_ce"), ("atac", "deviation"))


def ladder_pairs(rows: list[dict], shots: int = 10,
                 pairs: tuple[tuple[str, str], ...] = LADDER_CLAIMS) -> list[dict]:
    """Each claimed step of the ladder (``better`` beats ``worse``) judged on our means, with the
    paired differences over their common seeds (the same splits), with their 95% interval.

    Args:
        rows: from :func:`table1_rows`.
        shots: only rows with this many known anomalies are compared.
        pairs: (better, worse) method pairs; default :data:`LADDER_CLAIMS` (II > I, III > II, V > III).
    Returns:
        One dict per (dataset, category, backbone, budget) with rows at ``shots`` (in the order of
        :func:`ladder_order`) and per pair: those keys, ``shots``, ``better``, ``worse``, ``missing``
        (the pair's methods without a row), ``mean_better``, ``mean_worse``, ``n_better``,
        ``n_worse``, ``diff`` (mean_better − mean_worse), ``spread`` (the larger of the two sample
        stds; None when neither has one, i.e. one seed each), ``one_seed`` (True when a side has a
        single seed), ``paper_better``/``paper_worse`` (the paper's Table 1 values, or None),
        ``verdict`` ("supported", "not supported", "not resolved" — the difference is within the
        spread, or zero — or "cannot tell": a method is missing) and ``sentence``, e.g.
        "supported: weighted_ce 0.820 > cutmix_bce 0.710 (+0.110)". The numeric keys are None when
        ``missing``.
    Raises:
        ValueError: no rows at ``shots``.
    """
    if not any(r["shots"] == shots for r in rows):
        raise ValueError(f"no rows with {shots} shots (found: {sorted({r['shots'] for r in rows})})")
    groups: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        if r["shots"] == shots:
            groups.setdefault((r["dataset"], r["category"], r["backbone"], r["budget"]), {})[r["method"]] = r
    out = []
    for (dataset, category, backbone, bud), by in groups.items():
        for better, worse in pairs:
            res = {"dataset": dataset, "category": category, "backbone": backbone, "budget": bud,
                   "shots": shots, "better": better, "worse": worse,
                   "missing": [m for m in (better, worse) if m not in by],
                   "mean_better": None, "mean_worse": None, "n_better": None, "n_worse": None,
                   "diff": None, "spread": None, "one_seed": None, "paper_better": None,
                   "paper_worse": None, "paired": None}
            if res["missing"]:
                res["verdict"] = "cannot tell"
                res["sentence"] = f"cannot tell, no run of {', '.join(res['missing'])}"
                out.append(res)
                continue
            b, w = by[better], by[worse]
            diff = b["mean"] - w["mean"]
            stds = [x for x in (b["std"], w["std"]) if x is not None]
            spread = max(stds) if stds else None
            paired = _paired(b, w)
            res.update(mean_better=b["mean"], mean_worse=w["mean"], n_better=b["n"], n_worse=w["n"],
                       diff=diff, spread=spread, one_seed=b["n"] < 2 or w["n"] < 2,
                       paper_better=b["paper"], paper_worse=w["paper"], paired=paired)
            interval = (f"paired over {paired['n']} seed{'s' if paired['n'] != 1 else ''}: "
                        f"{paired['mean']:+.3f}" + (f" [{paired['ci_low']:+.3f}, {paired['ci_high']:+.3f}]"
                                                     if paired["verdict"] != "too few pairs" else ""))
            if paired["verdict"] == "above":
                res["verdict"] = "supported"
                res["sentence"] = (f"supported: {better} {b['mean']:.3f} > {worse} {w['mean']:.3f} "
                                   f"({diff:+.3f}; {interval})")
            elif paired["verdict"] == "below":
                res["verdict"] = "not supported"
                res["sentence"] = (f"not supported: {better} {b['mean']:.3f} < {worse} {w['mean']:.3f} "
                                   f"({diff:+.3f}; {interval}, the interval below 0)")
            else:
                res["verdict"] = "not resolved"
                why = ("the 95% interval includes 0" if paired["verdict"] == "not distinguishable"
                       else "too few paired seeds for an interval")
                res["sentence"] = (f"not resolved: {better} {b['mean']:.3f} vs {worse} {w['mean']:.3f}, "
                                   f"a difference of {diff:+.3f} ({interval}; {why})")
            out.append(res)
    return out


def _paired_types(ours: dict[str, dict], rival: dict[str, dict], types: list[str]) -> dict:
    """Paired differences of two methods' hard-setting rows over every (known type, seed) both
    have (one split each), seeds resampled within each type (:func:`atac.stats.summarize_contrast`)."""
    import pandas as pd

    from .stats import summarize_contrast

    rows = []
    for t in types:
        a = dict(zip(ours[t]["seeds"], ours[t]["values"]))
        b = dict(zip(rival[t]["seeds"], rival[t]["values"]))
        rows += [{"class": t, "diff": a[s] - b[s]} for s in a if s in b]
    return summarize_contrast(pd.DataFrame(rows, columns=["class", "diff"]))


def _paired(better: dict, worse: dict) -> dict:
    """Paired differences of two rows' values over their common seeds (same class, budget and seed:
    the same split), summarised by :func:`atac.stats.summarize_contrast`."""
    import pandas as pd

    from .stats import summarize_contrast

    a = dict(zip(better["seeds"], better["values"]))
    b = dict(zip(worse["seeds"], worse["values"]))
    common = [s for s in a if s in b]
    values = pd.DataFrame({"class": ["c"] * len(common), "diff": [a[s] - b[s] for s in common]})
    return summarize_contrast(values)


PAPER_BACKBONE = "resnet50"


def describe_setups(rows: list[dict]) -> str:
    """The backbones and budgets of ``rows`` (from :func:`table1_rows` / :func:`table2_rows`) as a
    phrase for prose, set against the paper's setup (ResNet-50, the ``paper`` preset): e.g.
    ``"mobilenet_v2 (not the paper's ResNet-50) at the budget cpu: 15 epochs × 20 steps, batch 16,
    224 px (not the paper's budget)"``; several budgets of one backbone are joined by "and",
    several backbones by "; ". Raises ValueError on no rows."""
    if not rows:
        raise ValueError("no rows to describe")
    by_backbone: dict[str, set[str]] = {}
    for r in rows:
        by_backbone.setdefault(str(r["backbone"]), set()).add(r["budget"])
    parts = []
    for backbone, buds in sorted(by_backbone.items()):
        bb = (f"{backbone} (the paper's backbone)" if backbone == PAPER_BACKBONE
              else f"{backbone} (not the paper's ResNet-50)")
        buds = sorted(buds)
        paper = [b.startswith("paper:") for b in buds]
        if all(paper) or not any(paper):
            text = " and ".join(buds) + (" (the paper preset)" if all(paper) else
                                        f" (not the paper's budget{'s' if len(buds) > 1 else ''})")
        else:
            text = " and ".join(b + (" (the paper preset)" if p else " (not the paper's budget)")
                                for b, p in zip(buds, paper))
        parts.append(f"{bb} at the budget{'s' if len(buds) > 1 else ''} {text}")
    return "; ".join(parts)


def results_file_note(path) -> str:
    """What a results file of ``paper_runs/results/`` is, from its name: ``*-partial.jsonl`` is a
    stopped attempt (kept as recorded; its runs are not a finished sweep), ``exploratory-*`` an
    exploratory run; anything else "recorded runs". See ``paper_runs/README.md`` for each file."""
    stem = Path(path).stem
    if stem.endswith("-partial"):
        return "a stopped attempt, partial (kept as recorded; not a finished sweep)"
    if stem.startswith("exploratory"):
        return "an exploratory run"
    return "recorded runs"


def recorded_results(results_dir, metric: str = "image_auroc", sweeps_dir=None) -> list[dict]:
    """Every results file in ``results_dir`` (``*.jsonl``, not a sweep's ``*.sessions.jsonl`` log),
    summarised on its own: files are never pooled, so a number always names the file it comes from.

    Args:
        results_dir: a folder of results files (e.g. ``paper_runs/results``); a missing folder
            gives an empty list.
        metric: the record key to summarise.
        sweeps_dir: a folder of sweep files (e.g. ``paper_runs``); a file that a sweep there writes
            is noted as that sweep with its progress ("sweep table1-cpu: 12 of 42 runs recorded").
            None: not looked up.
    Returns:
        One dict per file, sorted by name: ``file`` (the name), ``note`` (:func:`results_file_note`,
        or the sweep's progress),
        ``n_records``, ``records`` and ``rows``: :func:`table1_rows` of its general-setting records
        then :func:`table2_rows` of its hard-setting ones, each row with ``setting``, ``known_type``
        (None in the general setting), ``budget`` and ``file``; ``paper`` is Table 1's value on a
        general row and Table 2's on a hard row (never Table 1's for a hard row).
    Raises:
        ValueError: a file that cannot be read as records, a record lacking a required key, or a
            seed twice in one group (all name the file).
    """
    from .results import load_records

    folder = Path(results_dir)
    if not folder.is_dir():
        return []
    sweeps = {}
    if sweeps_dir is not None and Path(sweeps_dir).is_dir():
        from . import sweep as atac_sweep   # torch-heavy; only when asked

        for f in sorted(Path(sweeps_dir).glob("*.yaml")):
            sw = atac_sweep.load_sweep(f)
            sweeps[sw.results] = sw
    out = []
    for path in sorted(p for p in folder.glob("*.jsonl") if not p.name.endswith(".sessions.jsonl")):
        records = load_records(path)
        rows = []
        try:
            if any(r.get("setting") == "general" for r in records):
                rows += table1_rows(records, metric)
            if any(r.get("setting") == "hard" for r in records):
                rows += table2_rows(records, metric)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        for r in rows:
            r["file"] = path.name
        note = results_file_note(path)
        sw = sweeps.get(path.resolve())
        if sw is not None:
            done = sum(state.startswith("done") for _, state in atac_sweep.status(sw))
            note = (f"sweep {sw.name}: {done} of {len(sw.runs)} runs recorded"
                    + (", in progress or stopped" if done < len(sw.runs) else ", complete"))
        out.append({"file": path.name, "note": note, "n_records": len(records),
                    "records": records, "rows": rows})
    return out

# ============================================================================ Table 2: hard setting
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
# Defect types per (dataset, category): a mean row over known types is made only when every type
# of the class has a row. grid and Magnetic Tile checked with `atac data info`; tile and metal_nut
# are Table 2's own; carpet is DRA's hard-setting class. Synthetic categories come from atac.data.synth.
DEFECT_TYPES: dict[tuple[str, str], tuple[str, ...]] = {
    ("mvtec_ad", "carpet"): ("color", "cut", "hole", "metal_contamination", "thread"),
    ("mvtec_ad", "grid"): ("bent", "broken", "glue", "metal_contamination", "thread"),
    ("mvtec_ad", "metal_nut"): ("bent", "color", "flip", "scratch"),
    ("mvtec_ad", "tile"): ("crack", "glue_strip", "gray_stroke", "oil", "rough"),
    ("magnetic_tile", "magnetic_tile"): ("blowhole", "break", "crack", "fray", "uneven"),
}
TABLE2_KEYS = ("dataset", "category", "backbone", "budget", "shots", "known_type", "method")


def _defect_types(dataset: str, category: str) -> tuple[str, ...] | None:
    if (dataset, category) in DEFECT_TYPES:
        return DEFECT_TYPES[(dataset, category)]
    if dataset == "synthetic":
        from .data.synth import CATEGORIES
        return tuple(sorted(CATEGORIES.get(category, ()))) or None
    return None


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
                        "method": method, "setting": "hard", "backbone": "resnet50",
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


def _paper2_lookup() -> dict[tuple[str, str, int, str], dict]:
    return {(p["category"], p["known_type"], p["shots"], p["method"]): p for p in published_table2()}


def _method2_key(method: str) -> tuple:
    return (TABLE2_ORDER.index(method), "") if method in TABLE2_ORDER else (len(TABLE2_ORDER), method)


def _type_key(known_type: str) -> tuple:
    return (known_type == MEAN, known_type)


def table2_rows(records: list[dict], metric: str = "image_auroc",
                types: dict[tuple[str, str], list[str]] | None = None) -> list[dict]:
    """Our hard-setting results per (dataset, category, backbone, budget, shots, known type,
    method), with the paper's Table 2 value beside them, plus a mean over the known types.

    Args:
        records: results records (``metrics.json`` dicts). Each needs ``method``, ``backbone``,
            ``dataset``, ``category``, ``setting``, ``shots``, ``seed`` and ``metric``; a hard-setting
            record also needs ``known_type``. General-setting records are left out; records of
            different backbones or budgets are never averaged together.
        metric: the record key to summarise (the paper's values are image AUROC only).
        types: {(dataset, category): every defect type} for classes not in :data:`DEFECT_TYPES`
            (or to override it); a mean row is made only when all types of the class are known.
    Returns:
        Per-type rows sorted by dataset, category, backbone, budget, shots, known type (the mean
        last), then method (deviation, dra, atac; others after): ``dataset``, ``category``,
        ``backbone``, ``budget`` (str), ``shots``, ``known_type``, ``method``, ``setting`` ("hard"),
        ``metric``, ``n`` (seeds), ``seeds``, ``values``, ``mean``, ``std`` (sample std; None when
        n = 1), ``seeds_note`` (None on a per-type row), ``paper``
        (the supplement's Table 2 value for an MVTec AD tile/metal_nut row; else None),
        ``paper_types_mean`` (mean rows: the mean of the paper's per-type values), ``erratum`` (the
        sentence of :func:`published_table2` where the printed mean is wrong; else None), ``diff``
        (mean − paper, or None) and ``n_types`` (1 on a per-type row).
        A mean row (``known_type`` "mean") per (dataset, category, backbone, budget, shots, method)
        whose rows cover every defect type of the class, over the seeds every type has: ``values``
        = per such seed, the mean over types (as the paper averages); ``mean``, ``std`` (None when
        fewer than two) and ``n``/``seeds`` over those same seeds, so the cell ``mean ± std (n)``
        describes one set of runs; ``seeds_note`` says how many runs of other seeds were left out
        (None when none). When no seed is common to all types, ``mean`` is the mean of the
        per-type means over all their seeds, ``n`` = 0, ``std`` None, and ``seeds_note`` says so
        (:func:`render_table2` marks the cell). ``n_types`` = the number of types.
    Raises:
        ValueError: the list is empty, a record lacks a required key (named), no record is of the
            hard setting, a hard record has no known type, or one seed appears twice in a group.
    """
    _check(records, metric)
    hard = [r for r in records if r["setting"] == "hard"]
    if not hard:
        found = sorted({str(r["setting"]) for r in records})
        raise ValueError(f"no hard-setting records (settings found: {', '.join(found)})")
    for i, r in enumerate(hard):
        if not r.get("known_type"):
            raise ValueError(f"hard-setting record ({r['method']}/{r['dataset']}/{r['category']}, seed "
                             f"{r['seed']}) has no known_type")
        if r["known_type"] == MEAN:
            raise ValueError(f"a record's known_type is '{MEAN}', the name of the mean rows")
    paper = _paper2_lookup() if metric == "image_auroc" else {}
    rows = []
    for key, recs in _group(hard, TABLE2_KEYS).items():
        row = {**dict(zip(TABLE2_KEYS, key)), "setting": "hard", "metric": metric,
               **_stats(recs, metric), "seeds_note": None}
        rows.append(_with_paper(row, paper, n_types=1))
    # means over known types
    per_class: dict[tuple, list[dict]] = {}
    for r in rows:
        per_class.setdefault(tuple(r[k] for k in TABLE2_KEYS if k != "known_type"), []).append(r)
    for key, prs in per_class.items():
        dataset, category = key[0], key[1]
        want = (types or {}).get((dataset, category)) or _defect_types(dataset, category)
        have = {r["known_type"] for r in prs}
        if not want or not set(want) <= have:
            continue
        prs = [r for r in prs if r["known_type"] in set(want)]
        common = set.intersection(*(set(r["seeds"]) for r in prs))
        seeds = sorted(common, key=str)
        by_seed = [{s: v for s, v in zip(r["seeds"], r["values"])} for r in prs]
        values = [statistics.fmean(b[s] for b in by_seed) for s in seeds]
        left_out = sum(len(r["seeds"]) for r in prs) - len(seeds) * len(prs)
        if values:   # mean, std and n all over the seeds every type has
            mean = statistics.fmean(values)
            note = (f"{left_out} run(s) of seeds not shared by every type left out" if left_out else None)
        else:        # no seed common to all types: the mean of the per-type means, marked
            mean = statistics.fmean(r["mean"] for r in prs)
            note = "no seed common to all types: mean of the per-type means over all their seeds"
        row = {**dict(zip([k for k in TABLE2_KEYS if k != "known_type"], key)), "known_type": MEAN,
               "setting": "hard", "metric": metric, "n": len(seeds), "seeds": seeds, "values": values,
               "mean": mean, "std": statistics.stdev(values) if len(values) > 1 else None,
               "seeds_note": note}
        rows.append(_with_paper(row, paper, n_types=len(prs)))
    rows.sort(key=lambda r: (str(r["dataset"]), str(r["category"]), str(r["backbone"]), r["budget"],
                             r["shots"], _type_key(r["known_type"]), _method2_key(r["method"])))
    return rows


def condense_hard(rows: list[dict]) -> list[dict]:
    """Rows for an overview: a hard-setting class with a mean over its known types keeps only that
    mean row; every other row (general setting, a class whose types are not all there) is kept.

    Args:
        rows: rows of :func:`table1_rows` and/or :func:`table2_rows` (as :func:`recorded_results`
            gives them).
    Returns:
        The rows in their order, fewer of them; a kept mean row gets ``known_type`` ``"mean over N
        known types"`` (N = its ``n_types``) so that a reader sees what it averages.
    """
    key = ("dataset", "category", "backbone", "budget", "shots", "method")
    with_mean = {tuple(r[k] for k in key) for r in rows
                 if r.get("setting") == "hard" and r.get("known_type") == MEAN}
    out = []
    for r in rows:
        if r.get("setting") != "hard" or tuple(r[k] for k in key) not in with_mean:
            out.append(r)
        elif r.get("known_type") == MEAN:
            out.append(dict(r, known_type=f"mean over {r['n_types']} known types"))
    return out


def _with_paper(row: dict, paper: dict, n_types: int) -> dict:
    p = paper.get((row["category"], row["known_type"], row["shots"], row["method"])) \
        if row["dataset"] == "mvtec_ad" else None
    row["paper"] = p["image_auroc"] if p else None
    row["paper_types_mean"] = p["types_mean"] if p else None
    row["erratum"] = p["erratum"] if p else None
    row["diff"] = row["mean"] - row["paper"] if p else None
    row["n_types"] = n_types
    return row


def _caption2(rows: list[dict]) -> str:
    ours = sorted({f"{r['backbone']} ({r['budget']})" for r in rows})
    metric = METRIC_NAMES.get(rows[0].get("metric", "image_auroc"), rows[0].get("metric"))
    return (f"{metric}, hard setting (the known anomalies all of one defect type, that type removed "
            f"from the test set, so every test anomaly is of a type never seen in training); ours as "
            f"mean ± sample std (n seeds), \"mean\" = the mean over the known types. Paper: {CITATION}, "
            f"Table 2 — the paper's own numbers (ResNet-50; its DevNet column is DevNet as published, "
            f"set against our `deviation` recipe). Ours: {'; '.join(ours)}.")


ERRATUM_MARK = "†"


def _paper_cell(value: float | None, types_mean: float | None, erratum: str | None) -> str:
    if value is None:
        return MISSING
    if erratum:
        return f"{value:.3f} {ERRATUM_MARK} (types: {types_mean:.3f})"
    return f"{value:.3f}"


def _erratum_note(errata: list[str]) -> str:
    return "".join(f"\n{ERRATUM_MARK} {e[0].upper()}{e[1:]}; both are shown, the printed value first "
                   f"(Δ is against the printed value).\n" for e in errata)


def render_table2(rows: list[dict], fmt: str = "markdown") -> str:
    """Rows of :func:`table2_rows` as text.

    Args:
        rows: from :func:`table2_rows`.
        fmt: ``"markdown"``: a caption citing the paper, then a table of ``mean ± std (n)``, the
            paper's value and Δ = ours − paper ("—" where there is none); backbone and budget columns
            only when they vary. The paper's erratum (Tile, ten shots, DRA mean: printed 0.935, its
            types average 0.953) is shown as ``0.935 † (types: 0.953)`` with a † note under the
            table. A mean-over-types cell whose runs differ in seeds between types is marked ‡ with
            its ``seeds_note`` under the table. ``"csv"``: header + one line per row with plain
            columns (empty where None; seeds joined by ";"), including ``seeds_note``,
            ``paper_types_mean`` and ``erratum``.
    Returns:
        The text, ending in a newline.
    Raises:
        ValueError: no rows, or an unknown ``fmt``.
    """
    if not rows:
        raise ValueError("no rows to render")
    if fmt == "csv":
        cols = ["dataset", "category", "backbone", "budget", "shots", "known_type", "method", "metric",
                "n_types", "n", "seeds", "mean", "std", "seeds_note", "paper", "paper_types_mean", "diff",
                "erratum"]
        return _csv(rows, cols)
    if fmt != "markdown":
        raise ValueError(f"unknown format '{fmt}'; choose markdown or csv")
    keys = ["dataset", "category"] + [k for k in ("backbone", "budget")
                                      if len({r[k] for r in rows}) > 1] + ["shots", "known_type", "method"]
    head = keys + ["ours", "paper", "Δ"]
    notes: list[str] = []
    lines = [_caption2(rows), "", "| " + " | ".join(h.replace("_", " ") for h in head) + " |",
             "|" + "|".join("---:" if h in ("shots", "ours", "paper", "Δ") else "---" for h in head) + "|"]
    for r in rows:
        ours = _ours(r)
        cells = [MISSING if r[k] is None else r[k] for k in keys]
        if r["known_type"] == MEAN:
            cells[keys.index("known_type")] = f"**mean** ({r['n_types']} types)"
            if r.get("seeds_note"):
                ours = (f"{r['mean']:.3f} (no common seed) ‡" if r["n"] == 0 else ours + " ‡")
                notes.append(r["seeds_note"])
        cells += [ours, _paper_cell(r["paper"], r["paper_types_mean"], r["erratum"]), _f(r["diff"], "+.3f")]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    errata = sorted({r["erratum"] for r in rows if r["erratum"]})
    seed_note = "".join(f"\n‡ A mean over types: {n}.\n" for n in sorted(set(notes)))
    return "\n".join(lines) + "\n" + _erratum_note(errata) + seed_note


def render_published_table2(fmt: str = "markdown") -> str:
    """The paper's Table 2 as it is printed (one line per class, known type and shots; DevNet, DRA,
    ATAC-Net columns), for showing it where we have no runs.

    ``"markdown"``: a caption citing the paper and the table, the erratum marked † with both values
    and a note; ``"csv"``: the rows of :func:`published_table2`. Raises ValueError on another fmt.
    """
    pub = published_table2()
    if fmt == "csv":
        cols = ["dataset", "category", "known_type", "shots", "method", "image_auroc", "types_mean", "erratum"]
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in pub:
            w.writerow(["" if r[c] is None else r[c] for c in cols])
        return buf.getvalue()
    if fmt != "markdown":
        raise ValueError(f"unknown format '{fmt}'; choose markdown or csv")
    by = {(p["category"], p["known_type"], p["shots"], p["method"]): p for p in pub}
    names = PAPER_NAMES
    lines = [f"Image AUROC, hard setting, ResNet-50 — the paper's numbers as printed. Source: "
             f"{CITATION}, Table 2.", "",
             "| class | shots | known type | " + " | ".join(names[m] for m in TABLE2_ORDER) + " |",
             "|---|---:|---|" + "---:|" * len(TABLE2_ORDER)]
    seen = []
    for p in pub:
        key = (p["category"], p["shots"], p["known_type"])
        if key in seen:
            continue
        seen.append(key)
        cells = [_paper_cell(by[(key[0], key[2], key[1], m)]["image_auroc"],
                             by[(key[0], key[2], key[1], m)]["types_mean"],
                             by[(key[0], key[2], key[1], m)]["erratum"]) for m in TABLE2_ORDER]
        kt = f"**{MEAN}**" if key[2] == MEAN else key[2]
        lines.append(f"| {key[0]} | {key[1]} | {kt} | " + " | ".join(cells) + " |")
    errata = sorted({p["erratum"] for p in pub if p["erratum"]})
    return "\n".join(lines) + "\n" + "".join(
        f"\n{ERRATUM_MARK} {e[0].upper()}{e[1:]}; both are shown, the printed value first.\n" for e in errata)


def table2_figure(rows: list[dict], path=None) -> Figure:
    """Per known type: our means ± std and the paper's values, one panel per (dataset, category,
    shots).

    Known types on the x axis (then "mean" where there is a mean row; for the paper's classes the
    paper's types are always shown, so its values appear even where we have no run). One series per
    method (colour: deviation, dra, atac; with several backbones/budgets, one series per method and
    setup, marker shape by setup), offset sideways. Ours: filled points with error bars (sample std;
    none for n = 1). The paper's Table 2 value: a hollow circle of the method's colour; where the
    printed mean is an erratum, a hollow square at the mean of the paper's per-type values, marked †.

    Args:
        rows: from :func:`table2_rows`.
        path: where to save the figure (any format matplotlib knows), or None.
    Returns:
        A Figure with exactly one axes per (dataset, category, shots), y = the rows' metric.
    Raises:
        ValueError: no rows.
    """
    if not rows:
        raise ValueError("no rows to plot")
    panels: dict[tuple, list[dict]] = {}
    for r in rows:
        panels.setdefault((r["dataset"], r["category"], r["shots"]), []).append(r)
    setups = sorted({(r["backbone"], r["budget"]) for r in rows}, key=str)
    methods = sorted({r["method"] for r in rows} | set(TABLE2_ORDER), key=_method2_key)
    series = [(m, s) for m in methods for s in setups]
    paper = _paper2_lookup()
    n = len(panels)
    shots_all = sorted({k[2] for k in panels})
    ncols = min(max(1, len(shots_all)), n) if n > 1 else 1
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(5.2 * ncols, 3.4 * nrows + 0.7), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes[n:]:
        fig.delaxes(ax)
    color = {m: f"C{i}" for i, m in enumerate(methods)}
    markers = "osD^v<>"
    for ax, ((dataset, category, shots), prs) in zip(axes, sorted(panels.items(), key=lambda kv: str(kv[0]))):
        types = {r["known_type"] for r in prs}
        pkeys = [k for k in paper if dataset == "mvtec_ad" and k[0] == category and k[2] == shots]
        types |= {k[1] for k in pkeys}
        types = sorted(types, key=_type_key)
        x = {t: i for i, t in enumerate(types)}
        width = 0.6 / max(1, len(series))
        for j, (m, s) in enumerate(series):
            off = (j - (len(series) - 1) / 2) * width
            pts = [r for r in prs if r["method"] == m and (r["backbone"], r["budget"]) == s]
            mk = markers[setups.index(s) % len(markers)]
            if pts:
                label = (f"ours, {PAPER_NAMES.get(m, m)}"
                         + (f", {s[0]} ({s[1]})" if len(setups) > 1 else ""))
                ax.errorbar([x[r["known_type"]] + off for r in pts], [r["mean"] for r in pts],
                            yerr=[r["std"] or 0.0 for r in pts], fmt=mk, ms=5, capsize=3,
                            color=color[m], label=label)
            if setups.index(s) == 0:
                pp = [(t, paper[(category, t, shots, m)]["image_auroc"]) for t in types
                      if (category, t, shots, m) in paper and dataset == "mvtec_ad"]
                if pp:
                    ax.plot([x[t] + off for t, _ in pp], [v for _, v in pp], "o", ms=9, mfc="none",
                            mec=color[m], mew=1.3, ls="none", label=f"paper, {PAPER_NAMES[m]} (ResNet-50)")
                for t in types:   # an erratum: the mean of the paper's types too, marked †
                    p = paper.get((category, t, shots, m)) if dataset == "mvtec_ad" else None
                    if p and p["erratum"]:
                        ax.plot([x[t] + off], [p["types_mean"]], "s", ms=8, mfc="none", mec=color[m],
                                mew=1.0, ls="none", label="paper: mean of its types, where the printed "
                                                         f"mean is an erratum ({ERRATUM_MARK})")
                        ax.annotate(ERRATUM_MARK, (x[t] + off, p["types_mean"]), xytext=(5, 2),
                                    textcoords="offset points", fontsize=9, color=color[m])
        if MEAN in x:
            ax.axvline(x[MEAN] - 0.5, color="0.7", lw=0.8)
        ax.set_xticks(range(len(types)))
        ax.set_xticklabels([t.replace("_", "\n") for t in types], fontsize=8)
        ax.set_xlim(-0.6, len(types) - 0.4)
        name = category if category == dataset else f"{dataset} / {category}"
        ax.set_title(f"{name}, {shots} known anomal{'y' if shots == 1 else 'ies'}", fontsize=10)
        ax.set_xlabel("known (training) anomaly type", fontsize=8)
        ax.set_ylabel(_metric_label(prs[0]["metric"]) + " on unseen types")
        ax.grid(axis="y", alpha=0.3)
    handles: dict = {}
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", fontsize=8,
               ncols=min(3, len(handles)))
    if path is not None:
        fig.savefig(path, dpi=150)
    return fig


def table2_claims(rows: list[dict]) -> list[dict]:
    """Does ATAC-Net beat DevNet (our ``deviation``) and DRA on unseen defect types?

    The paper's Table 2 claim: in the hard setting ATAC-Net's mean over known types is above
    DevNet's and DRA's. For every (dataset, category, shots) and every combination of one setup
    (backbone, budget) per method, the known types with a row of all three methods are compared.

    Args:
        rows: from :func:`table2_rows` (per-type rows are used; mean rows are recomputed over the
            compared types).
    Returns:
        One dict per group: ``dataset``, ``category``, ``shots``, ``setups`` ({method: "backbone
        (budget)"}), ``types`` (the compared known types), ``n_types``, ``all_types`` (True when they
        are every defect type of the class; None when the class's types are unknown), ``missing``
        (methods without a row), ``means`` ({method: mean over the compared types}), ``wins``
        ({rival: on how many of the types ATAC-Net's mean is higher}), ``spread`` ({rival: the larger
        of the two methods' mean-row std, or None}), ``beats`` ({rival: True / False, None when it
        cannot tell}), ``paired`` ({rival: paired differences over (known type, seed),
        :func:`atac.stats.summarize_contrast`}), ``holds`` (True: ATAC-Net's paired interval lies above
        both rivals'; False: below either; None when it cannot tell or is not resolved), ``paper_holds``
        (the same on the paper's per-type values for a Table 2 class and shots; else None) and
        ``sentence`` (a plain statement of all this).
    Raises:
        ValueError: no rows.
    """
    if not rows:
        raise ValueError("no rows to judge")
    per = [r for r in rows if r["known_type"] != MEAN]
    means_rows = {(r["dataset"], r["category"], r["shots"], r["method"], r["backbone"], r["budget"]): r
                  for r in rows if r["known_type"] == MEAN}
    groups: dict[tuple, dict[str, dict[tuple, dict[str, dict]]]] = {}
    for r in per:
        g = groups.setdefault((r["dataset"], r["category"], r["shots"]), {})
        g.setdefault(r["method"], {}).setdefault((r["backbone"], r["budget"]), {})[r["known_type"]] = r
    paper = _paper2_lookup()
    out = []
    for (dataset, category, shots), by_method in sorted(groups.items(), key=lambda kv: str(kv[0])):
        missing = [m for m in TABLE2_ORDER if m not in by_method]
        choices = [sorted(by_method[m]) if m in by_method else [None] for m in TABLE2_ORDER]
        for combo in itertools.product(*choices):
            setup = dict(zip(TABLE2_ORDER, combo))
            out.append(_claim(dataset, category, shots, setup, by_method, missing, means_rows, paper))
    return out


def _claim(dataset, category, shots, setup, by_method, missing, means_rows, paper) -> dict:
    names = {"deviation": "DevNet (our deviation recipe)", "dra": "DRA", "atac": "ATAC-Net"}
    present = {m: by_method[m][s] for m, s in setup.items() if s is not None}
    types = sorted(set.intersection(*(set(v) for v in present.values())), key=_type_key) \
        if present else []
    if missing:
        types = []
    known = _defect_types(dataset, category)
    all_types = None if known is None else set(types) == set(known)
    res = {"dataset": dataset, "category": category, "shots": shots,
           "setups": {m: f"{s[0]} ({s[1]})" for m, s in setup.items() if s is not None},
           "types": types, "n_types": len(types), "all_types": all_types, "missing": missing,
           "means": {}, "wins": {}, "spread": {}, "beats": {r: None for r in RIVALS}, "holds": None,
           "paper_holds": None}
    name = category if category == dataset else f"{dataset} / {category}"
    where = f"{name}, {shots} known anomal{'y' if shots == 1 else 'ies'} of one type"
    pt = [k[1] for k in paper if dataset == "mvtec_ad" and k[0] == category and k[2] == shots
          and k[3] == "atac" and k[1] != MEAN]
    if pt:
        pm = {m: statistics.fmean(paper[(category, t, shots, m)]["image_auroc"] for t in pt)
              for m in TABLE2_ORDER}
        res["paper_holds"] = all(pm["atac"] > pm[r] for r in RIVALS)
    if not types:
        why = (f"no run of {', '.join(missing)}" if missing else
               "no known type has a run of all three methods")
        res["sentence"] = f"{where}: cannot tell, {why}."
        return res
    for m, rs in present.items():
        res["means"][m] = statistics.fmean(rs[t]["mean"] for t in types)
    a = res["means"]["atac"]
    parts = []
    for rival in RIVALS:
        b = res["means"][rival]
        wins = sum(present["atac"][t]["mean"] > present[rival][t]["mean"] for t in types)
        res["wins"][rival] = wins
        stds = [means_rows.get((dataset, category, shots, m, *setup[m]), {}).get("std")
                for m in ("atac", rival)] if all_types else []
        stds = [s for s in stds if s is not None]
        res["spread"][rival] = max(stds) if stds else None
        res["beats"][rival] = a > b
        verb = "beats" if a > b else "does not beat"
        text = (f"{verb} {names[rival]}: {a:.3f} vs {b:.3f} ({a - b:+.3f}), higher on {wins} of "
                f"{len(types)} known-type split{'s' if len(types) != 1 else ''}")
        paired = _paired_types(present["atac"], present[rival], types)
        res.setdefault("paired", {})[rival] = paired
        if paired["verdict"] == "too few pairs":
            text += f"; too few paired runs ({paired['n']}) for an interval"
        else:
            text += (f"; paired by type and seed over {paired['n']} runs: {paired['mean']:+.3f} "
                     f"[{paired['ci_low']:+.3f}, {paired['ci_high']:+.3f}], {paired['verdict']}")
        parts.append(text)
    # the claim judged from the paired intervals: above both rivals holds; below either does not
    judged = [res["paired"][r]["verdict"] for r in RIVALS]
    res["holds"] = (True if all(v == "above" for v in judged) else
                    False if any(v == "below" for v in judged) else None)
    scope = (f"all {len(types)} known types" if all_types else
             f"{len(types)} known type{'s' if len(types) != 1 else ''}"
             + ("" if all_types is None else f" of {len(known)}"))
    verdict = {True: "holds", False: "does not hold"}.get(
        res["holds"], "is not resolved (an interval includes 0, or too few runs)")
    metric = next((r.get("metric") for setups in by_method.values() for per_type in setups.values()
                   for r in per_type.values()), "image_auroc")
    mname = METRIC_NAMES.get(metric, str(metric))
    mname = mname[0].lower() + mname[1:]
    sent = (f"{where}, mean {mname} on unseen types over {scope}: ATAC-Net {parts[0]}; it "
            f"{parts[1]}. The paper's claim (ATAC-Net above both) {verdict} here.")
    if any(present[m][t]["n"] < 2 for m in present for t in types):
        sent += " Some of these runs have one seed only, so their seed-to-seed spread is unknown."
    if res["paper_holds"] is not None:
        sent += (f" On the paper's own values for this class it "
                 f"{'holds' if res['paper_holds'] else 'does not hold'}.")
    if len(set(res["setups"].values())) > 1:
        sent += " Setups: " + "; ".join(f"{m} {s}" for m, s in res["setups"].items()) + "."
    res["sentence"] = sent
    return res


def view_summary(records: list[dict], methods: tuple[str, ...] = ("atac",)) -> list[dict]:
    """Which view ranks the test set better: the full image, the zoomed crop, or their mean?

    Beyond the paper (it reports the final score only): records of zoom recipes carry
    ``view_auroc`` = {``full``, ``zoom``}, the image AUROC of each view's score alone
    (:func:`atac.train.evaluate_run`); the final score is their mean (supplement, Algorithm 2).

    Args:
        records: results records (``metrics.json``); those of ``methods`` without ``view_auroc``
            (made before it was recorded) are counted in ``n_without`` and otherwise left out.
        methods: the recipes to summarise.
    Returns:
        One row per (dataset, category, setting, shots, method, backbone, budget) — runs of other
        backbones or budgets are never pooled, as in the tables — sorted: ``n`` runs, the mean over
        runs of ``full``, ``zoom`` and ``final`` (the record's ``image_auroc``), ``zoom_better``
        (runs where the zoomed view alone beats the full image alone), ``final_better`` (runs
        where the final score beats the full image alone) and ``n_without``.
    Raises:
        ValueError: a ``view_auroc`` lacks ``full`` or ``zoom`` or holds a non-finite value.
    """
    groups: dict[tuple, dict] = {}
    setup = setups(records) if records else []
    for i, r in enumerate(records):
        if r.get("method") not in methods:
            continue
        key = (r.get("dataset"), r.get("category"), r.get("setting"), r.get("shots"), r.get("method"),
               r.get("backbone"), setup[i])
        g = groups.setdefault(key, {"full": [], "zoom": [], "final": [], "n_without": 0})
        v = r.get("view_auroc")
        if v is None:
            g["n_without"] += 1
            continue
        try:
            full, zoom, final = float(v["full"]), float(v["zoom"]), float(r["image_auroc"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"record {i} ({key[4]}/{key[1]}): view_auroc {v!r} or image_auroc "
                             f"unreadable ({exc})") from None
        if not all(math.isfinite(x) for x in (full, zoom, final)):
            raise ValueError(f"record {i} ({key[4]}/{key[1]}): view_auroc {v!r} is not finite")
        g["full"].append(full), g["zoom"].append(zoom), g["final"].append(final)
    rows = []
    for key in sorted(groups, key=str):
        g = groups[key]
        n = len(g["full"])
        rows.append({
            "dataset": key[0], "category": key[1], "setting": key[2], "shots": key[3],
            "method": key[4], "backbone": key[5], "budget": key[6], "n": n, "n_without": g["n_without"],
            "full": statistics.fmean(g["full"]) if n else None,
            "zoom": statistics.fmean(g["zoom"]) if n else None,
            "final": statistics.fmean(g["final"]) if n else None,
            "zoom_better": sum(z > f for z, f in zip(g["zoom"], g["full"])),
            "final_better": sum(a > f for a, f in zip(g["final"], g["full"])),
        })
    return rows


def render_view_summary(rows: list[dict]) -> str:
    """:func:`view_summary` rows as a Markdown table (mean image AUROC of each view over runs)."""
    head = ["dataset", "category", "setting", "M", "method", "backbone", "budget", "runs", "full image", "zoomed view",
            "final (mean of both)", "zoom > full", "final > full"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        n = r["n"]
        lines.append("| " + " | ".join([
            str(r["dataset"]), str(r["category"]), str(r["setting"]), str(r["shots"]), str(r["method"]),
            str(r["backbone"]), str(r["budget"]), str(n) + (f" (+{r['n_without']} without views)" if r["n_without"] else ""),
            _f(r["full"]), _f(r["zoom"]), _f(r["final"]),
            f"{r['zoom_better']} of {n}" if n else "—", f"{r['final_better']} of {n}" if n else "—",
        ]) + " |")
    return "\n".join(lines)


# ============================================================ a paper class beside ours; coverage
def render_class_table2(rows: list[dict], dataset: str = "mvtec_ad", category: str = "metal_nut") -> str:
    """One class of Table 2 in the paper's layout, ours beside the paper's: a line per number of
    known anomalies and known type (the mean over types last), per method two columns, ours and the
    paper's (DevNet = our ``deviation`` recipe, DRA, ATAC-Net).

    Args:
        rows: from :func:`table2_rows` (rows of other classes are ignored; there may be none of this
            class: then the table is the paper's values only, ours "—", and the caption says so).
        dataset, category: the class (the paper's Table 2 classes are ``mvtec_ad`` tile and metal_nut;
            for another class the paper's columns are "—").
    Returns:
        Markdown ending in a newline: a caption naming the class and our setup, then one table per
        setup (backbone and budget) of ours, never pooled; the paper's erratum marked † as in
        :func:`render_table2`. Raises ValueError when neither we nor the paper have the class.
    """
    mine = [r for r in rows if (r["dataset"], r["category"]) == (dataset, category)]
    paper = {k: p for k, p in _paper2_lookup().items() if dataset == "mvtec_ad" and k[0] == category}
    if not mine and not paper:
        raise ValueError(f"no rows of {dataset}/{category} and no Table 2 values of the paper for it")
    name = f"{dataset} / {category}"
    setups = sorted({(r["backbone"], r["budget"]) for r in mine}, key=str) or [None]
    methods = sorted({r["method"] for r in mine} | set(TABLE2_ORDER), key=_method2_key)
    out = []
    for setup in setups:
        here = [r for r in mine if setup is not None and (r["backbone"], r["budget"]) == setup]
        by = {(r["shots"], r["known_type"], r["method"]): r for r in here}
        keys = sorted({(k[2], k[1]) for k in paper} | {(k[0], k[1]) for k in by},
                      key=lambda k: (k[0], _type_key(k[1])))
        if setup is None:
            caption = (f"**{name}**, hard setting: no runs of ours in these results, so only the "
                       f"paper's values are shown (ResNet-50; {CITATION}, Table 2).")
        else:
            caption = (f"**{name}**, hard setting, image AUROC on the unseen types: ours ({setup[0]}, "
                       f"{setup[1]}; mean ± sample std (n seeds)) beside the paper's (ResNet-50; "
                       f"{CITATION}, Table 2).")
        head = ["M", "known type"] + [f"{PAPER_NAMES.get(m, m)} {w}" for m in methods
                                      for w in ("ours", "paper")]
        lines = [caption, "", "| " + " | ".join(head) + " |", "|---:|---|" + "---:|" * (len(head) - 2)]
        for shots, kt in keys:
            cells = [str(shots), f"**{MEAN}**" if kt == MEAN else kt]
            for m in methods:
                r = by.get((shots, kt, m))
                p = paper.get((category, kt, shots, m))
                cells.append(MISSING if r is None else (
                    f"{r['mean']:.3f} (no common seed)" if r["n"] == 0 else _ours(r)))
                cells.append(MISSING if p is None else _paper_cell(p["image_auroc"], p["types_mean"],
                                                                   p["erratum"]))
            lines.append("| " + " | ".join(cells) + " |")
        out.append("\n".join(lines) + "\n")
    errata = sorted({p["erratum"] for p in paper.values() if p["erratum"]})
    return "\n".join(out) + _erratum_note(errata)


def paper_table1_sentence(category: str) -> str | None:
    """The paper's Table 1 row of an MVTec AD class as a sentence ("The paper's Table 1 row for
    metal_nut (ResNet-50, its budget, ten anomalies): I cutmix_bce 0.763, ..."), or None when the
    class has no row there."""
    paper = _paper_lookup()
    vals = [(m, paper[(category, m)]) for m in LADDER if (category, m) in paper]
    if not vals or category == "mean":
        return None
    return (f"The paper's Table 1 row for {category} (ResNet-50, its budget, ten anomalies): "
            + ", ".join(f"{LADDER[m]} {m} {v:.3f}" for m, v in vals) + ".")


def sweep_progress(records: list[dict], configs: list[dict], setting: str | None = None) -> list[dict]:
    """Per class of a sweep: how many of its runs the records hold.

    Args:
        records: results records (``metrics.json`` dicts, each with its ``config``).
        configs: the sweep's run configs (``RunConfig.to_dict()`` of each run of
            ``atac.sweep.load_sweep(FILE).runs``).
        setting: only the sweep's runs of this setting ("general" for Table 1, "hard" for Table 2);
            None: all.
    Returns:
        One dict per (dataset, category) of the sweep's runs, in the sweep's order: ``dataset``,
        ``category``, ``n_runs``, ``n_recorded`` (runs with a record of the same run, i.e. equal
        :func:`atac.config.identity` of the configs, as ``atac sweep --list`` counts them).
    """
    from .config import identity

    have = {_identity_key(identity(r["config"])) for r in records if isinstance(r.get("config"), dict)}
    out: dict[tuple, dict] = {}
    for c in configs:
        if setting is not None and c.get("setting") != setting:
            continue
        key = (c["dataset"], c["category"])
        row = out.setdefault(key, {"dataset": key[0], "category": key[1], "n_runs": 0, "n_recorded": 0})
        row["n_runs"] += 1
        row["n_recorded"] += _identity_key(identity(c)) in have
    return list(out.values())


def _identity_key(d: dict) -> str:
    import json

    return json.dumps(d, sort_keys=True, default=str)


def render_progress(progress: list[dict], which: str, sweep_name: str = "the sweep",
                    present: set[tuple[str, str]] | None = None) -> str:
    """What :func:`sweep_progress` says, as Markdown for under a table: one line per class whose runs
    are not all in the results. A class with none of them recorded says so and shows the paper's
    values for it instead (Table 1: :func:`paper_table1_sentence`; Table 2: the paper-only
    :func:`render_class_table2`), so that a table without them is not read as complete.

    Args:
        progress: from :func:`sweep_progress`.
        which: "table1" or "table2".
        sweep_name: how to name the sweep in the text.
        present: the (dataset, category) classes the table has rows of (None: unknown); a class
            with rows but none of the sweep's runs is said to have rows from other runs.
    Returns:
        The text ("" when every class is complete), ending in a newline when not empty.
    Raises:
        ValueError: ``which`` is neither.
    """
    if which not in ("table1", "table2"):
        raise ValueError(f"which must be table1 or table2, got {which!r}")
    parts = []
    for p in progress:
        name = p["category"] if p["category"] == p["dataset"] else f"{p['dataset']} / {p['category']}"
        if p["n_recorded"] == p["n_runs"]:
            continue
        if p["n_recorded"]:
            parts.append(f"- **{name}**: {p['n_recorded']} of {sweep_name}'s {p['n_runs']} runs are in "
                         "these results; its rows above are over those only.\n")
            continue
        if present is not None and (p["dataset"], p["category"]) in present:
            parts.append(f"- **{name}**: none of {sweep_name}'s {p['n_runs']} runs of it is in these "
                         "results; its rows above come from other runs (other configs).\n")
            continue
        parts.append(f"- **{name}**: none of {sweep_name}'s {p['n_runs']} runs of it is in these "
                     "results yet, so the table has no row of ours for it.")
        if p["dataset"] == "mvtec_ad" and which == "table1":
            sentence = paper_table1_sentence(p["category"])
            parts[-1] += f" {sentence}" if sentence else " The paper's Table 1 has no row for it."
            parts[-1] += "\n"
        elif p["dataset"] == "mvtec_ad" and any(k[0] == p["category"] for k in _paper2_lookup()):
            parts[-1] += " The paper's values for it:\n\n" + render_class_table2(
                [], p["dataset"], p["category"])
        else:
            parts[-1] += f" The paper's {'Table 1' if which == 'table1' else 'Table 2'} has no row for it.\n"
    return "".join(parts)


# What the paper's runs used, per method: the ladder's and DevNet's and ATAC-Net's rows are the
# `paper` preset (ResNet-50, 224 px, 30 epochs x 20 steps x batch 48, CLAHE, the printed constants).
# The supplement does not say how its DRA rows were run, so DRA is set against DRA's own paper,
# the `dra` preset (ResNet-18 at 448 px, two scales, five reference normals, ImageNet constants, no
# CLAHE). Fields: (config key, label, unit).
SETUP_FIELDS = (("backbone", "backbone", ""), ("weights", "weights", ""), ("image_size", "input size", " px"),
                ("epochs", "epochs", ""), ("steps_per_epoch", "steps per epoch", ""),
                ("batch_size", "batch", ""), ("lr", "learning rate", ""),
                ("lr_step", "learning rate / 10 every", " epochs"), ("clahe", "CLAHE", ""),
                ("normalization", "normalisation constants", ""))
DRA_SETUP_FIELDS = (("dra_scales", "pyramid scales", ""), ("dra_ref_size", "reference normals", ""))


NORMALIZATION_NAMES = {"paper": "the supplement's printed ones (CLIP's)", "imagenet": "ImageNet's"}


def _setup_value(key: str, v, unit: str) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if key == "normalization":
        return NORMALIZATION_NAMES.get(v, str(v))
    return f"{v:g}{unit}" if isinstance(v, float) else f"{v}{unit}"


def setup_differences(configs: list[dict]) -> list[str]:
    """What differs from the paper's runs, per method, generated from run configs.

    Args:
        configs: run configs (a record's ``config``, or ``RunConfig.to_dict()``).
    Returns:
        One sentence per group of methods with the same differences, e.g. "DevNet (`deviation`) and
        ATAC-Net (`atac`), against the paper: backbone mobilenet_v2 (the paper: resnet50); epochs 3
        (the paper: 30); ... The same as the paper: input size 224 px, CLAHE on, ...". The reference
        is the paper's setup (the ``paper`` preset) for every method but DRA, which is set against
        DRA's own paper (the ``dra`` preset; the supplement does not say how its DRA rows were run);
        a field with several values across the configs lists them all ("3 or 15"). Empty when
        ``configs`` is empty.
    """
    from .config import preset

    by_method: dict[str, list[dict]] = {}
    for c in configs:
        by_method.setdefault(str(c.get("method")), []).append(c)
    texts: dict[str, list[str]] = {}
    for method in sorted(by_method, key=_method_key):
        cs = by_method[method]
        is_dra = method == "dra"
        ref = preset("dra" if is_dra else "paper").to_dict()
        ref_name = "DRA's paper" if is_dra else "the paper"
        diff, same = [], []
        for key, label, unit in SETUP_FIELDS + (DRA_SETUP_FIELDS if is_dra else ()):
            vals = sorted({c[key] for c in cs if key in c}, key=str)
            if not vals:
                continue
            ours = " or ".join(_setup_value(key, v, unit) for v in vals)
            if vals == [ref[key]]:
                same.append(f"{label} {ours}")
            else:
                diff.append(f"{label} {ours} ({ref_name}: {_setup_value(key, ref[key], unit)})")
        against = ("against DRA's own paper (the `dra` preset; the supplement does not say how its "
                   "DRA rows were run)" if is_dra else "against the paper (the `paper` preset)")
        text = f"{against}: " + ("; ".join(diff) if diff else "nothing differs") + (
            f". The same as {ref_name}: " + ", ".join(same) if same and diff else "") + "."
        texts.setdefault(text, []).append(method)
    out = []
    for text, methods in texts.items():
        names = [f"{PAPER_NAMES[m]} (`{m}`)" if m in PAPER_NAMES else f"`{m}`" for m in methods]
        who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        out.append(f"{who}, {text}")
    return out
