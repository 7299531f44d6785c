"""The model-comparison table of a sweep, read back from MLflow (it needs no Ray).

Rows: the best trial (by validation accuracy, never by test) of each architecture, of each
configuration, or every trial. A configuration the sweep confirmed (trained again with further seeds)
is ranked by its mean validation accuracy over its seeds, ahead of single-seed ones, and its row shows
mean +/- std over the seeds beside its best-validation seed's own numbers.

Quality columns are the trial's own test-split numbers; cost columns
come from ``analysis.profile``, measured after training, one model at a time, the same way for every
model, and cached on the profiled run so a report can be rebuilt without timing again.
"""

from __future__ import annotations

import contextlib
import gc
import json
import multiprocessing
import tempfile
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from operator import attrgetter
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from analysis import mlflow_compat
from analysis.profile import NOT_APPLICABLE, Profile, device_name, profile_model
from analysis.significance import (
    ACC_CI_HIGH,
    ACC_CI_LOW,
    F1_CI_HIGH,
    F1_CI_LOW,
    MCNEMAR_P,
    TIED,
    VS_TOP,
    Versus,
)
from trainables import metrics as M
from trainables.config import BASELINE_FAMILY, CLIP_BASELINES, HOG_SVM, is_baseline
from trainables.contracts import BEST_MODEL_ARTIFACT, FAMILY_PARAM, load_best_model
from trainables.latency import LATENCY_MIN_SECONDS
from trainables.models import build_model, load_model

ROW_MODES = {
    "arch": "one row per architecture: its trial with the best validation accuracy",
    "config": "one row per configuration of the searched parameters: its trial with the best validation accuracy",
    "trial": "one row per finished trial",
}
# Table keys -> column headers, units included. Quality metrics are shown in percent. FLOPs count a
# multiply-add as 2; timm and torchvision publish MACs under the name "GFLOPs" (half of our GFLOPs).
# An interval's low and high keys are shown as one column, "low-high", under the low key's header.
COLUMNS = {
    "arch": "architecture",
    FAMILY_PARAM: "family",
    "trials": "trials",
    "seeds": "seeds",
    "freeze": "freeze",
    "augment": "augment",
    "lr": "lr (head)",
    M.BEST_VAL_ACC: "val acc (%)",
    "val_acc_mean": "val acc over seeds, mean ± std (%)",
    "val_acc_std": "val acc std (%)",
    M.TEST_ACC: "test acc (%)",
    "test_acc_mean": "test acc over seeds, mean ± std (%)",
    "test_acc_std": "test acc std (%)",
    ACC_CI_LOW: "test acc 95% CI (%, Wilson)",
    ACC_CI_HIGH: "test acc 95% CI high (%)",
    MCNEMAR_P: "McNemar p vs top",
    VS_TOP: "vs top (5%)",
    M.TEST_TOP5: "test top-5 acc (%)",
    M.TEST_F1: "test macro-F1 (%)",
    "test_f1_mean": "test macro-F1 over seeds, mean ± std (%)",
    "test_f1_std": "test macro-F1 std (%)",
    F1_CI_LOW: "test macro-F1 95% CI (%, bootstrap)",
    F1_CI_HIGH: "test macro-F1 95% CI high (%)",
    M.TEST_PRECISION: "test macro-precision (%)",
    M.TEST_RECALL: "test macro-recall (%)",
    "params_m": "params (M)",
    "gflops": "GFLOPs (1 MAC = 2 FLOPs)",
    "gmacs": "GMACs",
    "input_size": "input (px)",
    "latency_ms": "latency b1 median (ms)",
    "latency_p90_ms": "latency b1 p90 (ms)",
    "onnx_latency_ms": "ONNX Runtime CPU latency b1 median (ms)",
    "throughput_ips": "throughput (img/s)",
    "size_mb": "size on disk (MB)",
    M.TRAIN_TIME: "train time (s)",
    M.EPOCHS_RUN: "epochs run",
    M.BEST_EPOCH: "best epoch",
    "run_id": "MLflow run",
}
PERCENT = (M.BEST_VAL_ACC, M.TEST_ACC, M.TEST_TOP5, M.TEST_F1, M.TEST_PRECISION, M.TEST_RECALL)
INTERVALS = ((ACC_CI_LOW, ACC_CI_HIGH), (F1_CI_LOW, F1_CI_HIGH))
# Over a configuration's seeds (its search trial and its confirmation trials): metric -> (mean, std) keys,
# shown as one column 'mean ± std' under the mean key's header; empty for a configuration of one seed.
SPREADS = {M.BEST_VAL_ACC: ("val_acc_mean", "val_acc_std"), M.TEST_ACC: ("test_acc_mean", "test_acc_std")}
SPREADS[M.TEST_F1] = ("test_f1_mean", "test_f1_std")
PROFILE_COLUMNS = (
    "params_m",
    "gflops",
    "gmacs",
    "latency_ms",
    "latency_p90_ms",
    "onnx_latency_ms",
    "throughput_ips",
    "size_mb",
)
PROFILE_TAG = "profile"  # the run's Profile as JSON: the cost columns and the machine they were measured on


