"""Our results next to the paper's: Table 1 (the ablation ladder) and Table 2 (the hard setting), in
the long form (one row per group of runs, CSV) and in the paper's layout (a DataFrame, Markdown or
HTML), and the paper's claims judged on them.

Ours come from results records (the ``metrics.json`` dicts ``atac train`` writes; a sweep file is
JSONL of them, read with :func:`atac.results.load_records`); the paper's are the package's copy of
the supplement's tables. The modules, by what they do:

- :mod:`~atac.reporting.published`: the paper's tables, its erratum, its method names;
- :mod:`~atac.reporting.summary`: records summarised per run identity minus the seed (a pandas
  groupby over :func:`atac.frame.records_frame`), setup labels, defect types, the two views;
- :mod:`~atac.reporting.table1`, :mod:`~atac.reporting.table2`: the rows of each table, beside the
  paper's values, and each table in the paper's layout (``table1_wide``, ``table2_wide``);
- :mod:`~atac.reporting.claims`: the paper's claims judged in words;
- :mod:`~atac.reporting.render`: CSV, Markdown and HTML;
- :mod:`~atac.reporting.records`: results files summarised file by file, a sweep's progress.

Figures of the tables are :mod:`atac.charts`'.

Example:
    >>> from atac import reporting                                        # doctest: +SKIP
    >>> rows = reporting.table1_rows(load_records("paper_runs/results/table1-cpu.jsonl"))  # doctest: +SKIP
    >>> reporting.table1_wide(rows)                                       # doctest: +SKIP
"""

from .claims import (LADDER_CLAIMS, describe_setups, ladder_order, ladder_pairs, setup_differences,
                     table2_claims)
from .published import (CITATION, ERRATUM_MARK, LADDER, MEAN, PAPER_NAMES, PAPER_ORDER, RIVALS,
                        TABLE1_METHODS, TABLE2_ORDER, paper_table1, paper_table2, published_table1,
                        published_table2)
from .records import (MEASURED_RIGHT, crop_threshold_frame, measured_frame, recorded_results, results_file_note,
                      sweep_progress)
from .render import (VIEW_RIGHT, budget_columns, drop_constant, frame_markdown, paper_table1_sentence, render_class_table2, render_progress, render_published_table2,
                     render_table1, render_table2, render_view_summary, to_csv, to_html, to_markdown,
                     view_frame)
from .summary import budget, defect_types, setups, view_summary
from .table1 import table1_rows, table1_wide
from .table2 import condense_hard, table2_rows, table2_wide

__all__ = [
    "CITATION", "ERRATUM_MARK", "MEASURED_RIGHT", "VIEW_RIGHT", "budget_columns", "crop_threshold_frame",
    "drop_constant",    "frame_markdown", "measured_frame", "LADDER", "LADDER_CLAIMS", "MEAN", "PAPER_NAMES", "PAPER_ORDER", "RIVALS",
    "TABLE1_METHODS", "TABLE2_ORDER", "budget", "condense_hard", "defect_types", "describe_setups",
    "ladder_order", "ladder_pairs", "paper_table1", "paper_table1_sentence", "paper_table2",
    "published_table1", "published_table2", "recorded_results", "render_class_table2", "render_progress",
    "render_published_table2", "render_table1", "render_table2", "render_view_summary", "results_file_note",
    "setup_differences", "setups", "sweep_progress", "table1_rows", "table1_wide", "table2_claims",
    "table2_rows", "table2_wide", "to_csv", "to_html", "to_markdown", "view_frame", "view_summary",
]
