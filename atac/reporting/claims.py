"""The paper's claims judged on our rows, in words: the ladder's order and its three steps (Table 1),
ATAC-Net against DevNet and DRA on unseen defect types (Table 2), and our setups set against the
paper's. Comparisons are paired over the runs that share a split (same class and seed), with the
intervals of :mod:`atac.stats`."""

from __future__ import annotations

import itertools
import statistics

import pandas as pd

from ..stats import summarize_contrast, t_check_note
from .published import (MEAN, PAPER_BACKBONE, PAPER_NAMES, PAPER_ORDER, RIVALS, TABLE2_ORDER, method_order,
                        paper_table1, paper_table2, type_order)
from .summary import METRIC_NAMES, defect_types

def ladder_order(rows: list[dict], shots: int = 10) -> list[dict]:
    """Does the paper's ordering atac > deviation > weighted_ce > cutmix_bce hold for our means?

    Args:
        rows: from :func:`atac.reporting.table1.table1_rows`.
        shots: only rows with this many known anomalies are compared.
    Returns:
        One dict per (dataset, category, backbone, budget) with rows at ``shots``: those keys,
        ``shots``, ``means`` ({method: our mean} for the four methods we have), ``missing`` (methods
        of the four without a run), ``holds`` (True / False; None when a method is missing),
        ``paper_holds`` (the same check on the paper's Table 1 values for an MVTec AD class at ten
        shots; else None) and ``verdict``: "holds", "does not hold: deviation 0.978 > atac 0.917"
        (every adjacent pair out of order), or "cannot tell: no run of weighted_ce, cutmix_bce".
    Raises:
        ValueError: no rows at ``shots``.
    """
    groups: dict[tuple, dict[str, float]] = {}
    for r in rows:
        if r["shots"] == shots:
            key = (r["dataset"], r["category"], r["backbone"], r["budget"])
            groups.setdefault(key, {})[r["method"]] = r["mean"]
    if not groups:
        raise ValueError(f"no rows with {shots} shots (found: {sorted({r['shots'] for r in rows})})")
    paper = paper_table1()
    out = []
    for (dataset, category, backbone, bud), means in groups.items():
        mine = {m: means[m] for m in PAPER_ORDER if m in means}
        missing = [m for m in PAPER_ORDER if m not in means]
        if missing:
            holds, verdict = None, f"cannot tell: no run of {', '.join(missing)}"
        else:
            holds, verdict = _order_verdict(mine)
        paper_holds = None
        if dataset == "mvtec_ad" and shots == 10 and all((category, m) in paper for m in PAPER_ORDER):
            paper_holds = _order_verdict({m: paper[(category, m)] for m in PAPER_ORDER})[0]
        out.append({"dataset": dataset, "category": category, "backbone": backbone, "budget": bud,
                    "shots": shots, "means": mine, "missing": missing, "holds": holds,
                    "paper_holds": paper_holds, "verdict": verdict})
    return out


def _order_verdict(means: dict[str, float]) -> tuple[bool, str]:
    """(holds, sentence) for the strict ordering PAPER_ORDER over ``means`` (all four present)."""
    broken = []
    for hi, lo in zip(PAPER_ORDER, PAPER_ORDER[1:]):
        if not means[hi] > means[lo]:
            sign = ">" if means[lo] > means[hi] else "="
            broken.append(f"{lo} {means[lo]:.3f} {sign} {hi} {means[hi]:.3f}")
    return (not broken, "holds" if not broken else "does not hold: " + "; ".join(broken))



# The supplement's three step-by-step claims of Table 1, (better, worse) in ladder order.
LADDER_CLAIMS = (("weighted_ce", "cutmix_bce"), ("deviation", "weighted_ce"), ("atac", "deviation"))