RUN_INFO = ("run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time")  # RunRows.info's


def sweep_runs(experiment_id: str, parent_run_id: str) -> pd.DataFrame:
    """All child runs of one sweep, one row each, newest first, in ``mlflow.search_runs``' columns and values
    (run_id, status, start_time, ..., metrics.*, params.*, tags.*). From a SQL store, read as plain rows
    (``analysis.mlflow_compat``): MLflow's search makes two objects of every parameter, tag and metric, most
    of the report's time over thousands of runs; from a tracking server, by MLflow's search, page by page."""
    with _collector_paused():
        return runs_frame(_child_rows(experiment_id, parent_run_id))


def _child_rows(experiment_id: str, parent_run_id: str) -> mlflow_compat.RunRows:
    rows = mlflow_compat.child_runs(experiment_id, parent_run_id)
    if rows is None:
        found = mlflow.search_runs(
            experiment_ids=[experiment_id],
            filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'",
            max_results=100_000,
            output_format="list",  # the DataFrame is built below, a column at a time
        )
        rows = mlflow_compat.RunRows(
            info=[attrgetter(*RUN_INFO)(r.info) for r in found],
            metrics=[(r.info.run_id, *kv) for r in found for kv in r.data.metrics.items()],
            params=[(r.info.run_id, *kv) for r in found for kv in r.data.params.items()],
            tags=[(r.info.run_id, *kv) for r in found for kv in r.data.tags.items()],
        )
    return rows


@contextlib.contextmanager
def _collector_paused():
    """Python's cycle collector off while a sweep's rows are made: it runs every 700 new objects and walks
    the growing pile again and again, half of reading 10,000 runs (2.1 s against 1.1 s). Rows make no cycles."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def runs_frame(rows: mlflow_compat.RunRows) -> pd.DataFrame:
    """``mlflow.search_runs``' DataFrame of these runs: a row per run; times as UTC timestamps; a column per
    metric (NaN where a run has none), parameter and tag (None where it has none)."""
    at = {info[0]: i for i, info in enumerate(rows.info)}
    info = zip(*rows.info, strict=True) if at else ([] for _ in RUN_INFO)
    data: dict = {k: list(v) for k, v in zip(RUN_INFO, info, strict=True)}
    for key in ("start_time", "end_time"):
        if any(t is not None for t in data[key]):  # search_runs leaves a column of only None as it is
            data[key] = pd.to_datetime(data[key], unit="ms", utc=True)
    for kind, triples, missing in (("metrics", rows.metrics, np.nan), ("params", rows.params, None),
                                   ("tags", rows.tags, None)):  # fmt: skip
        columns: dict[str, list] = {}
        for run_id, key, value in triples:
            if (i := at.get(run_id)) is None:  # a run that started after the runs were read
                continue
            if key not in columns:
                columns[key] = [missing] * len(at)
            columns[key][i] = value
        data.update((f"{kind}.{key}", columns[key]) for key in sorted(columns))
    return pd.DataFrame(data)


def finished(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished runs with a validation result, oldest first (ties then go to the earlier run)."""
    col = f"metrics.{M.BEST_VAL_ACC}"
    if runs.empty or col not in runs:
        return runs.iloc[0:0]
    return runs[(runs["status"] == "FINISHED") & runs[col].notna()].sort_values("start_time")


