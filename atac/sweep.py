"""Sweeps: a grid of runs (Table 1, Table 2) on a local process pool or a SLURM cluster.

A sweep file (YAML) names a results file and a grid::

    name: table1-cpu
    results: results/table1-cpu.jsonl   # relative to the sweep file
    base:                               # config fields shared by every run (a preset, then fields)
      preset: cpu
      backbone: mobilenet_v2
    grid:                               # blocks; in each, a list of values is a grid axis
      - {dataset: mvtec_ad, category: grid, method: [deviation, atac], shots: 10, seed: [0, 1, 2]}

Every combination of a block is one run (an ``atac train`` run: :func:`atac.run.run`) with its
own folder ``<runs_dir>/<run_id>`` (per-epoch checkpoint, so a killed run resumes where it
stopped). Each finished run's record (``metrics.json``, config included, plus a ``sweep`` entry) is
added to the results file atomically under a lock; a run whose record is already there (same run
id, same config) is skipped, so a sweep can be stopped at any moment and started again without
losing or duplicating a run. Runs are ordered seed by seed, so a partial sweep already holds whole
seeds.

Executors: ``local`` — a pool of ``--jobs`` worker processes (one per GPU when GPUs exist; on CPU
each worker gets ``cpus // jobs`` threads); ``slurm`` — one SLURM array job per sweep through
submitit; ``submitit-local`` — submitit's local executor (same code path as ``slurm``, used by the
tests). The pre-processing cache (:mod:`atac.data.preprocess`) is shared by every worker.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import hashlib
import itertools
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml
from tqdm import tqdm

from .config import RunConfig, identity_key, load_yaml, merge, preset, same_run
from .memory import release_freed_memory
from .methods import get_method
from .locks import RunInUseError, locked
from .results import atomic_write_text, git_commit, load_records, machine, write_records

EXECUTORS = ("local", "slurm", "submitit-local")


@dataclass
class SweepRun:
    """One run of a sweep: its id (also its folder name) and its config."""

    run_id: str
    config: RunConfig


@dataclass
class Sweep:
    """A parsed sweep file. ``results`` and ``runs_dir`` are absolute paths."""

    name: str
    file: Path
    results: Path
    runs_dir: Path
    base: dict[str, Any]
    blocks: list[dict[str, Any]]
    runs: list[SweepRun] = field(default_factory=list)


def run_id(cfg: RunConfig) -> str:
    """A readable, unique folder name: ``<category>-<method>-<shots>shot-s<seed>-<hash>``.

    The hash (8 hex digits) is of :func:`atac.config.identity_key` of the config (every field but the
    execution ones such as the device), so changing the budget of a sweep gives new runs instead of
    clashing with old folders.
    """
    d = cfg.to_dict()
    digest = hashlib.sha256(identity_key(d).encode()).hexdigest()[:8]
    setting = f"-hard-{cfg.known_type}" if cfg.setting == "hard" else ""
    cat = "magnetic_tile" if cfg.dataset == "magnetic_tile" else cfg.category
    return f"{cat}{setting}-{cfg.method}-{cfg.backbone}-{cfg.shots}shot-s{cfg.seed}-{digest}"


def load_sweep(path: str | Path, runs_dir: str | Path | None = None,
               results: str | Path | None = None) -> Sweep:
    """Parse and expand a sweep file; every run's config is validated before anything runs.

    Raises:
        ValueError: unreadable file, not YAML, a key given twice (names it and both lines), unknown
            keys, a bad field value or method (names the block).
    """
    path = Path(path)
    try:
        data = load_yaml(path)  # 1e-3 is a number, a key given twice an error
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read sweep file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"sweep file {path}: expected a mapping with name, results, base, grid")
    unknown = sorted(set(data) - {"name", "results", "base", "grid", "runs_dir", "description"})
    if unknown:
        raise ValueError(f"sweep file {path}: unknown key(s) {', '.join(unknown)} "
                         "(valid: name, description, results, runs_dir, base, grid)")
    name = data.get("name") or path.stem
    if not isinstance(name, str) or "/" in name:
        raise ValueError(f"sweep file {path}: 'name' must be a plain name")
    base = data.get("base") or {}
    blocks = data.get("grid")
    if not isinstance(base, dict):
        raise ValueError(f"sweep file {path}: 'base' must be a mapping of config fields")
    if not isinstance(blocks, list) or not blocks or not all(isinstance(b, dict) for b in blocks):
        raise ValueError(f"sweep file {path}: 'grid' must be a non-empty list of mappings")
    here = path.resolve().parent
    res = Path(results) if results else here / (data.get("results") or f"results/{name}.jsonl")
    rd = Path(runs_dir) if runs_dir else here / (data.get("runs_dir") or f"runs/{name}")
    sweep = Sweep(name, path.resolve(), res.resolve(), rd.resolve(), base, blocks)
    sweep.runs = expand(sweep)
    return sweep


def expand(sweep: Sweep) -> list[SweepRun]:
    """Every run of the grid, seed by seed (then block and field order), without duplicates."""
    base = {k.replace("-", "_"): v for k, v in sweep.base.items()}
    name = base.pop("preset", "paper")
    preset(name)  # an unknown preset is the base's error, before any block
    runs: list[tuple[int, int, SweepRun]] = []
    seen: set[str] = set()
    for b, block in enumerate(sweep.blocks, 1):
        block = {k.replace("-", "_"): v for k, v in block.items()}
        axes = {k: _axis(k, v) for k, v in block.items()}
        empty = [k for k, v in axes.items() if not v]
        if empty:
            raise ValueError(f"sweep file {sweep.file}, grid block {b}: '{empty[0]}' is an empty list")
        for values in itertools.product(*axes.values()):
            try:
                cfg = merge(name, base, dict(zip(axes, values))).validate()
                get_method(cfg.method)
            except ValueError as exc:
                raise ValueError(f"sweep file {sweep.file}, grid block {b}: {exc}") from exc
            rid = run_id(cfg)
            if rid not in seen:
                seen.add(rid)
                runs.append((cfg.seed, len(runs), SweepRun(rid, cfg)))
    runs.sort(key=lambda t: (t[0], t[1]))
    return [r for _, _, r in runs]


def _matches(value: Any, text: str) -> bool:
    """Does a config value equal the text of an ``--only`` filter (``true``, ``2e-4``, ``10``)?"""
    if str(value) == text:
        return True
    if isinstance(value, bool):
        return text.lower() in (("true", "yes", "on", "1") if value else ("false", "no", "off", "0"))
    if isinstance(value, (int, float)):
        try:
            return float(text) == float(value)
        except ValueError:
            return False
    return False


TUPLE_FIELDS = {k for k, v in RunConfig().to_dict().items() if isinstance(v, list)}


def _axis(key: str, value: Any) -> list:
    """The values of one grid field: a list is an axis (for pair-valued fields such as
    ``patch_area``, a list of lists is)."""
    if key in TUPLE_FIELDS:
        return value if isinstance(value, list) and value and isinstance(value[0], list) else [value]
    return value if isinstance(value, list) else [value]


def select(runs: list[SweepRun], only: list[str]) -> list[SweepRun]:
    """Keep runs whose config matches every ``FIELD=V1,V2`` filter (values compared as text).

    A field a run does not use still has its default value (``--only dra_scales=2`` also keeps
    every non-DRA run); filter on ``method`` as well to avoid that.

    Raises:
        ValueError: a filter that is not ``FIELD=VALUES`` or names an unknown field.
    """
    names = {f.name for f in dataclasses.fields(RunConfig)}
    out = runs
    for f in only:
        key, sep, vals = f.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not vals:
            raise ValueError(f"--only {f!r}: expected FIELD=VALUE[,VALUE...]")
        if key not in names:
            raise ValueError(f"--only {f!r}: unknown config field '{key}'")
        allowed = [v.strip() for v in vals.split(",")]
        out = [r for r in out if any(_matches(getattr(r.config, key), v) for v in allowed)]
    return out


# ---------------------------------------------------------------------------- results file
def _lock_file(path: Path) -> Path:
    """The lock file that guards ``path``'s rewrites (:func:`atac.locks.locked`): ``.<name>.lock`` beside it."""
    return path.with_name(f".{path.name}.lock")