def ladder_pairs(rows: list[dict], shots: int = 10,
                 pairs: tuple[tuple[str, str], ...] = LADDER_CLAIMS) -> list[dict]:
    """Each claimed step of the ladder (``better`` beats ``worse``) judged on our means, with the
    paired differences over their common seeds (the same splits), with their 95% interval.

    Args:
        rows: from :func:`atac.reporting.table1.table1_rows`.
        shots: only rows with this many known anomalies are compared.
        pairs: (better, worse) method pairs; default :data:`LADDER_CLAIMS` (II > I, III > II, V > III).
    Returns:
        One dict per (dataset, category, backbone, budget) with rows at ``shots`` (in the order of
        :func:`ladder_order`) and per pair: those keys, ``shots``, ``better``, ``worse``, ``missing``
        (the pair's methods without a row), ``mean_better``, ``mean_worse``, ``n_better``,
        ``n_worse``, ``diff`` (mean_better − mean_worse), ``spread`` (the larger of the two sample
        stds; None when neither has one, i.e. one seed each), ``one_seed`` (True when a side has a
        single seed), ``paper_better``/``paper_worse`` (the paper's Table 1 values, or None),
        ``verdict`` ("supported", "not supported", "not resolved" — the difference is within the
        spread, or zero — or "cannot tell": a method is missing) and ``sentence``, e.g.
        "supported: weighted_ce 0.820 > cutmix_bce 0.710 (+0.110)". The numeric keys are None when
        ``missing``.
    Raises:
        ValueError: no rows at ``shots``.
    """
    if not any(r["shots"] == shots for r in rows):
        raise ValueError(f"no rows with {shots} shots (found: {sorted({r['shots'] for r in rows})})")
    groups: dict[tuple, dict[str, dict]] = {}
    for r in rows:
        if r["shots"] == shots:
            groups.setdefault((r["dataset"], r["category"], r["backbone"], r["budget"]), {})[r["method"]] = r
    out = []
    for (dataset, category, backbone, bud), by in groups.items():
        for better, worse in pairs:
            res = {"dataset": dataset, "category": category, "backbone": backbone, "budget": bud,
                   "shots": shots, "better": better, "worse": worse,
                   "missing": [m for m in (better, worse) if m not in by],
                   "mean_better": None, "mean_worse": None, "n_better": None, "n_worse": None,
                   "diff": None, "spread": None, "one_seed": None, "paper_better": None,
                   "paper_worse": None, "paired": None}
            if res["missing"]:
                res["verdict"] = "cannot tell"
                res["sentence"] = f"cannot tell, no run of {', '.join(res['missing'])}"
                out.append(res)
                continue
            b, w = by[better], by[worse]
            diff = b["mean"] - w["mean"]
            stds = [x for x in (b["std"], w["std"]) if x is not None]
            spread = max(stds) if stds else None
            paired = _paired(b, w)
            res.update(mean_better=b["mean"], mean_worse=w["mean"], n_better=b["n"], n_worse=w["n"],
                       diff=diff, spread=spread, one_seed=b["n"] < 2 or w["n"] < 2,
                       paper_better=b["paper"], paper_worse=w["paper"], paired=paired)
            interval = (f"paired over {paired['n']} seed{'s' if paired['n'] != 1 else ''}: "
                        f"{paired['mean']:+.3f}" + (f" [{paired['ci_low']:+.3f}, {paired['ci_high']:+.3f}]"
                                                     if paired["verdict"] != "too few pairs" else ""))
            if paired["verdict"] == "above":
                res["verdict"] = "supported"
                res["sentence"] = (f"supported: {better} {b['mean']:.3f} > {worse} {w['mean']:.3f} "
                                   f"({diff:+.3f}; {interval})")
            elif paired["verdict"] == "below":
                res["verdict"] = "not supported"
                res["sentence"] = (f"not supported: {better} {b['mean']:.3f} < {worse} {w['mean']:.3f} "
                                   f"({diff:+.3f}; {interval}, the interval below 0)")
            else:
                res["verdict"] = "not resolved"
                why = ("the 95% interval includes 0" if paired["verdict"] == "not distinguishable"
                       else "too few paired seeds for an interval")
                res["sentence"] = (f"not resolved: {better} {b['mean']:.3f} vs {worse} {w['mean']:.3f}, "
                                   f"a difference of {diff:+.3f} ({interval}; {why})")
            note = t_check_note(paired)
            if note:   # every sentence here ends in its parenthesis
                res["sentence"] = res["sentence"][:-1] + f"; {note})"
            out.append(res)
    return out


def _paired_types(ours: dict[str, dict], rival: dict[str, dict], types: list[str]) -> dict:
    """Paired differences of two methods' hard-setting rows over every (known type, seed) both
    have (one split each), seeds resampled within each type (:func:`atac.stats.summarize_contrast`)."""
    rows = []
    for t in types:
        a = dict(zip(ours[t]["seeds"], ours[t]["values"]))
        b = dict(zip(rival[t]["seeds"], rival[t]["values"]))
        rows += [{"class": t, "diff": a[s] - b[s]} for s in a if s in b]
    return summarize_contrast(pd.DataFrame(rows, columns=["class", "diff"]))


