"""Our results next to the paper's: Table 1 (the ablation ladder) as rows, Markdown/CSV and a figure.

The paper's numbers are the project's own copy of the supplement's tables, shipped as package data
(``atac/published/table1.csv``, ``table2.csv``; see ``atac/published/README.md``). Ours come from
results records (the ``metrics.json`` dicts ``atac train`` writes; a sweep file is JSONL of them,
read with :func:`atac.results.load_records`).

Rows are built in two steps that a Table 2 can reuse: :func:`_group` collects records into groups
keyed by what must not be averaged together (dataset, category, backbone, budget, shots, method, and
for Table 2 the known anomaly type), and :func:`_stats` turns a group into mean ± sample std.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from importlib import resources

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


def _group(records: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    """Records grouped by ``keys`` (``budget`` is derived from the config); a seed that appears twice
    in one group is an error (a rerun appended to a sweep file would otherwise count twice)."""
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        key = tuple(budget(r) if k == "budget" else r.get(k) for k in keys)
        groups.setdefault(key, []).append(r)
    for key, recs in groups.items():
        seeds = [r["seed"] for r in recs]
        dup = sorted({s for s in seeds if seeds.count(s) > 1}, key=str)
        if dup:
            raise ValueError(f"seed(s) {dup} appear more than once in group "
                             f"{dict(zip(keys, key))}; remove the duplicate records")
    return groups


def _stats(recs: list[dict], metric: str) -> dict:
    vals = [float(r[metric]) for r in sorted(recs, key=lambda r: str(r["seed"]))]
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
        ``budget`` (str), ``shots``, ``method``, ``step`` ("I".."V" or None), ``metric``, ``n``
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
        row = {**dict(zip(TABLE1_KEYS, key)), "step": LADDER.get(key[-1]), "metric": metric,
               **_stats(recs, metric)}
        p = None
        if row["dataset"] == "mvtec_ad" and row["shots"] == 10 and row["category"] != "mean":
            p = paper.get((row["category"], row["method"]))
        row["paper"] = p
        row["diff"] = row["mean"] - p if p is not None else None
        rows.append(row)
    rows.sort(key=lambda r: (str(r["dataset"]), str(r["category"]), str(r["backbone"]),
                             r["budget"], r["shots"], _method_key(r["method"])))
    return rows


def _f(x: float | None, spec: str = ".3f") -> str:
    return MISSING if x is None else format(x, spec)


def _caption(rows: list[dict]) -> str:
    ours = sorted({f"{r['backbone']} ({r['budget']})" for r in rows})
    return (f"Image AUROC, general setting, ours as mean ± sample std (n seeds). Paper: {CITATION}, "
            f"Table 1 — the paper's own numbers (ResNet-50, paper budget, ten anomalies). "
            f"Ours: {'; '.join(ours)}.")


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
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for r in rows:
            w.writerow(["" if r[c] is None else (";".join(map(str, r[c])) if c == "seeds" else r[c])
                        for c in cols])
        return buf.getvalue()
    if fmt != "markdown":
        raise ValueError(f"unknown format '{fmt}'; choose markdown or csv")
    # backbone and budget get a column only when they vary; the caption names them either way
    keys = ["dataset", "category"] + [k for k in ("backbone", "budget")
                                      if len({r[k] for r in rows}) > 1] + ["shots", "step", "method"]
    head = keys + ["ours", "paper", "Δ"]
    lines = [_caption(rows), "", "| " + " | ".join(head) + " |",
             "|" + "|".join("---:" if h in ("shots", "ours", "paper", "Δ") else "---" for h in head) + "|"]
    for r in rows:
        ours = f"{r['mean']:.3f}" + (f" ± {r['std']:.3f}" if r["std"] is not None else "") + f" ({r['n']})"
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
        ax.set_ylabel(prs[0]["metric"].replace("_", " "))
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