def recorded(results: Path) -> dict[str, dict]:
    """run_id → record of the runs already in a results file (empty when it does not exist)."""
    if results.is_dir():
        raise ValueError(f"results file {results} is a folder")
    if not results.is_file():
        return {}
    out = {}
    for i, r in enumerate(load_records(results), 1):
        if isinstance(r.get("sweep"), dict) and "run_id" in r["sweep"]:
            if not isinstance(r.get("config"), dict):
                raise ValueError(f"{results}, record {i} (run {r['sweep']['run_id']}): no config "
                                 "mapping; fix or remove that line")
            out[r["sweep"]["run_id"]] = r
    return out


def _recorded_as(done: dict[str, dict], run: SweepRun) -> bool:
    """Whether ``done`` (:func:`recorded`) holds ``run``: its run id, with a config of the same run
    (:func:`atac.config.same_run`; execution details such as the device may differ)."""
    rec = done.get(run.run_id)
    return rec is not None and same_run(rec.get("config", {}), run.config.to_dict())


def append_record(results: Path, record: dict) -> bool:
    """Add one record (one JSON line) to ``results`` atomically, under an exclusive lock.

    The file is rewritten through a temporary file and a rename, so a reader (or a crash) never
    sees half a line; the record's split file lists go to the file's split store
    (:func:`atac.results.write_records`). Returns False, writing nothing, when a record with the
    same run id is there.
    """
    with locked(_lock_file(results)):
        if record["sweep"]["run_id"] in recorded(results):
            return False
        old = load_records(results) if results.is_file() else []
        write_records(results, [*old, record])
        return True


