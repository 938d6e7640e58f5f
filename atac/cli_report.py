"""The commands of ``atac`` that read results files: summary, table and compare (the parser is
:mod:`atac.cli`). Each ``cmd_*`` takes the parsed arguments and returns the exit status; errors are
raised (``ValueError``) for :func:`atac.cli.main` to report.
"""

from __future__ import annotations

import sys
from pathlib import Path


def cmd_summary(args) -> int:
    from .results import load_records, summarize

    for metric in args.metrics:
        print(f"| dataset | category | method | backbone | shots | seeds | {metric} (mean ± std) | per seed |")
        print("|---|---|---|---|---|---|---|---|")
        for row in summarize(load_records(args.results), metric):
            std = "" if row["std"] is None else f" ± {row['std']:.3f}"
            mean = "n/a" if row["mean"] is None else f"{row['mean']:.3f}{std}"
            per = ", ".join(f"{s}: {v:.3f}" for s, v in zip(row["seeds"], row["values"]))
            print(f"| {row['dataset']} | {row['category']} | {row['method']} | {row['backbone']} | "
                  f"{row['shots']} | {row['n']} | {mean} | {per} |")
        print()
    return 0


def cmd_table(args) -> int:
    from .results import load_records

    records = []
    for name in args.results:  # several files: e.g. the ladder and DRA's general-setting runs
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"--results {path}: no such file (a .jsonl written by atac sweep)")
        records += load_records(path)
    try:
        return _render_table(args, records)
    except ValueError as exc:
        if len(args.results) > 1:  # e.g. one run in two files: say which files were read together
            raise ValueError(f"{exc} (files read together: {', '.join(args.results)})") from exc
        raise


def _render_table(args, records: list[dict]) -> int:
    from .results import atomic_write_text
    from . import charts, reporting

    if args.which == "table2":
        rows = reporting.table2_rows(records, metric=args.metric)
        text = reporting.render_table2(rows, fmt=args.format)
        figure = charts.table2_figure
        if args.format == "markdown":
            text += ("\nDoes ATAC-Net beat DevNet and DRA on unseen defect types (the paper's Table 2 "
                     "claim)?\n" + "".join(f"- {c['sentence']}\n" for c in reporting.table2_claims(rows)))
            views = [v for v in reporting.view_summary(records) if v["setting"] == "hard" and v["n"]]
            if views:
                text += ("\nATAC-Net's two views on their own (view_auroc, mean image AUROC over the "
                         "runs):\n\n" + reporting.render_view_summary(views) + "\n")
    else:
        rows = reporting.table1_rows(records, metric=args.metric)
        text = reporting.render_table1(rows, fmt=args.format)
        figure = charts.table1_figure
        if args.format == "markdown":
            try:
                verdicts = reporting.ladder_order(rows)
            except ValueError:  # no ten-anomaly runs in the file: no ladder to check
                verdicts = []
            if verdicts:
                text += "\nLadder order (the paper: atac > deviation > weighted_ce > cutmix_bce), ten anomalies:\n"
                text += "".join(f"- {v['dataset']} / {v['category']} ({v['backbone']}): {v['verdict']}\n"
                                for v in verdicts)
    if args.format == "markdown":
        setting = "hard" if args.which == "table2" else "general"
        text += _sweep_notes(args.sweep, records, args.which, setting,
                             {(r["dataset"], r["category"]) for r in rows})
        notes = reporting.setup_differences([r["config"] for r in records if r.get("setting") == setting
                                             and isinstance(r.get("config"), dict)])
        if notes:
            text += ("\nWhat differs from the paper's runs (from the records' configs):\n"
                     + "".join(f"- {n}\n" for n in notes))
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    if args.figure:
        fig_path = Path(args.figure)
        if not fig_path.suffix:
            fig_path = fig_path.with_suffix(".png")
        fig_path.parent.mkdir(parents=True, exist_ok=True)
        args.figure = str(fig_path)
        import matplotlib
        matplotlib.use("Agg")
        figure(rows, args.figure)
        print(f"wrote {args.figure}", file=sys.stderr)
    return 0


