"""What only the book's chapters need: tables of a run's settings and of recorded results.

Everything here returns data (pandas frames, dicts); the chapters display them. Figures are
:mod:`atac.plots`' job.
"""

from __future__ import annotations

import pandas as pd

from .config import READING_FIELDS, READING_HELP, RunConfig


def readings_table(cfg: RunConfig) -> pd.DataFrame:
    """The readings of what the supplement leaves open (:data:`atac.config.READING_FIELDS`): one row
    per field with this run's value, the literal reading and what the field decides."""
    return pd.DataFrame([{"field": name, "this run": getattr(cfg, name), "literal reading": literal,
                          "what it decides": READING_HELP[name]}
                         for name, literal in READING_FIELDS.items()]).set_index("field")
