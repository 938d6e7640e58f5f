"""What only the book's chapters need: tables of a run's settings, the facts of a run, a source
listing, and which test images a page shows.

Everything here returns data (pandas frames, dicts, Markdown text); the chapters display them.
Figures are :mod:`atac.plots`' and :mod:`atac.charts`' job.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from .config import READING_FIELDS, READING_HELP, RunConfig


def readings_table(cfg: RunConfig) -> pd.DataFrame:
    """The readings of what the supplement leaves open (:data:`atac.config.READING_FIELDS`): one row
    per field with this run's value, the literal reading and what the field decides."""
    return pd.DataFrame([{"field": name, "this run": getattr(cfg, name), "literal reading": literal,
                          "what it decides": READING_HELP[name]}
                         for name, literal in READING_FIELDS.items()]).set_index("field")


def example_indices(samples: Sequence, n_normal: int = 3) -> list[int]:
    """Which test images a chapter shows: the first ``n_normal`` normal ones, then the first
    anomalous one of each defect type (in test-set order), so every page shows the same images.

    Args:
        samples: the test set's :class:`atac.data.Sample` list (``RunData.split.test``); each has
            ``label`` (0/1) and ``defect_type``.
        n_normal: how many normal images.
    Returns:
        Indices into ``samples``: normals first, then one per defect type.
    """
    normal = [i for i, s in enumerate(samples) if s.label == 0][:n_normal]
    first: dict[str, int] = {}
    for i, s in enumerate(samples):
        if s.label == 1:
            first.setdefault(s.defect_type, i)
    return normal + list(first.values())


def source_block(obj) -> str:
    """The library's source of ``obj`` as a Markdown code block headed by its file, for a page to
    display (``IPython.display.Markdown(source_block(f))``): the book shows the code that ran,
    never a copy of it.

    Args:
        obj: a function, method, class or module of the library (decorators such as
            ``@torch.no_grad()`` are looked through).
    Returns:
        Markdown text: "From `atac/<file>`:" and a fenced ``python`` block.
    Raises:
        TypeError, OSError: ``inspect`` cannot find the source (a built-in, or an object made at
            run time).
    """
    import inspect
    import textwrap
    from pathlib import Path

    obj = inspect.unwrap(obj)
    src = textwrap.dedent(inspect.getsource(obj))
    path = Path(inspect.getsourcefile(obj)).resolve()
    root = Path(__file__).resolve().parent.parent
    where = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
    return f"From `{where}`:\n\n````python\n{src.rstrip()}\n````"


def run_facts(record: dict, profile: str | None = None) -> dict[str, object]:
    """The facts a page states about one run, from its results record (``RunResult.metrics``),
    ready to ``myst_nb.glue`` one by one, so no number on a page is typed by hand.

    Args:
        record: a results record (``metrics.json`` dict: metrics, ``config``, counts, timings).
        profile: the book build profile that executed the page, or None.
    Returns:
        ``image_auroc``, ``image_auprc`` (floats), ``pixel_auroc`` (text: "n/a" when the run has
        none), ``train_seconds`` (float), ``method``, ``dataset``, ``category``, ``backbone``,
        ``weights_source``, ``budget`` (text, :func:`atac.reporting.budget`), ``n_test`` ("21 normal
        and 47 anomalous"), ``shots``, ``seed`` (ints), and ``profile`` when given.
    Raises:
        KeyError: the record lacks one of these fields (it is not an ``atac`` results record).
    """
    from .reporting import budget

    pix = record["pixel_auroc"]
    facts: dict[str, object] = {
        "image_auroc": float(record["image_auroc"]), "image_auprc": float(record["image_auprc"]),
        "pixel_auroc": "n/a" if pix is None else f"{pix:.3f}",
        "train_seconds": float(record["train_seconds"]),
        "method": record["method"], "dataset": record["dataset"], "category": record["category"],
        "backbone": record["backbone"], "weights_source": record["weights_source"],
        "budget": budget(record),
        "n_test": f"{record['n_test_normal']} normal and {record['n_test_anomalous']} anomalous",
        "shots": int(record["shots"]), "seed": int(record["seed"]),
    }
    if profile is not None:
        facts["profile"] = profile
    return facts