def _paired(better: dict, worse: dict) -> dict:
    """Paired differences of two rows' values over their common seeds (same class, budget and seed:
    the same split), summarised by :func:`atac.stats.summarize_contrast`."""
    a = dict(zip(better["seeds"], better["values"]))
    b = dict(zip(worse["seeds"], worse["values"]))
    common = [s for s in a if s in b]
    values = pd.DataFrame({"class": ["c"] * len(common), "diff": [a[s] - b[s] for s in common]})
    return summarize_contrast(values)


def describe_setups(rows: list[dict]) -> str:
    """The backbones and budgets of ``rows`` (from :func:`atac.reporting.table1.table1_rows` / :func:`atac.reporting.table2.table2_rows`) as a
    phrase for prose, set against the paper's setup (ResNet-50, the ``paper`` preset): e.g.
    ``"mobilenet_v2 (not the paper's ResNet-50) at the budget cpu: 15 epochs × 20 steps, batch 16,
    224 px (not the paper's budget)"``; several budgets of one backbone are joined by "and",
    several backbones by "; ". Raises ValueError on no rows."""
    if not rows:
        raise ValueError("no rows to describe")
    by_backbone: dict[str, set[str]] = {}
    for r in rows:
        by_backbone.setdefault(str(r["backbone"]), set()).add(r["budget"])
    parts = []
    for backbone, buds in sorted(by_backbone.items()):
        bb = (f"{backbone} (the paper's backbone)" if backbone == PAPER_BACKBONE
              else f"{backbone} (not the paper's ResNet-50)")
        buds = sorted(buds)
        paper = [b.startswith("paper:") for b in buds]
        if all(paper) or not any(paper):
            text = " and ".join(buds) + (" (the paper preset)" if all(paper) else
                                        f" (not the paper's budget{'s' if len(buds) > 1 else ''})")
        else:
            text = " and ".join(b + (" (the paper preset)" if p else " (not the paper's budget)")
                                for b, p in zip(buds, paper))
        parts.append(f"{bb} at the budget{'s' if len(buds) > 1 else ''} {text}")
    return "; ".join(parts)

def table2_claims(rows: list[dict]) -> list[dict]:
    """Does ATAC-Net beat DevNet (our ``deviation``) and DRA on unseen defect types?

    The paper's Table 2 claim: in the hard setting ATAC-Net's mean over known types is above
    DevNet's and DRA's. For every (dataset, category, shots) and every combination of one setup
    (backbone, budget) per method, the known types with a row of all three methods are compared.

    Args:
        rows: from :func:`atac.reporting.table2.table2_rows` (per-type rows are used; mean rows are recomputed over the
            compared types).
    Returns:
        One dict per group: ``dataset``, ``category``, ``shots``, ``setups`` ({method: "backbone
        (budget)"}), ``types`` (the compared known types), ``n_types``, ``all_types`` (True when they
        are every defect type of the class; None when the class's types are unknown), ``missing``
        (methods without a row), ``means`` ({method: mean over the compared types}), ``wins``
        ({rival: on how many of the types ATAC-Net's mean is higher}), ``spread`` ({rival: the larger
        of the two methods' mean-row std, or None}), ``beats`` ({rival: True / False, None when it
        cannot tell}), ``paired`` ({rival: paired differences over (known type, seed),
        :func:`atac.stats.summarize_contrast`}), ``holds`` (True: ATAC-Net's paired interval lies above
        both rivals'; False: below either; None when it cannot tell or is not resolved),
        ``t_confirmed`` (whether the t intervals of :func:`atac.stats.t_interval` give the same
        judgement; None where ``holds`` is None), ``paper_holds``
        (the same on the paper's per-type values for a Table 2 class and shots; else None) and
        ``sentence`` (a plain statement of all this).
    Raises:
        ValueError: no rows.
    """
    if not rows:
        raise ValueError("no rows to judge")
    per = [r for r in rows if r["known_type"] != MEAN]
    means_rows = {(r["dataset"], r["category"], r["shots"], r["method"], r["backbone"], r["budget"]): r
                  for r in rows if r["known_type"] == MEAN}
    groups: dict[tuple, dict[str, dict[tuple, dict[str, dict]]]] = {}
    for r in per:
        g = groups.setdefault((r["dataset"], r["category"], r["shots"]), {})
        g.setdefault(r["method"], {}).setdefault((r["backbone"], r["budget"]), {})[r["known_type"]] = r
    paper = paper_table2()
    out = []
    for (dataset, category, shots), by_method in sorted(groups.items(), key=lambda kv: str(kv[0])):
        missing = [m for m in TABLE2_ORDER if m not in by_method]
        choices = [sorted(by_method[m]) if m in by_method else [None] for m in TABLE2_ORDER]
        for combo in itertools.product(*choices):
            setup = dict(zip(TABLE2_ORDER, combo))
            out.append(_claim(dataset, category, shots, setup, by_method, missing, means_rows, paper))
    return out