def select_rows(runs: pd.DataFrame, rows: str = "arch", searched: list[str] | None = None) -> pd.DataFrame:
    """The runs that make the table, best first, with a ``trials`` column (how many finished trials each
    row stands for), ``seeds`` (how many different seeds its configuration's finished runs have) and the mean and std of
    ``SPREADS`` over them. A confirmed configuration (more than one seed) ranks by its mean validation
    accuracy, ahead of single-seed ones, and its row is its best-validation run; others rank by their own
    validation accuracy. ``searched``: the parameters that define a configuration; by default every trial
    parameter but the seed that differs between runs."""
    if rows not in ROW_MODES:
        raise ValueError(f"rows: {rows!r} is not one of {', '.join(ROW_MODES)}")
    col = f"metrics.{M.BEST_VAL_ACC}"
    done = finished(runs)
    if done.empty:
        return done.assign(trials=pd.Series(dtype=int), seeds=pd.Series(dtype=int))
    if rows == "trial":
        return done.assign(trials=1, seeds=1).sort_values(col, ascending=False, kind="stable")
    done = _with_seeds(done, _config_keys(done, searched))
    keys = ["params.arch"] if rows == "arch" else _config_keys(done, searched)
    groups = done.fillna({k: "" for k in keys}).groupby(keys, sort=False)
    done = done.assign(trials=groups[col].transform("size"), _confirmed=done["seeds"] > 1)
    done["_rank"] = done[SPREADS[M.BEST_VAL_ACC][0]].where(done["_confirmed"], done[col])
    ranked = done.sort_values(["_confirmed", "_rank", col], ascending=False, kind="stable")
    best = ranked.fillna({k: "" for k in keys}).groupby(keys, sort=False).head(1)
    return ranked.loc[best.index].drop(columns=["_confirmed", "_rank"])


def _with_seeds(done: pd.DataFrame, config_keys: list[str]) -> pd.DataFrame:
    """``done`` with each run's configuration's ``seeds`` (how many different seeds its finished runs have) and
    the ``SPREADS`` means and stds over those runs (NaN for one seed)."""
    groups = done.fillna({k: "" for k in config_keys}).groupby(config_keys, sort=False)
    seeds = groups["params.seed"].transform("nunique") if "params.seed" in done else pd.Series(1, index=done.index)
    out = done.assign(seeds=seeds)
    for metric, (mean, std) in SPREADS.items():
        column = groups[f"metrics.{metric}"] if f"metrics.{metric}" in done else None
        out[mean] = column.transform("mean").where(seeds > 1) if column is not None else float("nan")
        out[std] = column.transform("std").where(seeds > 1) if column is not None else float("nan")
    return out


def _config_keys(done: pd.DataFrame, searched: list[str] | None) -> list[str]:
    if searched is not None:
        return [f"params.{k}" for k in searched if f"params.{k}" in done] or ["params.arch"]
    varying = [c for c in done if c.startswith("params.") and c != "params.seed" and done[c].nunique(dropna=False) > 1]
    return varying or ["params.arch"]