def _sweep_notes(sweep_files: list[str], records: list[dict], which: str, setting: str,
                 present: set[tuple[str, str]]) -> str:
    """For ``atac table --sweep FILE``: how many of each class's runs of the sweep the records hold,
    and, for a class with none yet, the paper's values for it (atac.reporting.render_progress)."""
    from . import reporting

    text = ""
    for f in sweep_files or []:
        sw, progress, n_runs, n_rec = _sweep_counts(f, records, setting)
        text += (f"\nSweep {sw.name} ({f}): {n_rec} of its {n_runs} {setting}-setting runs are in these "
                 "results" + (", all of them.\n" if n_rec == n_runs else ":\n"))
        text += reporting.render_progress(progress, which, sweep_name=f"sweep {sw.name}", present=present)
    return text


def _sweep_counts(sweep_file: str, records: list[dict], setting: str | None = None):
    """The sweep of ``sweep_file``, its per-class progress over ``records``
    (atac.reporting.sweep_progress) and the totals: (sweep, progress, runs, recorded)."""
    from . import reporting
    from .sweep import load_sweep

    sw = load_sweep(sweep_file)
    progress = reporting.sweep_progress(records, [r.config.to_dict() for r in sw.runs], setting)
    return sw, progress, sum(p["n_runs"] for p in progress), sum(p["n_recorded"] for p in progress)


def _compare_sweep_notes(sweep_files: list[str], results: list[str]) -> str:
    """For ``atac compare --sweep FILE``: how many of the sweep's runs the results hold, per class
    (atac.reporting.sweep_progress, every setting); while some are missing, the comparison is
    called interim (its n counts the pairs recorded so far)."""
    from .results import load_records

    records = [r for name in results for r in load_records(name)]
    text = ""
    for f in sweep_files:
        sw, progress, n_runs, n_rec = _sweep_counts(f, records)
        if n_rec == n_runs:
            text += f"\nSweep {sw.name} ({f}): all {n_runs} of its runs are in these results.\n"
            continue
        text += (f"\nSweep {sw.name} ({f}): {n_rec} of its {n_runs} runs are in these results, so this "
                 "comparison is interim (n is the number of pairs recorded so far):\n")
        for p in progress:
            name = p["category"] if p["category"] == p["dataset"] else f"{p['dataset']} / {p['category']}"
            text += f"- {name}: {p['n_recorded']} of {p['n_runs']} runs\n"
    return text


def cmd_compare(args) -> int:
    if not args.list_arms and not args.baseline:
        raise ValueError("--baseline ARM is required (see --list-arms for the arms)")
    from .frame import load_frame
    from .stats import format_comparison, paired_comparison

    for name in args.results:
        if not Path(name).is_file():
            raise ValueError(f"--results {name}: no such file (a .jsonl written by atac sweep)")
    frame = load_frame(args.results)
    if args.list_arms:
        counts = frame.groupby("arm").size()
        print("\n".join(f"{n:4d} runs  {arm}" for arm, n in counts.items()) + "\n", end="")
        return 0
    tables = [paired_comparison(frame, b, arms=args.arm or None, metric=args.metric,
                                n_resamples=args.resamples) for b in args.baseline]
    import pandas as pd

    table = pd.concat(tables, ignore_index=True)
    if table.empty:
        raise ValueError("no arm shares a class and seed with the baseline")
    if args.format == "csv":
        text = table.to_csv(index=False, float_format="%.6g")
    else:
        text = (f"Paired {args.metric} differences (arm − baseline; same class and seed = same split), "
                f"mean [95% bootstrap interval], pairs with arm > baseline, verdict from the interval"
                + (" (t check: a t interval of the same mean and its verdict, not the decision rule)"
                   if args.t_check else "") + ":\n\n"
                + format_comparison(table, check=args.t_check).to_markdown(index=False) + "\n")
        text += _compare_sweep_notes(args.sweep, args.results)
    if args.out:
        from .results import atomic_write_text
        atomic_write_text(args.out, text)
    else:
        print(text, end="")
    return 0