def config_table(cls=None, names: Sequence[str] | None = None) -> str:
    """The fields of :class:`atac.config.RunConfig` as a Markdown table, generated from the source:
    field, default, and the comment written beside it in ``atac/config.py`` (with the group heading
    the field sits under). A page shows this instead of a typed list, so it cannot go stale.

    Args:
        cls: the dataclass (default :class:`atac.config.RunConfig`).
        names: only these fields, in this order (default: every field but ``extra``).
    Returns:
        Markdown text: a table ``| group | field | default | note |`` (the group named on its first
        row only).
    Raises:
        KeyError: a name is not a field of ``cls``.
    """
    import dataclasses
    import inspect
    import io
    import tokenize

    if cls is None:
        from .config import RunConfig as cls  # noqa: N813
    defaults = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                for f in dataclasses.fields(cls)}
    notes: dict[str, str] = {}
    groups: dict[str, str] = {}
    group, last_field = "", None
    src = inspect.getsource(cls)
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.NAME and tok.start[1] == 4 and tok.string in defaults \
                and tok.line.strip().startswith(tok.string + ":"):
            last_field = tok.string
            groups[last_field] = group
        elif tok.type == tokenize.COMMENT:
            text = tok.string.lstrip("#").strip()
            if tok.line.strip().startswith("#"):
                if text.startswith("---"):
                    group = text.strip("- ").strip()
                last_field = None
            elif last_field is not None and tok.start[0] == tok.end[0]:
                notes[last_field] = text
        elif tok.type == tokenize.NEWLINE:
            last_field = None
    order = list(names) if names is not None else [n for n in defaults if n != "extra"]
    lines = ["| group | field | default | note (from `atac/config.py`) |", "|---|---|---|---|"]
    shown_group = None
    for name in order:
        d = defaults[name]
        shown = "null" if d is None else (str(d).lower() if isinstance(d, bool) else
                                          ", ".join(f"{v:g}" for v in d) if isinstance(d, tuple) else f"{d}")
        note = notes.get(name, "").replace("|", "\\|")
        g = groups.get(name, "")
        lines.append(f"| {g if g != shown_group else ''} | `{name}` | `{shown}` | {note} |")
        shown_group = g
    return "\n".join(lines)


def test_time_table(measured: dict[str, list[dict]], trained: dict[str, float]) -> pd.DataFrame:
    """The crop-threshold chapter's measurements of one network per data set scored at several
    test-time values of w, one row per (data set, w), in short columns: ``data``, ``w`` (marked
    "(trained)" at the value it was trained with), ``AUROC`` (the final score's image AUROC),
    ``zoom AUROC`` (the zoomed view alone), ``zoomed normal`` and ``zoomed anomalous`` (the share
    of test images zoomed), ``box area`` (the mean area of a zoomed image's box) and ``defect in
    box`` (the mean share of defect pixels inside the box). Numbers as text, "—" where not measured.

    Args:
        measured: per data set name, rows with ``w``, ``auroc``, ``auroc_zoom``, ``zoom_normal``,
            ``zoom_anomalous``, ``box_area`` and ``coverage`` (None where not measured).
        trained: per data set name, the w its network was trained with.
    """
    def f(v, spec=".3f"):
        return "—" if v is None else format(v, spec)

    return pd.DataFrame([{"data": name, "w": f"{r['w']:g}" + (" (trained)" if r["w"] == trained[name] else ""),
                          "AUROC": f(r["auroc"]), "zoom AUROC": f(r["auroc_zoom"]),
                          "zoomed normal": f(r["zoom_normal"], ".0%"),
                          "zoomed anomalous": f(r["zoom_anomalous"], ".0%"),
                          "box area": f(r["box_area"], ".0%"), "defect in box": f(r["coverage"], ".0%")}
                         for name, rows in measured.items() for r in rows])


def recipe_table(recipe) -> pd.DataFrame:
    """A method's recipe (:class:`atac.methods.Recipe`) as a table: one row per field with its value
    (``repr``, as in the source)."""
    return pd.DataFrame([{"Recipe field": k, "value": repr(v)} for k, v in vars(recipe).items()]).set_index(
        "Recipe field")


def normalization_table(digits: int = 4) -> pd.DataFrame:
    """The normalisation constants :data:`atac.config.NORMALIZATIONS` as a table: one row per set
    (``normalization``: its name in a config) with the mean and std of the R, G and B channels,
    each to ``digits`` significant digits (the values as text, so that none is rounded further)."""
    from .config import NORMALIZATIONS

    def f(values):
        return ", ".join(f"{v:.{digits}g}" for v in values)

    return pd.DataFrame([{"normalization": name, "mean (R, G, B)": f(mean), "std (R, G, B)": f(std)}
                         for name, (mean, std) in NORMALIZATIONS.items()]).set_index("normalization")
