"""The comparison report of a detection sweep (``sweeps/detect.py``): one row per YOLO model, its trial
with the best validation mAP50-95; quality from that trial's best epoch on the test split; cost
measured as for classification (``analysis.profile``: parameters, FLOPs, size, batch-1 latency and
throughput, after the trials, one model at a time, in a fresh process, cached on the run).

Written by every detection sweep at its end; ``python -m analysis.report --experiment detect-shapes``
rebuilds it (the parent run's ``task`` tag says which report a sweep gets).
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import pandas as pd
import torch
from mlflow.entities import Run

from analysis.compare import _cost, profiles, sweep_runs
from analysis.profile import Profile, profile_model
from analysis.report_parts import (
    CSS,
    SORT_SCRIPT,
    Report,
    data_source,
    fate_line,
    fmt,
    log_report,
    search_space,
    sortable_table,
    sweep_title,
    trial_fate,
    trials_planned,
)
from trainables import metrics as M
from trainables.contracts import FAMILY_PARAM
from trainables.latency import LATENCY_MIN_SECONDS

SELECT = "best_val_mAP50_95"  # rows are chosen on validation; test numbers never choose anything
COLUMNS = {
    "model": "model",
    FAMILY_PARAM: "family",
    "trials": "trials",
    "imgsz": "input (px)",
    "optimizer": "optimizer",
    "augment": "augment",
    "lr0": "lr0",
    SELECT: "val mAP50-95 (%)",
    "test_mAP50": "test mAP50 (%)",
    "test_mAP50_95": "test mAP50-95 (%)",
    "test_precision": "test precision (%)",
    "test_recall": "test recall (%)",
    "params_m": "params (M)",
    "gflops": "GFLOPs (1 MAC = 2 FLOPs)",
    "latency_ms": "latency b1 median (ms)",
    "latency_p90_ms": "latency b1 p90 (ms)",
    "throughput_ips": "throughput (img/s)",
    "size_mb": "size on disk (MB)",
    "train_time_s": "train time (s)",
    M.EPOCHS_RUN: "epochs run",
    "best_epoch": "best epoch",
    "run_id": "MLflow run",
}
PERCENT = (SELECT, "test_mAP50", "test_mAP50_95", "test_precision", "test_recall")
COST = ("params_m", "gflops", "latency_ms", "latency_p90_ms", "throughput_ips", "size_mb")
# The best value of these columns is marked in the HTML table: higher is better, or lower is.
BEST = {
    **{COLUMNS[k]: "max" for k in (*PERCENT, "throughput_ips")},
    **{COLUMNS[k]: "min" for k in ("params_m", "gflops", "latency_ms", "latency_p90_ms", "size_mb", "train_time_s")},
}


def finished_detections(runs: pd.DataFrame) -> pd.DataFrame:
    """Finished runs with a validation mAP, oldest first."""
    col = f"metrics.{SELECT}"
    if runs.empty or col not in runs:
        return runs.iloc[0:0]
    return runs[(runs["status"] == "FINISHED") & runs[col].notna()].sort_values("start_time")


def best_per_model(runs: pd.DataFrame) -> pd.DataFrame:
    """Each model's finished trial with the best validation mAP50-95 (ties: the earlier run), best first."""
    col = f"metrics.{SELECT}"
    done = finished_detections(runs)
    if done.empty:
        return done.assign(trials=pd.Series(dtype=int))
    groups = done.groupby("params.model", sort=False)
    best = done.loc[groups[col].idxmax()].assign(trials=groups.size().to_numpy())
    return best.sort_values(col, ascending=False, kind="stable")


def _shape(run: pd.Series) -> tuple[str, int, int]:
    return run["params.model"], int(run["params.num_classes"]), int(run["params.imgsz"])


def _measure(shape: tuple[str, int, int], device: str, timing_s: float) -> Profile:
    """A YOLO model of the trained shape (weights do not change any cost column): the network's
    forward pass, without non-maximum suppression."""
    from trainables.detection import load_ultralytics

    load_ultralytics()  # offline, and without its OMP_NUM_THREADS=1
    from ultralytics.nn.tasks import DetectionModel

    model_name, num_classes, size = shape
    model = DetectionModel(f"{model_name}.yaml", nc=num_classes, verbose=False)
    model.fuse(verbose=False)  # conv + batch-norm folded, as Ultralytics deploys it
    with torch.no_grad():
        # the ONNX column is classification's, for now
        return profile_model(model, size, device, onnx=False, timing_s=timing_s)