def profiles(
    table_runs: pd.DataFrame,
    all_runs: pd.DataFrame,
    device: str = "cpu",
    reprofile: bool = False,
    progress: Callable[[str], None] = print,
    shape_of: Callable[[pd.Series], tuple[str, int, int]] | None = None,
    measure: Callable[[tuple[str, int, int], str, float], Profile] | None = None,
    timing_s: float = LATENCY_MIN_SECONDS,
) -> dict[str, Profile]:
    """run_id -> Profile for every row. One profile per (architecture, classes, input size): weights do
    not change parameters, FLOPs, size or timings, so a fresh model of the trained shape measures the
    same thing. A profile cached on any run of the sweep, measured on this device, is reused unless
    ``reprofile``; new ones are measured one model at a time, in a fresh process, and cached on the
    row's run. A cached profile timed for less than ``timing_s`` seconds (a smoke test's) is measured
    again. ``shape_of`` (a run's shape) and ``measure`` (a module-level function) default to
    classification's timm models; the detection report passes YOLO's."""
    _shape = shape_of or _classifier_shape
    here = device_name(device)
    cached: dict[tuple, Profile] = {}
    if not reprofile and f"tags.{PROFILE_TAG}" in all_runs:
        for _, run in all_runs[all_runs[f"tags.{PROFILE_TAG}"].notna()].iterrows():
            try:
                prof = Profile(**json.loads(run[f"tags.{PROFILE_TAG}"]))
            except (TypeError, ValueError):  # written by another version of Profile: measure again
                continue
            if prof.device == here and prof.timing_s >= timing_s:
                cached.setdefault(_shape(run), prof)
    todo = {_shape(run): run["run_id"] for _, run in table_runs.iterrows() if _shape(run) not in cached}
    if todo:
        progress(f"profiling {', '.join(f'{k[0]} at {k[2]} px' for k in todo)} on {here}, one at a time")
        client = mlflow.MlflowClient()
        with tempfile.TemporaryDirectory() as d:
            jobs = [_fitted(key, Path(d), client) for key in todo]
            for key, prof in zip(todo, measure_apart(jobs, device, measure, timing_s), strict=True):
                cached[key] = prof
                log_profile(client, todo[key], prof)
    return {run["run_id"]: cached[_shape(run)] for _, run in table_runs.iterrows()}


def measure_apart(
    shapes: list[tuple], device: str, measure=None, timing_s: float = LATENCY_MIN_SECONDS
) -> list[Profile]:
    """Profiles measured in a fresh Python process, one model after the other. Not in this one: after
    a sweep, the driver still carries Ray Tune's and MLflow's threads, and the same model timed there
    ran up to 3x slower than in a fresh process on an idle machine (BENCHMARKS.md). ``measure``: a
    module-level function (shape, device, timing_s) -> Profile; default: a timm classifier of that shape."""
    ctx = multiprocessing.get_context("spawn")  # not fork: nothing of this process's threads or state
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        n = len(shapes)
        return list(pool.map(measure or _measure, shapes, [device] * n, [timing_s] * n))


def _measure(shape: tuple, device: str, timing_s: float) -> Profile:
    """(arch, classes, input size[, its best_model.pt]): a fresh model of that shape, or the fitted one."""
    arch, num_classes, size, *fitted = shape
    if fitted:
        model = load_model(arch, num_classes, size, load_best_model(fitted[0])["model"])
    else:
        model = build_model(arch, num_classes, size)
    with torch.no_grad():
        return profile_model(model, size, device, timing_s=timing_s)


def _classifier_shape(run: pd.Series) -> tuple:
    """What a classifier's cost depends on: a network's architecture, classes and input size (its weights
    change no cost), and for a baseline also its run (how many support vectors it kept)."""
    shape = (run["params.arch"], int(run["params.num_classes"]), int(run["params.input_size"]))
    return (*shape, run["run_id"]) if is_baseline(shape[0]) else shape


def _fitted(shape: tuple, directory: Path, client: mlflow.MlflowClient) -> tuple:
    """A baseline's shape with its run replaced by its downloaded best model, for ``_measure``."""
    if len(shape) < 4:
        return shape
    *head, run_id = shape
    path = client.download_artifacts(run_id, BEST_MODEL_ARTIFACT, str(directory / run_id))
    return (*head, path)