def _claim(dataset, category, shots, setup, by_method, missing, means_rows, paper) -> dict:
    names = {"deviation": "DevNet (our deviation recipe)", "dra": "DRA", "atac": "ATAC-Net"}
    present = {m: by_method[m][s] for m, s in setup.items() if s is not None}
    types = sorted(set.intersection(*(set(v) for v in present.values())), key=type_order) \
        if present else []
    if missing:
        types = []
    known = defect_types(dataset, category)
    all_types = None if known is None else set(types) == set(known)
    res = {"dataset": dataset, "category": category, "shots": shots,
           "setups": {m: f"{s[0]} ({s[1]})" for m, s in setup.items() if s is not None},
           "types": types, "n_types": len(types), "all_types": all_types, "missing": missing,
           "means": {}, "wins": {}, "spread": {}, "beats": {r: None for r in RIVALS}, "holds": None,
           "t_confirmed": None, "paper_holds": None}
    name = category if category == dataset else f"{dataset} / {category}"
    where = f"{name}, {shots} known anomal{'y' if shots == 1 else 'ies'} of one type"
    pt = [k[1] for k in paper if dataset == "mvtec_ad" and k[0] == category and k[2] == shots
          and k[3] == "atac" and k[1] != MEAN]
    if pt:
        pm = {m: statistics.fmean(paper[(category, t, shots, m)]["image_auroc"] for t in pt)
              for m in TABLE2_ORDER}
        res["paper_holds"] = all(pm["atac"] > pm[r] for r in RIVALS)
    if not types:
        why = (f"no run of {', '.join(missing)}" if missing else
               "no known type has a run of all three methods")
        res["sentence"] = f"{where}: cannot tell, {why}."
        return res
    for m, rs in present.items():
        res["means"][m] = statistics.fmean(rs[t]["mean"] for t in types)
    a = res["means"]["atac"]
    parts = []
    for rival in RIVALS:
        b = res["means"][rival]
        wins = sum(present["atac"][t]["mean"] > present[rival][t]["mean"] for t in types)
        res["wins"][rival] = wins
        stds = [means_rows.get((dataset, category, shots, m, *setup[m]), {}).get("std")
                for m in ("atac", rival)] if all_types else []
        stds = [s for s in stds if s is not None]
        res["spread"][rival] = max(stds) if stds else None
        res["beats"][rival] = a > b
        verb = "beats" if a > b else "does not beat"
        text = (f"{verb} {names[rival]}: {a:.3f} vs {b:.3f} ({a - b:+.3f}), higher on {wins} of "
                f"{len(types)} known-type split{'s' if len(types) != 1 else ''}")
        paired = _paired_types(present["atac"], present[rival], types)
        res.setdefault("paired", {})[rival] = paired
        if paired["verdict"] == "too few pairs":
            text += f"; too few paired runs ({paired['n']}) for an interval"
        else:
            text += (f"; paired by type and seed over {paired['n']} runs: {paired['mean']:+.3f} "
                     f"[{paired['ci_low']:+.3f}, {paired['ci_high']:+.3f}], {paired['verdict']}")
            note = t_check_note(paired)
            text += f" ({note})" if note else ""
        parts.append(text)
    # the claim judged from the paired intervals: above both rivals holds; below either does not
    judged = [res["paired"][r]["verdict"] for r in RIVALS]
    res["holds"] = (True if all(v == "above" for v in judged) else
                    False if any(v == "below" for v in judged) else None)
    scope = (f"all {len(types)} known types" if all_types else
             f"{len(types)} known type{'s' if len(types) != 1 else ''}"
             + ("" if all_types is None else f" of {len(known)}"))
    verdict = {True: "holds", False: "does not hold"}.get(
        res["holds"], "is not resolved (an interval includes 0, or too few runs)")
    metric = next((r.get("metric") for setups in by_method.values() for per_type in setups.values()
                   for r in per_type.values()), "image_auroc")
    mname = METRIC_NAMES.get(metric, str(metric))
    mname = mname[0].lower() + mname[1:]
    # the t check of that judgement: above both rivals confirmed; below one rival confirmed
    t_judged = [res["paired"][r]["t_verdict"] for r in RIVALS]
    confirmed = (all(v == "above" for v in t_judged) if res["holds"] is True else
                 any(b == "below" and t == "below" for b, t in zip(judged, t_judged)))
    res["t_confirmed"] = None if res["holds"] is None else confirmed
    verdict += " here" + ("" if res["holds"] is None or confirmed else
                          ", though the t check does not confirm it")
    sent = (f"{where}, mean {mname} on unseen types over {scope}: ATAC-Net {parts[0]}; it "
            f"{parts[1]}. The paper's claim (ATAC-Net above both) {verdict}.")
    if any(present[m][t]["n"] < 2 for m in present for t in types):
        sent += " Some of these runs have one seed only, so their seed-to-seed spread is unknown."
    if res["paper_holds"] is not None:
        sent += (f" On the paper's own values for this class it "
                 f"{'holds' if res['paper_holds'] else 'does not hold'}.")
    if len(set(res["setups"].values())) > 1:
        sent += " Setups: " + "; ".join(f"{m} {s}" for m, s in res["setups"].items()) + "."
    res["sentence"] = sent
    return res

