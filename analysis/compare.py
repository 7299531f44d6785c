"""The model-comparison table of a sweep: one row per architecture, its best trial by validation.

Reads the sweep's child runs back from MLflow (it needs no Ray), then profiles each winning
architecture on this machine: parameters, FLOPs at the trained input size, batch-1 latency.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import pandas as pd
import torch
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from analysis.profile import Profile, profile_model
from trainables import metrics as M
from trainables.latency import LATENCY_MIN_REPEATS, LATENCY_MIN_SECONDS, LATENCY_WARMUP
from trainables.models import build_model

# Column headers carry their units. FLOPs count a multiply-add as 2; timm and torchvision publish MACs
# under the name "GFLOPs", which is half of this number.
COLUMNS = {
    "family": "family",
    "arch": "architecture",
    "freeze": "freeze",
    "augment": "augment",
    "lr": "lr",
    "epochs_run": "epochs run",
    M.BEST_EPOCH: "best epoch",
    M.BEST_VAL_ACC: "val acc",
    M.TEST_ACC: "test acc",
    M.TEST_F1: "test macro-F1",
    M.TEST_PRECISION: "test macro-precision",
    M.TEST_RECALL: "test macro-recall",
    "params_m": "params (M)",
    "gflops": "GFLOPs (2/MAC)",
    "input_size": "input (px)",
    "latency_ms": "latency b1 median (ms)",
    "latency_p90_ms": "latency b1 p90 (ms)",
    "run_id": "MLflow run",
}


def sweep_runs(experiment_id: str, parent_run_id: str) -> pd.DataFrame:
    """All child runs of one sweep, one row each, as MLflow returns them (params.*, metrics.*, tags.*)."""
    return mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'",
        max_results=100_000,
    )


def best_per_arch(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished run with the highest best validation accuracy, per architecture. Selection never
    looks at test metrics; ties go to the earlier run."""
    col = f"metrics.{M.BEST_VAL_ACC}"
    if runs.empty or col not in runs:
        return runs.iloc[0:0]
    done = runs[(runs["status"] == "FINISHED") & runs[col].notna()].sort_values("start_time")
    idx = done.groupby("params.arch")[col].idxmax()
    return done.loc[idx].sort_values(col, ascending=False)


def _row(run: pd.Series, prof: Profile | None) -> dict:
    row = {k: run.get(f"params.{k}") for k in ("family", "arch", "freeze", "augment")}
    row["lr"] = float(run["params.lr"])
    row["epochs_run"] = int(run.get("metrics.epochs_run", float("nan")))
    for m in (M.BEST_EPOCH, M.BEST_VAL_ACC, *M.TEST_METRICS):
        row[m] = run.get(f"metrics.{m}")
    row[M.BEST_EPOCH] = int(row[M.BEST_EPOCH])
    row["input_size"] = int(run["params.input_size"])
    if prof is not None:
        row.update(
            params_m=prof.params / 1e6,
            gflops=prof.flops / 1e9,
            latency_ms=prof.latency_ms_median,
            latency_p90_ms=prof.latency_ms_p90,
        )
    row["run_id"] = run["run_id"]
    return row


def comparison_table(
    experiment_id: str, parent_run_id: str, profile: bool = True, device: str = "cpu"
) -> tuple[pd.DataFrame, Profile | None]:
    """(table, the last profile, for its device/threads/version facts). Columns: ``COLUMNS`` keys."""
    best = best_per_arch(sweep_runs(experiment_id, parent_run_id))
    rows, prof = [], None
    for _, run in best.iterrows():
        if profile:
            # Weights do not change parameter count, FLOPs or latency: a fresh model of the trained
            # architecture, head size and input size measures the same thing without a checkpoint.
            model = build_model(run["params.arch"], int(run["params.num_classes"]), int(run["params.input_size"]))
            with torch.no_grad():
                prof = profile_model(model, int(run["params.input_size"]), device)
        rows.append(_row(run, prof))
    return pd.DataFrame(rows, columns=[c for c in COLUMNS if profile or c not in _PROFILE_COLS]), prof


_PROFILE_COLS = {"params_m", "gflops", "latency_ms", "latency_p90_ms"}


def to_markdown(table: pd.DataFrame, prof: Profile | None, title: str) -> str:
    shown = table.rename(columns=COLUMNS)
    lines = [f"# {title}", ""]
    if table.empty:
        lines.append("No finished trial reported a validation accuracy: nothing to compare.")
        return "\n".join(lines) + "\n"
    lines.append(shown.to_markdown(index=False, floatfmt=".4g"))
    lines.append("")
    lines.append(
        "One row per architecture: its trial with the best validation accuracy (test metrics are those of "
        "that trial's best-validation epoch, on the held-out test split; macro = every class weighs the same)."
    )
    if prof is not None:
        lines.append(
            f"FLOPs: one forward pass of one image at the trained input size, multiply-add = 2 FLOPs "
            f"(torch.utils.flop_counter). Latency: batch 1, eval + inference mode, "
            f"{LATENCY_WARMUP} warm-up runs, then timed runs until at least {LATENCY_MIN_REPEATS} runs and "
            f"{LATENCY_MIN_SECONDS:g} s, one model at a time after all trials ended, "
            f"on {prof.device}, {prof.threads} torch threads, "
            f"torch {prof.torch_version}, float32."
        )
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, prof: Profile | None, out_dir: Path, title: str) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    md, csv = out_dir / "comparison.md", out_dir / "comparison.csv"
    md.write_text(to_markdown(table, prof, title))
    table.rename(columns=COLUMNS).to_csv(csv, index=False)
    return md, csv