def detection_table(chosen: pd.DataFrame, profs: dict[str, Profile] | None) -> pd.DataFrame:
    rows = []
    for _, run in chosen.iterrows():
        row = {k: run.get(f"params.{k}") for k in ("model", FAMILY_PARAM, "optimizer", "augment")}
        row["trials"] = int(run["trials"])
        row["imgsz"] = int(run["params.imgsz"])
        row["lr0"] = float(run["params.lr0"])
        for m in (*PERCENT, "train_time_s"):
            row[m] = run.get(f"metrics.{m}", float("nan"))
        row[M.EPOCHS_RUN] = int(run.get(f"metrics.{M.EPOCHS_RUN}", 0) or 0)
        row["best_epoch"] = int(run.get("metrics.best_epoch", 0) or 0)
        if profs:
            row.update({k: v for k, v in _cost(profs[run["run_id"]]).items() if k in COST})
        row["run_id"] = run["run_id"]
        rows.append(row)
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if profs or c not in COST])
    return table.dropna(axis=1, how="all") if not table.empty else table


def shown(table: pd.DataFrame) -> pd.DataFrame:
    out = table.copy()
    for c in PERCENT:
        if c in out:
            out[c] = out[c] * 100
    return out.rename(columns=COLUMNS)


def method_note(prof: Profile | None) -> str:
    note = (
        "Rows: each model's trial with the best validation mAP50-95 (Ultralytics' COCO-style mAP over IoU "
        "0.50:0.95; mAP50 at IoU 0.50). Test columns: that trial's best epoch on the test split, evaluated "
        "when the epoch was best on validation and never used for any choice."
    )
    if prof is None:
        return note + " Not profiled."
    return note + (
        f" Cost: the network's forward pass (conv and batch-norm fused, no NMS), float32, on {prof.device}, "
        f"torch {prof.torch_version}; latency at batch 1 (median and p90 of >= {prof.latency_repeats} runs "
        f"and >= {prof.timing_s:g} s after warm-up), throughput at batch {prof.batch_size}; "
        "FLOPs by torch.utils.flop_counter."
    )


def build_detection_report(
    experiment_id: str,
    parent: Run,
    out_dir: Path,
    device: str = "cpu",
    profile: bool = True,
    log: bool = True,
    progress=print,
    timing_s: float = LATENCY_MIN_SECONDS,
) -> Report:
    """report.md, comparison.csv and a self-contained report.html in ``out_dir``; logged to the parent
    run under report/ when ``log``. Each timing of a model runs at least ``timing_s`` seconds."""
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    runs = sweep_runs(experiment_id, parent.info.run_id)
    chosen = best_per_model(runs)
    profs = None
    if profile and not chosen.empty:
        profs = profiles(chosen, runs, device, progress=progress, shape_of=_shape, measure=_measure, timing_s=timing_s)
    table = detection_table(chosen, profs)
    # the method note names the shortest timing: cached rows may have been timed for longer
    prof = min(profs.values(), key=lambda p: p.timing_s) if profs else None
    title = sweep_title(parent, experiment_id)
    fate = fate_line(trial_fate(runs, trials_planned(parent), finished_detections(runs)))
    data = data_source(parent)
    display = shown(table).map(fmt) if not table.empty else shown(table)
    empty = "No finished trial reported a validation mAP: nothing to compare."
    space = search_space(parent)
    md_lines = [f"# Detection comparison: {title}", "", f"Data: {data}. {fate}", ""]
    md_lines += [empty] if table.empty else [display.to_markdown(index=False), "", method_note(prof)]
    md_lines += ["", "## Search space", "", space.to_markdown(index=False), ""]
    md = out_dir / "report.md"
    md.write_text("\n".join(md_lines))
    csv = out_dir / "comparison.csv"
    shown(table).to_csv(csv, index=False)
    e = html.escape
    page = out_dir / "report.html"
    page.write_text(
        "\n".join(
            [
                f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{e(title)}</title>",
                f"<style>{CSS}</style></head><body>",
                f"<h1>Detection comparison: {e(title)}</h1>",
                f"<p>Data: {e(data)}. {e(fate)}</p>",
                f"<p class=note>MLflow parent run <code>{e(parent.info.run_id)}</code>.</p>",
                f"<p class=missing>{e(empty)}</p>"
                if table.empty
                else sortable_table(shown(table), BEST)
                + f"<p class=note>Click a header to sort by it. Bold: the best of a column. {e(method_note(prof))}</p>",
                "<h2>Search space</h2>",
                space.to_html(index=False, border=0),
                f"<script>{SORT_SCRIPT}</script></body></html>",
            ]
        )
    )
    if log:
        log_report(parent, out_dir)
    progress(f"report written in {time.perf_counter() - t0:.1f} s: {page}")
    return Report(md, csv, page, table, prof)
