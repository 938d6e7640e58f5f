"""The commands of ``atac`` that train, evaluate and fetch: train, evaluate, reproduce, sweep,
methods, data and weights (the parser is :mod:`atac.cli`). Each ``cmd_*`` takes the parsed
arguments and returns the exit status; errors are raised (``ValueError`` and the like) for
:func:`atac.cli.main` to report.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

from .config import RunConfig


CPU_COMPILE_NOTE = ("atac: compile is on and the device is the CPU: torch.compile takes minutes before "
                    "training starts and gains little on CPU (it is meant for the GPU path)")


def _compiles_on_cpu(cfg: RunConfig) -> bool:
    from .train import resolve_device

    return cfg.compile and resolve_device(cfg.device).type == "cpu"


def cmd_train(args) -> int:
    from .cli import config_from_args
    from .run import completed_record, run, same_config

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


def _trained_counts(record: dict, state: dict) -> None:
    """A record of ``atac evaluate`` on another split: ``n_train_normal`` / ``n_train_anomalous``
    count the model's own training files, as its ``model.pt`` records its split; left out of the
    record when the model.pt (written by an earlier atac) does not record them."""
    split = state.get("split") if isinstance(state.get("split"), dict) else {}
    for k in ("train_normal", "train_anomalous"):
        if isinstance(split.get(k), list):
            record[f"n_{k}"] = len(split[k])
        else:
            record.pop(f"n_{k}", None)


def cmd_evaluate(args) -> int:
    import torch

    from .data.datasets import some
    from .data.splits import SplitError, same_files
    from .methods import get_method
    from .models import build_model
    from .results import git_commit, write_json
    from .run import evaluate_run, load_run_data, run_record, write_scores
    from .train import resolve_device

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
    record = run_record(cfg, data, m, device, state.get("weights_source"), git_commit(), checkpoint=where)
    if changed:   # the split's training part is not what the model was trained on
        _trained_counts(record, state)
    write_scores(out / "scores.csv", data.split.test, preds)
    write_json(out / "metrics.json", record)
    px = "n/a" if m["pixel_auroc"] is None else f"{m['pixel_auroc']:.4f}"
    print(f"test set: {test_set}")
    print(f"image AUROC {m['image_auroc']:.4f}, AUPRC {m['image_auprc']:.4f}, pixel AUROC {px}; "
          f"wrote {out}/metrics.json, {out}/scores.csv")
    return 0


def cmd_reproduce(args) -> int:
    from .results import same_machine_type
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
    same = same_machine_type(old.get("machine"), new.get("machine"))
    where = {None: "the record does not say its CPU type, so bit-identical results are not promised",
             True: "same CPU type: the promise is the same numbers",
             False: "another CPU type: training may end elsewhere"}[same]
    print(f"machine: {where} (threads {old.get('torch_threads')} recorded, {new.get('torch_threads')} again)")
    return 0 if ok else 1


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


def cmd_weights(args) -> int:
    from .weights import fetch_mobilenet_v2

    path, meta = fetch_mobilenet_v2(index_url=args.index_url, force=args.force)
    print(f"{meta['source']}\n-> {path}")
    return 0