# What the paper's runs used, per method: the ladder's and DevNet's and ATAC-Net's rows are the
# `paper` preset (ResNet-50, 224 px, 30 epochs x 20 steps x batch 48, CLAHE, the printed constants).
# The supplement does not say how its DRA rows were run, so DRA is set against DRA's own paper,
# the `dra` preset (ResNet-18 at 448 px, two scales, five reference normals, ImageNet constants, no
# CLAHE). Fields: (config key, label, unit).
SETUP_FIELDS = (("backbone", "backbone", ""), ("weights", "weights", ""), ("image_size", "input size", " px"),
                ("epochs", "epochs", ""), ("steps_per_epoch", "steps per epoch", ""),
                ("batch_size", "batch", ""), ("lr", "learning rate", ""),
                ("lr_step", "learning rate / 10 every", " epochs"), ("clahe", "CLAHE", ""),
                ("normalization", "normalisation constants", ""))
DRA_SETUP_FIELDS = (("dra_scales", "pyramid scales", ""), ("dra_ref_size", "reference normals", ""))


NORMALIZATION_NAMES = {"paper": "the supplement's printed ones (CLIP's)", "imagenet": "ImageNet's"}


def _setup_value(key: str, v, unit: str) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if key == "normalization":
        return NORMALIZATION_NAMES.get(v, str(v))
    return f"{v:g}{unit}" if isinstance(v, float) else f"{v}{unit}"


def setup_differences(configs: list[dict]) -> list[str]:
    """What differs from the paper's runs, per method, generated from run configs.

    Args:
        configs: run configs (a record's ``config``, or ``RunConfig.to_dict()``).
    Returns:
        One sentence per group of methods with the same differences, e.g. "DevNet (`deviation`) and
        ATAC-Net (`atac`), against the paper: backbone mobilenet_v2 (the paper: resnet50); epochs 3
        (the paper: 30); ... The same as the paper: input size 224 px, CLAHE on, ...". The reference
        is the paper's setup (the ``paper`` preset) for every method but DRA, which is set against
        DRA's own paper (the ``dra`` preset; the supplement does not say how its DRA rows were run);
        a field with several values across the configs lists them all ("3 or 15"). Empty when
        ``configs`` is empty.
    """
    from ..config import preset

    by_method: dict[str, list[dict]] = {}
    for c in configs:
        by_method.setdefault(str(c.get("method")), []).append(c)
    texts: dict[str, list[str]] = {}
    for method in sorted(by_method, key=method_order):
        cs = by_method[method]
        is_dra = method == "dra"
        ref = preset("dra" if is_dra else "paper").to_dict()
        ref_name = "DRA's paper" if is_dra else "the paper"
        diff, same = [], []
        for key, label, unit in SETUP_FIELDS + (DRA_SETUP_FIELDS if is_dra else ()):
            vals = sorted({c[key] for c in cs if key in c}, key=str)
            if not vals:
                continue
            ours = " or ".join(_setup_value(key, v, unit) for v in vals)
            if vals == [ref[key]]:
                same.append(f"{label} {ours}")
            else:
                diff.append(f"{label} {ours} ({ref_name}: {_setup_value(key, ref[key], unit)})")
        against = ("against DRA's own paper (the `dra` preset; the supplement does not say how its "
                   "DRA rows were run)" if is_dra else "against the paper (the `paper` preset)")
        text = f"{against}: " + ("; ".join(diff) if diff else "nothing differs") + (
            f". The same as {ref_name}: " + ", ".join(same) if same and diff else "") + "."
        texts.setdefault(text, []).append(method)
    out = []
    for text, methods in texts.items():
        names = [f"{PAPER_NAMES[m]} (`{m}`)" if m in PAPER_NAMES else f"`{m}`" for m in methods]
        who = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        out.append(f"{who}, {text}")
    return out