def log_profile(client: mlflow.MlflowClient, run_id: str, prof: Profile) -> None:
    """On the run: the profile as a tag (read back by the next report) and its numbers as metrics (to
    sort and chart in the MLflow UI)."""
    client.set_tag(run_id, PROFILE_TAG, json.dumps(prof.as_dict()))
    for key, value in _cost(prof).items():
        client.log_metric(run_id, f"profile_{key}", value)


def _cost(prof: Profile) -> dict[str, float]:
    return {
        "params_m": prof.params / 1e6,
        "gflops": float("nan") if prof.flops is None else prof.flops / 1e9,
        "gmacs": float("nan") if prof.macs is None else prof.macs / 1e9,
        "latency_ms": prof.latency_ms_median,
        "latency_p90_ms": prof.latency_ms_p90,
        "onnx_latency_ms": float("nan") if prof.onnx_latency_ms_median is None else prof.onnx_latency_ms_median,
        "throughput_ips": prof.throughput_ips,
        "size_mb": prof.size_mb,
    }


def _row(run: pd.Series, prof: Profile | None, versus: Versus | None) -> dict:
    row: dict = {k: run.get(f"params.{k}") for k in ("arch", FAMILY_PARAM, "freeze", "augment")}
    row.update({k: "-" for k in ("freeze", "augment") if pd.isna(row[k])})  # a baseline has neither
    if isinstance(clip := run.get("params.clip_model"), str):  # which CLIP, and whether its weights mean anything
        weights = run.get("params.clip_pretrained")
        row["arch"] = f"{row['arch']} ({Path(clip).stem}, {'random weights' if weights == 'none' else weights})"
    row["trials"] = int(run["trials"])
    row["seeds"] = int(run.get("seeds", 1))
    for mean, std in SPREADS.values():
        row[mean], row[std] = run.get(mean, float("nan")), run.get(std, float("nan"))
    row["lr"] = float(run.get("params.lr") or "nan")  # a baseline has none
    for m in (M.BEST_VAL_ACC, M.TEST_ACC, M.TEST_TOP5, M.TEST_F1, M.TEST_PRECISION, M.TEST_RECALL, M.TRAIN_TIME):
        row[m] = run.get(f"metrics.{m}", float("nan"))
    row["input_size"] = int(run["params.input_size"])
    row[M.EPOCHS_RUN] = int(run.get(f"metrics.{M.EPOCHS_RUN}", 0) or 0)
    row[M.BEST_EPOCH] = int(run[f"metrics.{M.BEST_EPOCH}"])
    if prof is not None:
        row.update(_cost(prof))
        if prof.flops is None:  # says so, rather than a count of the torch part only
            row["gflops"] = row["gmacs"] = NOT_APPLICABLE
        if prof.onnx_note.startswith(NOT_APPLICABLE):
            row["onnx_latency_ms"] = NOT_APPLICABLE
    row.update(versus.cells.get(run["run_id"], {}) if versus is not None else {})
    row["run_id"] = run["run_id"]
    return row


def comparison_table(
    table_runs: pd.DataFrame, profs: dict[str, Profile] | None, versus: Versus | None = None
) -> pd.DataFrame:
    """One row per selected run; columns: ``COLUMNS`` keys, without the cost columns when not profiled
    and without top-5 when the task has 5 classes or fewer. ``versus``: the intervals and the tests
    against the top row (``analysis.significance.against_top``); without it, or for a row it lacks,
    those cells are empty."""
    rows = [_row(run, (profs or {}).get(run["run_id"]), versus) for _, run in table_runs.iterrows()]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    drop = [] if profs is not None else list(PROFILE_COLUMNS)
    if table[M.TEST_TOP5].isna().all():
        drop.append(M.TEST_TOP5)
    return table.drop(columns=drop)


