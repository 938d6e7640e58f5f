"""Results files and sweeps: what each file of ``paper_runs/results/`` is and holds, summarised file
by file, and how much of a sweep the records cover."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .table1 import table1_rows
from .table2 import condense_hard, table2_rows


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
        or the sweep's progress), ``n_records``, ``records`` and ``rows``:
        :func:`atac.reporting.table1.table1_rows` of its general-setting records then
        :func:`atac.reporting.table2.table2_rows` of its hard-setting ones, each row with ``setting``, ``known_type``
        (None in the general setting), ``budget`` and ``file``; ``paper`` is Table 1's value on a
        general row and Table 2's on a hard row (never Table 1's for a hard row).
    Raises:
        ValueError: a file that cannot be read as records, a record lacking a required key, or a
            seed twice in one group (all name the file).
    """
    from ..results import load_records

    folder = Path(results_dir)
    if not folder.is_dir():
        return []
    sweeps = {}
    if sweeps_dir is not None and Path(sweeps_dir).is_dir():
        from .. import sweep as atac_sweep   # torch-heavy; only when asked

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
    from ..config import identity_key

    have = {identity_key(r["config"]) for r in records if isinstance(r.get("config"), dict)}
    out: dict[tuple, dict] = {}
    for c in configs:
        if setting is not None and c.get("setting") != setting:
            continue
        key = (c["dataset"], c["category"])
        row = out.setdefault(key, {"dataset": key[0], "category": key[1], "n_runs": 0, "n_recorded": 0})
        row["n_runs"] += 1
        row["n_recorded"] += identity_key(c) in have
    return list(out.values())


def measured_frame(files: list[dict]) -> pd.DataFrame:
    """What :func:`recorded_results` found, one row per group of runs (a hard-setting class by its mean
    over the known types, :func:`atac.reporting.table2.condense_hard`), as a DataFrame for the book in
    short columns: ``file`` (its name without ``.jsonl``), ``data`` (the class, with the setting and
    known type in the hard setting: ``"grid, hard: mean over 5 known types"``), the budget cut into
    columns (:func:`atac.reporting.render.budget_columns`), ``M``, ``method``, ``backbone``,
    ``seeds``, ``AUROC`` (``"0.979 ± 0.004"``; the mean alone for one seed) and ``paper`` (``"—"``
    where the paper has no value). Columns constant over the rows are said in
    ``attrs["constant"]`` instead (:func:`atac.reporting.render.drop_constant`); render with
    :func:`atac.reporting.render.frame_markdown` and :data:`MEASURED_RIGHT` right-aligned. No rows:
    an empty frame."""
    from .render import MISSING, budget_columns, drop_constant

    out = []
    for f in files:
        for r in condense_hard(f["rows"]):
            data = str(r["category"]) + ("" if r["setting"] == "general" else f", {r['setting']}") + \
                ("" if r["known_type"] is None else f": {r['known_type']}")
            sd = "" if r["std"] is None else f" ± {r['std']:.3f}"
            budget = budget_columns(str(r["budget"]))
            if budget["variant"]:           # a variant's fields beside its budget: one column less
                budget["budget"] += f"; {budget['variant']}"
            budget["variant"] = ""
            out.append({"file": Path(f["file"]).stem, "data": data, **budget,
                        "M": str(r["shots"]), "method": str(r["method"]), "backbone": str(r["backbone"]),
                        "seeds": ", ".join(map(str, r["seeds"])) or "none in common",
                        "AUROC": f"{r['mean']:.3f}{sd}",
                        "paper": MISSING if r["paper"] is None else format(r["paper"], ".3f")})
    columns = ["file", "data", "budget", "steps", "batch", "px", "variant", "M", "method", "backbone", "seeds",
               "AUROC", "paper"]
    return drop_constant(pd.DataFrame(out, columns=columns), keep=("file", "data", "AUROC", "paper"))


#: the columns of :func:`measured_frame` that hold numbers (right-aligned, never wrapped)
MEASURED_RIGHT = ("M", "AUROC", "paper")


def crop_threshold_frame(records: list[dict], files: list[str] | None = None) -> pd.DataFrame:
    """ATAC-Net's recorded runs by crop threshold w: one row per results file, class, setting (and
    known type), backbone, setup (:func:`atac.reporting.summary.setups`: the budget and any other
    config field in which the runs differ, e.g. a zoom-study reading), M and w — runs that differ in
    any of these are never averaged — with ``seeds`` and ``AUROC`` (the mean image AUROC over them),
    in short columns (``file`` without ``.jsonl``, ``data`` the class with the setting, the budget
    cut by :func:`atac.reporting.render.budget_columns`); columns constant over the rows are said in
    ``attrs["constant"]`` (:func:`atac.reporting.render.drop_constant`).

    Args:
        records: results records, each of method ``atac`` with ``config.crop_threshold``.
        files: each record's file name (None: column ``file`` is left out).
    """
    from .render import budget_columns, drop_constant
    from .summary import setups

    out = []
    labels = setups(records, shown=("crop_threshold",))
    for i, r in enumerate(records):
        kt = r.get("known_type") or ""
        out.append({"file": "" if files is None else Path(files[i]).stem,
                    "data": str(r["category"]) + ("" if r["setting"] == "general" else f", {r['setting']}")
                    + (f" ({kt})" if kt else ""), "backbone": str(r["backbone"]),
                    **budget_columns(labels[i]), "M": str(r["shots"]), "w": f"{r['config']['crop_threshold']:g}",
                    "seed": r["seed"], "auroc": float(r["image_auroc"])})
    columns = ["file", "data", "backbone", "budget", "steps", "batch", "px", "variant", "M", "w"]
    if not out:
        return pd.DataFrame(columns=[*columns, "seeds", "AUROC"])
    frame = pd.DataFrame(out)
    groups = frame.groupby(columns, sort=True).agg(seeds=("seed", lambda s: ", ".join(map(str, s))),
                                                  AUROC=("auroc", "mean")).reset_index()
    groups["AUROC"] = groups["AUROC"].map(lambda v: f"{v:.3f}")
    if files is None:
        groups = groups.drop(columns="file")
    return drop_constant(groups, keep=("data", "w", "AUROC"))
