"""The book: table of contents, parameter profiles, the figures it uses, and one chapter executed.

The slow test executes ``book/step_by_step.md`` with papermill and the ``ci`` profile's tiny
parameters (synthetic data, smoke budget, random weights) into a temporary folder, exactly as
``book/build.py`` does, and checks that the values the text glues exist.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
GLUED = ("image_auroc", "image_auprc", "pixel_auroc", "train_seconds", "dataset", "category",
         "profile", "shots", "seed", "weights_source")


def _build_module():
    spec = importlib.util.spec_from_file_location("atac_book_build", BOOK / "build.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))
            for part in e.get("parts", []) or []:
                walk(part.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []) or []:
        walk(part.get("chapters"))
    return files


def _parameters_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]


def _parameter_names(source: str) -> set[str]:
    return {t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)}


# ----------------------------------------------------------------------------------------------
# structure (fast)


def test_toc_lists_only_existing_sources():
    build = _build_module()
    executed = []
    for f in _toc_files():
        if f.startswith("book/executed/"):
            name = f.removeprefix("book/executed/")
            executed.append(name)
            assert (BOOK / f"{name}.md").is_file(), f"toc entry {f}: book/{name}.md does not exist"
        else:
            assert (ROOT / f"{f}.md").is_file() or (ROOT / f"{f}.ipynb").is_file(), \
                f"toc entry {f} does not exist"
    assert "book/intro" == _toc_files()[0]
    assert executed == build.CHAPTERS, "the toc's notebook chapters and build.CHAPTERS differ"


def test_config_builds_without_executing():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["only_build_toc_files"] is True
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert cfg["repository"]["url"].startswith("https://github.com/")


def test_every_chapter_has_exactly_one_parameters_cell():
    jupytext = pytest.importorskip("jupytext")
    build = _build_module()
    for name in build.CHAPTERS:
        nb = jupytext.read(BOOK / f"{name}.md")
        cells = _parameters_cells(nb)
        assert len(cells) == 1, f"book/{name}.md has {len(cells)} cells tagged 'parameters'"
        assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("profile", ["ci", "default"])
def test_profiles_set_only_known_parameters(profile):
    jupytext = pytest.importorskip("jupytext")
    build = _build_module()
    params = build.load_params(profile)
    assert set(params) <= set(build.CHAPTERS)
    for name, values in params.items():
        known = _parameter_names(_parameters_cells(jupytext.read(BOOK / f"{name}.md"))[0].source)
        unknown = set(values) - known
        assert not unknown, f"book/params/{profile}.yaml sets {unknown} unknown to chapter {name}"
        assert "profile" in known and "out_dir" in known


def test_unknown_profile_is_a_clear_error():
    build = _build_module()
    with pytest.raises(build.BuildError, match="no parameter file.*profiles: "):
        build.load_params("no-such-profile")


# ----------------------------------------------------------------------------------------------
# the figures the book uses (fast)


def test_plots_return_figures():
    from matplotlib.figure import Figure

    from atac import plots

    n, s = 4, 48
    imgs = (torch.rand(n, 3, s, s) * 255).to(torch.uint8)
    attn = torch.rand(n, 3, 3)
    boxes = torch.tensor([[4, 4, 30, 30], [0, 0, s, s], [10, 0, 48, 20], [0, 0, s, s]]).float()
    zoom = torch.tensor([True, False, True, False])
    masks = torch.zeros(n, 1, s, s, dtype=torch.bool)
    masks[2, :, 5:15, 5:15] = True
    labels = np.array([0, 0, 1, 1])
    fig = plots.attention_grid(imgs, attn, boxes, labels, titles=list("abcd"), masks=masks, zoom=zoom)
    assert isinstance(fig, Figure) and len(fig.axes) >= 3 * n
    assert isinstance(plots.attention_grid(imgs, attn, None, None), Figure)
    assert isinstance(plots.image_grid(imgs[:3].float() / 255, titles=["x"] * 3, labels=[0, 1, 1]), Figure)
    scores = np.array([0.1, 0.2, 0.8, 0.3])
    assert isinstance(plots.roc_curve_figure(labels, scores), Figure)
    assert isinstance(plots.roc_curve_figure(labels, {"a": scores, "b": -scores}), Figure)
    assert isinstance(plots.score_histogram(labels, scores), Figure)
    assert isinstance(plots.loss_curve([2.0, 1.5, 1.0]), Figure)
    with pytest.raises(ValueError, match="one class"):
        plots.roc_curve_figure([0, 0, 0, 0], scores)
    with pytest.raises(ValueError, match="attention"):
        plots.attention_grid(imgs, attn[:2], boxes, labels)
    with pytest.raises(ValueError):
        plots.loss_curve([])


# ----------------------------------------------------------------------------------------------
# one chapter, executed (slow)


@pytest.mark.slow
def test_step_by_step_executes_with_ci_parameters(tmp_path, synth_root):
    pm = pytest.importorskip("papermill")
    jupytext = pytest.importorskip("jupytext")
    nbformat = pytest.importorskip("nbformat")
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.skip(f"no 'python3' kernel: {sys.executable} -m ipykernel install --sys-prefix --name python3")
    build = _build_module()
    params = dict(build.load_params("ci")["step_by_step"])
    params.update(data_root=str(synth_root), out_dir=str(tmp_path / "run"), profile="test")
    src = tmp_path / "step_by_step.ipynb"
    out = tmp_path / "step_by_step.executed.ipynb"
    jupytext.write(jupytext.read(BOOK / "step_by_step.md"), src, fmt="ipynb")
    pm.execute_notebook(str(src), str(out), parameters=params, kernel_name="python3", cwd=str(BOOK),
                        progress_bar=False)  # raises PapermillExecutionError on any cell error

    nb = nbformat.read(out, as_version=4)
    assert len(_parameters_cells(nb)) == 1
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "profile = \"test\"" in injected[0].source
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    glued = {}
    for c in nb.cells:
        for o in c.get("outputs", []):
            meta = o.get("metadata", {}).get("scrapbook")
            if meta:
                glued[meta["name"]] = o["data"][meta.get("mime_prefix", "") + "text/plain"]
    missing = [k for k in GLUED if k not in glued]
    assert not missing, f"glued values missing: {missing}"
    auroc = float(glued["image_auroc"])
    assert 0.0 <= auroc <= 1.0
    assert glued["profile"] == "'test'"
    pngs = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
    assert pngs >= 6, f"expected the chapter's figures as PNG outputs, found {pngs}"
    assert (tmp_path / "run" / "metrics.json").is_file()