def shown(table: pd.DataFrame) -> pd.DataFrame:
    """The table as people read it: quality in percent, intervals as 'low-high', headers with their units."""
    out = table.copy()
    for c in PERCENT:
        if c in out:
            out[c] = 100 * out[c]
    for low, high in INTERVALS:
        if low in out:
            out[low] = [_interval(lo, hi) for lo, hi in zip(out[low], out.pop(high), strict=True)]
    for mean, std in SPREADS.values():
        if mean in out:
            out[mean] = [_spread(m, s) for m, s in zip(out[mean], out.pop(std), strict=True)]
    return out.rename(columns=COLUMNS)


def _spread(mean: float, std: float) -> str:
    """A fraction's mean and std over seeds in percent: '96.3 ± 0.4'; '' for one seed."""
    return "" if pd.isna(mean) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def _interval(low: float, high: float) -> str:
    """A fraction's interval in percent, one decimal: '96.3-98.9'; '' where there is none."""
    return "" if pd.isna(low) else f"{100 * low:.1f}-{100 * high:.1f}"


# TrialConfig fields that do not change what a model learns: left out of the recipe note
NOT_RECIPE = ("arch", "num_workers")
# How each baseline sees its images, beside its settings in the recipe note.
BASELINE_HOW = {
    HOG_SVM: ", no augmentation, images resized to img_size with pixels in [0, 1]; svm_gamma None = scikit-learn's "
    "'scale'",
    **dict.fromkeys(CLIP_BASELINES, ", no augmentation, CLIP's own input size and preprocessing (open_clip's)"),
}


def recipe_note(table_runs: pd.DataFrame) -> str:
    """The training recipe of the table's rows, read from their runs' parameters: the values every network
    row shares, then each value that differs, row by row, so a reader can check that the comparison was
    fair; then each baseline's own settings. A parameter a run does not have (a conditional one, or a field
    newer than the run) is '-'."""
    import dataclasses

    from trainables.config import TrialConfig

    if table_runs.empty:
        return ""
    fields = [f.name for f in dataclasses.fields(TrialConfig) if f.name not in NOT_RECIPE]
    base = table_runs[f"params.{FAMILY_PARAM}"] == BASELINE_FAMILY
    nets, text = table_runs[~base], ""
    if not nets.empty:
        shared, differ = [], []
        for name in fields:
            values = [_param(run.get(f"params.{name}")) for _, run in nets.iterrows()]
            if len(set(values)) == 1:
                if values[0] != "-":
                    shared.append(f"{name} {values[0]}")
            else:
                rows = zip(nets["params.arch"], values, strict=True)
                differ.append(f"{name} ({', '.join(f'{arch} {v}' for arch, v in rows)})")
        text = (
            "Recipe, from each row's run parameters: every network row trained with "
            + (", ".join(shared) or "-")
            + " (AdamW, linear warm-up then cosine to 0, cross-entropy; each model's own interpolation and mean/std)."
        )
        if differ:
            text += " Differing between rows: " + "; ".join(differ) + "."
    for _, run in table_runs[base].iterrows():
        settings = [f"{n} {v}" for n in fields if n != "max_epochs" and (v := _param(run.get(f"params.{n}"))) != "-"]
        how = BASELINE_HOW.get(run["params.arch"], "")
        text += f" Baseline {run['params.arch']}: {', '.join(settings)} (fitted once on the training split{how})."
    return text.strip()


def seeds_note(table_runs: pd.DataFrame) -> str:
    """What the seed columns mean, when a row of the table is a confirmed configuration."""
    confirmed = int((table_runs["seeds"] > 1).sum()) if "seeds" in table_runs else 0
    if not confirmed:
        return ""
    return (
        f"Seeds: {confirmed} row(s) are configurations the sweep trained again with further seeds (new "
        "initialisation and data order, the same split); their 'over seeds' columns are the mean ± sample std over "
        "all their finished runs ('seeds'), they rank first, by mean validation accuracy, and their other columns "
        "are those of their best-validation seed, whose model is the row's."
    )


def _param(v) -> str:
    """A run parameter as the note shows it: numbers in their shortest form, missing ones '-'."""
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    try:
        return f"{float(v):g}"
    except ValueError:
        return str(v)