# ---------------------------------------------------------------------------- one run (worker side)
def _die_with_parent() -> None:
    """Linux: a worker gets SIGTERM when the sweep process dies (no orphan keeps training)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


def run_one(config: dict, out_dir: str, threads: int | None = None, device: str | None = None,
            use_cache: bool = True) -> dict:
    """Run (or resume, or just read back) one sweep run in the current process; return its record.

    This is what pool workers and submitit jobs execute. ``threads`` sets PyTorch's intra-op
    threads; ``device`` overrides the config's device (a worker's GPU).
    """
    import torch

    from .run import completed_record, run, same_config

    if threads:
        torch.set_num_threads(int(threads))
    cfg = RunConfig.from_dict(config)
    if device:
        cfg.device = device
    previous = completed_record(out_dir)
    if previous is not None and same_config(previous, cfg):
        return previous
    before = os.environ.get("ATAC_NO_PREP_CACHE")
    if not use_cache:
        os.environ["ATAC_NO_PREP_CACHE"] = "1"
    try:
        return run(cfg, out_dir, progress=False).metrics
    finally:  # a sweep run in-process must not leave the switch on for the caller
        release_freed_memory()  # a long-lived worker gives its run's peak back (atac.memory)
        if before is None:
            os.environ.pop("ATAC_NO_PREP_CACHE", None)
        else:
            os.environ["ATAC_NO_PREP_CACHE"] = before


_WORKER: dict[str, Any] = {}


def _init_worker(threads: int, devices) -> None:
    import signal

    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep process's to handle
    _WORKER["threads"] = threads
    _WORKER["device"] = devices.get() if devices is not None else None


def _pool_task(config: dict, out_dir: str, use_cache: bool) -> dict:
    return run_one(config, out_dir, _WORKER.get("threads"), _WORKER.get("device"), use_cache)


# ---------------------------------------------------------------------------- the driver
@dataclass
class SweepReport:
    """What one invocation did: counts, failures (run_id → message), wall seconds, and the runs left
    to another live process that held their folder (``busy``)."""

    total: int
    skipped: int
    finished: int
    failed: dict[str, str]
    wall_seconds: float
    busy: list[str] = field(default_factory=list)


def _sweep_entry(sweep: Sweep, run: SweepRun, executor: str) -> dict:
    return {"name": sweep.name, "file": _rel(sweep.file), "run_id": run.run_id,
            "run_dir": _rel(sweep.runs_dir / run.run_id), "executor": executor}


def _rel(p: Path) -> str:
    try:
        return str(p.relative_to(Path.cwd()))
    except ValueError:
        return str(p)


def run_sweep(sweep: Sweep, jobs: int = 1, threads: int | None = None, executor: str = "local",
              only: list[str] | None = None, use_cache: bool = True, progress: bool = True,
              slurm: dict[str, Any] | None = None, log: Callable[[str], None] | None = None) -> SweepReport:
    """Run every pending run of ``sweep`` and add each record to its results file as it finishes.

    Args:
        jobs: local: worker processes (default 1; with GPUs, one per GPU is sensible);
            slurm: the array's parallelism.
        threads: PyTorch threads per worker (default: CPU count // jobs).
        executor: ``local`` | ``slurm`` | ``submitit-local``.
        only: ``FIELD=V1,V2`` filters (see :func:`select`).
        slurm: submitit parameters (partition, timeout_min, gpus_per_node, cpus_per_task, mem_gb).
    Returns:
        a :class:`SweepReport`; failed runs do not stop the others.
    Raises:
        ValueError: unknown executor, jobs < 1, or a results file that cannot be read.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor '{executor}'; choose one of {', '.join(EXECUTORS)}")
    if jobs < 1:
        raise ValueError("--jobs must be >= 1")
    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))
    t0 = time.perf_counter()
    runs = select(sweep.runs, only or [])
    for r in runs:
        get_method(r.config.method)   # ValueError naming the valid methods, before anything runs
    done = recorded(sweep.results)
    pending = [r for r in runs if not _recorded_as(done, r)]
    skipped = len(runs) - len(pending)
    if threads is None:
        omp = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(omp) if omp.isdigit() and int(omp) > 0 else max(1, (os.cpu_count() or 1) // jobs)
    if threads < 1:
        raise ValueError("--threads must be >= 1")
    if pending:
        _check_writable(sweep.results)
    failed: dict[str, str] = {}
    busy: list[str] = []
    finished = 0
    bar = tqdm(total=len(runs), initial=skipped, desc=f"sweep {sweep.name}", unit="run",
               disable=not progress)

    def finish(run: SweepRun, record: dict | None, error: BaseException | None) -> None:
        nonlocal finished
        if isinstance(error, RunInUseError):  # another live sweep is training it: not a failure
            busy.append(run.run_id)
            log(f"run {run.run_id}: skipped, another process is running it ({error})")
        elif error is not None:
            failed[run.run_id] = f"{type(error).__name__}: {error}"
            log(f"run {run.run_id} failed: {failed[run.run_id]}")
        else:
            record = {**record, "sweep": _sweep_entry(sweep, run, executor)}
            if not append_record(sweep.results, record):
                log(f"run {run.run_id}: already in {sweep.results} (another invocation recorded it); "
                    "not added twice")
            finished += 1
            bar.set_postfix_str(f"{run.run_id}: AUROC {record.get('image_auroc', float('nan')):.3f}")
        bar.update(1)

    work = [(r, r.config.to_dict(), str(sweep.runs_dir / r.run_id)) for r in pending]
    try:
        _execute(sweep, work, jobs, threads, executor, use_cache, slurm, finish)
    except BaseException as stop:
        # stopped (Ctrl-C, SIGTERM) or broken: what did finish still gets its provenance line. The
        # count is read back from the results file (an interrupt can fall between a record's append
        # and the counter's increment).
        bar.close()
        try:
            ours = {r.run_id for r in pending} & set(recorded(sweep.results))
            report = SweepReport(len(runs), skipped, len(ours), failed, time.perf_counter() - t0, busy)
            _log_session(sweep, report, jobs, threads, executor, only or [], use_cache, interrupted=True)
        except BaseException as exc:  # a second Ctrl-C, a full disk: never hide why the sweep stopped
            log(f"could not log this sweep session ({type(exc).__name__}: {exc}); stopped by "
                f"{type(stop).__name__}")
        raise
    bar.close()
    report = SweepReport(len(runs), skipped, finished, failed, time.perf_counter() - t0, busy)
    _log_session(sweep, report, jobs, threads, executor, only or [], use_cache)
    return report


def _execute(sweep, work, jobs, threads, executor, use_cache, slurm, finish) -> None:
    """Run ``work`` [(run, config dict, folder)] on the chosen executor, calling ``finish`` per run."""
    if not work:
        pass
    elif executor == "local" and jobs == 1:
        import torch

        before = torch.get_num_threads()
        try:
            for r, cfg, out in work:
                try:
                    rec = run_one(cfg, out, threads, None, use_cache)
                except Exception as exc:  # a failed run is reported; the sweep goes on
                    finish(r, None, exc)
                else:
                    finish(r, rec, None)
        finally:
            torch.set_num_threads(before)
    elif executor == "local":
        _run_pool(work, jobs, threads, use_cache, finish)
    else:
        _run_submitit(sweep, work, jobs, threads, executor, use_cache, slurm or {}, finish)


def _check_writable(results: Path) -> None:
    """Fail before any training when the results file cannot be written (names the file)."""
    if results.is_dir():
        raise ValueError(f"results file {results} is a folder; give a file path (--results)")
    try:
        results.parent.mkdir(parents=True, exist_ok=True)
        with open(_lock_file(results), "a"):
            pass
    except OSError as exc:
        raise ValueError(f"results file {results} cannot be written ({exc.strerror or exc})") from exc
    if results.exists() and not os.access(results, os.W_OK):
        raise ValueError(f"results file {results} is not writable")


def _run_pool(work, jobs, threads, use_cache, finish) -> None:
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    import torch

    ctx = mp.get_context("spawn")
    devices = None
    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n_gpu:
        devices = ctx.Queue()
        for i in range(jobs):
            devices.put(f"cuda:{i % n_gpu}")
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_init_worker,
                               initargs=(threads, devices))
    try:
        futures = {pool.submit(_pool_task, cfg, out, use_cache): r for r, cfg, out in work}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in done:
                exc = f.exception()
                finish(futures[f], None if exc else f.result(), exc)
    except BaseException:
        # Ctrl-C (or any error here): queued runs are cancelled and the workers stopped at once; the
        # runs cut off resume from their last epoch checkpoint when the sweep is started again
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_submitit(sweep, work, jobs, threads, executor, use_cache, slurm, finish) -> None:
    import submitit

    logs = sweep.runs_dir / "submitit"
    cluster = "slurm" if executor == "slurm" else "local"
    ex = submitit.AutoExecutor(folder=str(logs), cluster=cluster)
    params = {"timeout_min": int(slurm.get("timeout_min", 120)), "name": f"atac-{sweep.name}"}
    if slurm.get("gpus_per_node") is not None:
        params["gpus_per_node"] = int(slurm["gpus_per_node"])
    if slurm.get("cpus_per_task") is not None:
        params["cpus_per_task"] = int(slurm["cpus_per_task"])
    if slurm.get("mem_gb") is not None:
        params["mem_gb"] = int(slurm["mem_gb"])
    if cluster == "slurm":
        params["slurm_array_parallelism"] = jobs
        if slurm.get("partition"):
            params["slurm_partition"] = slurm["partition"]
    ex.update_parameters(**params)
    # one job per run (an array job on SLURM); each job uses the device SLURM gives it
    job_threads = threads if cluster == "local" else slurm.get("cpus_per_task")
    submitted = ex.map_array(run_one, [w[1] for w in work], [w[2] for w in work],
                             [job_threads] * len(work), [None] * len(work), [use_cache] * len(work))
    pending = dict(zip(submitted, (w[0] for w in work)))
    while pending:
        for job in [j for j in pending if j.done()]:
            run = pending.pop(job)
            try:
                rec = job.result()
            except Exception as exc:
                finish(run, None, exc)
            else:
                finish(run, rec, None)
        if pending:
            time.sleep(1.0)