def validation_text(row: pd.Series) -> str:
    """What ranked a table row, in words: its validation accuracy, or for a confirmed configuration the mean
    over its seeds."""
    mean = row.get(SPREADS[M.BEST_VAL_ACC][0])
    if row.get("seeds", 1) > 1 and mean is not None and not pd.isna(mean):
        return f"{100 * mean:.1f}% validation, mean of {row['seeds']} seeds"
    return f"{100 * row[M.BEST_VAL_ACC]:.1f}% validation"


def baseline_verdict(table: pd.DataFrame) -> str:
    """What the baselines' rows say before anyone pays for a sweep over networks: whether one is the top
    row, or which are not distinguishable from it on the test split; empty without baselines and networks."""
    is_base = table[FAMILY_PARAM] == BASELINE_FAMILY
    if not is_base.any() or is_base.all():
        return ""
    top, net = table.iloc[0], table[~is_base].iloc[0]

    def p_of(row: pd.Series) -> str:
        p = row.get(MCNEMAR_P)
        return "" if p is None or pd.isna(p) else f", McNemar p = {p:.2g}"

    if is_base.iloc[0]:
        return (
            f"A baseline is the top row: {top['arch']} ({validation_text(top)}; {100 * top[M.TEST_ACC]:.1f}% "
            f"test) ranks ahead of every network on validation; the best network, {net['arch']} "
            f"({validation_text(net)}), is {net.get(VS_TOP) or 'not compared'} on the test split{p_of(net)}."
        )
    said = []
    for _, row in table[is_base].iterrows():
        verdict = row.get(VS_TOP) or "not compared"
        said.append(f"{row['arch']} ({100 * row[M.TEST_ACC]:.1f}% test) is {verdict} on the test split{p_of(row)}")
    ties = (
        " A baseline tied with the top row: a network is not shown to be worth its cost here."
        if any(row.get(VS_TOP) == TIED for _, row in table[is_base].iterrows())
        else ""
    )
    return f"Baselines against the top row ({top['arch']}): " + "; ".join(said) + "." + ties


def method_note(prof: Profile | None, outside: list[str] | None = None) -> str:
    """How the numbers were obtained, written beside every table. ``prof``: a network's profile where the
    table has one; ``outside``: the baselines' reasons FLOPs and ONNX do not apply to them."""
    from analysis.export import OPSET
    from trainables.latency import LATENCY_MIN_REPEATS, LATENCY_WARMUP

    text = (
        "Quality: the row's trial at its best-validation epoch, predicted on the held-out test split "
        "(never used for any choice); macro = every class weighs the same (scikit-learn). "
    )
    if prof is None:
        return text + "Not profiled."
    return text + (
        f"Cost: FLOPs counted from one real forward pass of one image at the trained input size "
        f"(torch.utils.flop_counter: convolutions, matmuls, attention), 1 multiply-add = 2 FLOPs, so GMACs "
        f'are what torchvision and timm publish as "GFLOPs". Size: the float32 state dict as torch.save '
        f"writes it. Timings after all trials ended, one model at a time, eval + inference mode, "
        f"{prof.dtype}: latency at batch 1 ({LATENCY_WARMUP} warm-up runs, then at least "
        f"{LATENCY_MIN_REPEATS} runs and {prof.timing_s:g} s), throughput at batch {prof.batch_size}; "
        f"on {prof.device}, {prof.threads} torch threads, torch {prof.torch_version}. "
        + (
            f"ONNX Runtime: the same model exported by timm's onnx_export (torch.onnx, opset {OPSET}), ONNX Runtime "
            f"{prof.onnxruntime_version} on the CPU with {prof.threads} intra-op threads, batch 1, timed the same way."
            if prof.onnx_latency_ms_median is not None
            else f"ONNX Runtime: {prof.onnx_note}."
        )
        + "".join(f" {NOT_APPLICABLE} (GFLOPs, GMACs, ONNX Runtime): {why}." for why in outside or ())
    )