def _log_session(sweep: Sweep, report: SweepReport, jobs, threads, executor, only, use_cache,
                 interrupted: bool = False) -> None:
    """Append one line per invocation to ``<results>.sessions.jsonl`` (provenance of the file);
    ``interrupted``: the invocation was stopped before its last run (its line says so)."""
    if report.finished == 0 and not report.failed:
        return
    entry = {"finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
             "interrupted": interrupted,
             "command": " ".join(shlex.quote(a) for a in sys.argv), "executor": executor, "jobs": jobs,
             "threads_per_worker": threads, "only": only, "prep_cache": use_cache,
             "runs_total": report.total, "runs_skipped": report.skipped,
             "runs_finished": report.finished, "runs_failed": sorted(report.failed),
             "wall_seconds": round(report.wall_seconds, 1), "git_commit": git_commit(),
             "machine": machine()}
    path = sweep.results.with_name(sweep.results.stem + ".sessions.jsonl")
    with locked(_lock_file(path)):
        old = path.read_text() if path.is_file() else ""
        atomic_write_text(path, old + json.dumps(entry) + "\n")


def reproduce(results: str | Path, rid: str, out_dir: str | Path, threads: int | None = None,
              data_root: str | None = None, progress: bool = True) -> tuple[dict, dict]:
    """Train a recorded run again from its recorded config; return (recorded, new) records.

    ``threads`` defaults to the recorded ``torch_threads`` (the same arithmetic, so on CPU the same
    scores). ``out_dir`` must be a fresh folder (a finished folder is never overwritten).

    Raises:
        ValueError: no record with that run id in the file (the message lists a few ids).
    """
    import torch

    from .run import run

    if not Path(results).is_file():
        raise ValueError(f"{results}: no such results file")
    if data_root and not Path(data_root).is_dir():
        raise ValueError(f"--data-root {data_root}: no such folder")
    records = recorded(Path(results))
    if rid not in records:
        some = ", ".join(sorted(records)[:5])
        raise ValueError(f"{results}: no run '{rid}' (runs there: {some}{', ...' if len(records) > 5 else ''})")
    old = records[rid]
    cfg = RunConfig.from_dict(old["config"])
    cfg.device = "auto"   # the recorded one may be a sweep worker's GPU (cuda:3) absent here
    if data_root:
        cfg.data_root = data_root
    before = torch.get_num_threads()
    torch.set_num_threads(int(threads or old.get("torch_threads") or before))
    try:
        new = run(cfg, out_dir, progress=progress).metrics
    finally:
        torch.set_num_threads(before)
    return old, new


def status(sweep: Sweep, only: list[str] | None = None) -> list[tuple[SweepRun, str]]:
    """(run, "done" | "partial" (a checkpoint exists) | "pending") for every selected run."""
    done = recorded(sweep.results)
    out = []
    for r in select(sweep.runs, only or []):
        rec = done.get(r.run_id)
        if _recorded_as(done, r):
            out.append((r, f"done (AUROC {rec.get('image_auroc', float('nan')):.4f})"))
        elif (sweep.runs_dir / r.run_id / "metrics.json").exists():
            out.append((r, "finished, not yet recorded (the next `atac sweep` adds it)"))
        elif any((sweep.runs_dir / r.run_id / n).exists() for n in ("checkpoint.pt", "stage1")):
            out.append((r, "partial (resumes from its checkpoint)"))
        else:
            out.append((r, "pending"))
    return out
