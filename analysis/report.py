"""The comparison report of one sweep: Markdown, CSV and a self-contained HTML page, from MLflow.

    python -m analysis.report --experiment classify-digits            # the experiment's latest sweep
    python -m analysis.report --experiment classify-digits --sweep sweep-20261123-101500 --rows trial

Contents: the comparison table; test accuracy against latency and against FLOPs with the Pareto front
marked; every row's confusion matrix and learning curves (the files its trial logged); the trials'
fate (finished, stopped early by ASHA, failed); what mattered (the searched settings' importances,
``analysis.importance``); the search space. Every sweep ends by writing it, and
it is logged to the sweep's parent MLflow run under ``report/``.
"""

from __future__ import annotations

import argparse
import base64
import html
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: reports are built on headless machines
import matplotlib.pyplot as plt  # noqa: E402
import mlflow  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.entities import Metric, Run  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.utils.mlflow_tags import (
    MLFLOW_RUN_NOTE,  # noqa: E402
)
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH  # noqa: E402

from analysis.compare import (  # noqa: E402
    COLUMNS,
    ROW_MODES,
    baseline_verdict,
    comparison_table,
    method_note,
    profiles,
    recipe_note,
    seeds_note,
    select_rows,
    shown,
    sweep_runs,
    validation_text,
)
from analysis.importance import importance_chart, importances, parallel_coordinates  # noqa: E402
from analysis.profile import NOT_APPLICABLE  # noqa: E402
from analysis.report_parts import (  # noqa: E402
    CSS,
    SORT_SCRIPT,
    Report,
    data_source,
    fate_line,
    fetch_predictions,
    fmt,
    log_report,
    run_file,
    search_space,
    sortable_table,
    sweep_parents,
    sweep_title,
    trial_fate,
    trials_planned,
)
from analysis.significance import ACC_CI_HIGH, ACC_CI_LOW, VS_TOP, against_top  # noqa: E402
from sweeps.credentials import TRACKING_URI_HELP  # noqa: E402
from sweeps.credentials import shown as shown_uri  # noqa: E402  (analysis.compare's shown is the table's)
from sweeps.tracking import TrackingUnavailable, check_tracking_store, use_tracking_uri  # noqa: E402
from trainables import metrics as M  # noqa: E402
from trainables.config import BASELINE_FAMILY  # noqa: E402
from trainables.contracts import (  # noqa: E402
    DETECT_TASK,
    FAMILY_PARAM,  # noqa: E402
    RECIPE_FILE,
    SEARCHED_PARAM,
    SWEEP_TAG,
    TASK_TAG,
    evidence_path,
)
from trainables.evidence import CONFUSION_PNG, CURVES_PNG, GRADCAM_PNG  # noqa: E402
from trainables.latency import LATENCY_MIN_SECONDS  # noqa: E402

# Per row, the figures its run logged under evidence/: (what the report calls it, file name).
EVIDENCE = (("confusion matrix", CONFUSION_PNG), ("learning curves", CURVES_PNG), ("Grad-CAM", GRADCAM_PNG))
MAX_EVIDENCE_ROWS = 12  # rows whose confusion matrix and curves are shown; every run keeps its own in MLflow
FIGURES = "figures"
PARALLEL_NOTE = (
    "Every finished network search trial as a line through its searched settings to its best validation "
    "accuracy (Optuna's parallel-coordinates plot, coloured by that accuracy)."
)


def find_sweep(experiment: str, sweep: str | None = None) -> tuple[str, Run]:
    """(experiment id, parent run) of the named sweep, or of the experiment's latest one."""
    exp_id, parents = sweep_parents(experiment, sweep, limit=1)
    if not parents:
        what = f"no sweep named {sweep!r}" if sweep else f"no sweep (parent run tagged '{SWEEP_TAG}')"
        raise LookupError(f"--sweep: experiment {experiment!r} has {what}")
    return exp_id, parents[0]


def pareto_front(cost: np.ndarray, quality: np.ndarray) -> np.ndarray:
    """Mask of the points no other point beats: none has lower-or-equal cost and higher-or-equal
    quality with at least one of the two strictly better."""
    cost, quality = np.asarray(cost, dtype=float), np.asarray(quality, dtype=float)
    le, ge = cost[None, :] <= cost[:, None], quality[None, :] >= quality[:, None]
    strict = (cost[None, :] < cost[:, None]) | (quality[None, :] > quality[:, None])
    return ~(le & ge & strict).any(axis=1)


def scatter(table: pd.DataFrame, x: str, xlabel: str, path: Path, title: str) -> Path:
    """Test accuracy against one cost, log-scaled, the Pareto front joined and labelled."""
    table = table[pd.to_numeric(table[x], errors="coerce").notna()]  # "n/a" for a baseline: not a point
    cost, acc = table[x].to_numpy(float), 100 * table[M.TEST_ACC].to_numpy(float)
    front = pareto_front(cost, acc)
    labels = _labels(table)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.scatter(cost[~front], acc[~front], color="0.6", label="dominated")
    order = np.argsort(cost[front])
    ax.step(cost[front][order], acc[front][order], where="post", color="C3", alpha=0.6)
    ax.scatter(cost[front], acc[front], color="C3", zorder=3, label="Pareto front")
    annotate = range(len(table)) if len(table) <= 12 else np.flatnonzero(front)
    for i in annotate:
        ax.annotate(labels[i], (cost[i], acc[i]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set(xscale="log", xlabel=xlabel, ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")  # never on top of a point
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _labels(table: pd.DataFrame) -> list[str]:
    if table["arch"].is_unique:
        return list(table["arch"])
    return [f"{a} {r[:6]}" for a, r in zip(table["arch"], table["run_id"], strict=True)]


def fetch_evidence(table: pd.DataFrame, out: Path, artifact_uris: dict[str, str]) -> dict[str, dict[str, Path | None]]:
    """run_id -> {"confusion matrix"/"learning curves": local copy, or None where the run has none}, for
    the first MAX_EVIDENCE_ROWS rows. ``artifact_uris``: run_id -> the run's artifact URI."""
    found = {}
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # one bar per file drowns the log
    for run_id in table["run_id"].head(MAX_EVIDENCE_ROWS):
        found[run_id] = {}
        for key, name in EVIDENCE:
            target = out / f"{run_id}-{name}"  # one file per run: every run's evidence has the same names
            try:
                shutil.move(run_file(artifact_uris[run_id], evidence_path(name), str(out)), target)
                found[run_id][key] = target
            except MlflowException:  # the run has no such file: said in the report ("not logged")
                found[run_id][key] = None
    return found


def build_report(
    experiment_id: str,
    parent: Run,
    out_dir: Path,
    rows: str = "arch",
    device: str = "cpu",
    reprofile: bool = False,
    profile: bool = True,
    log: bool = True,
    progress=print,
    timing_s: float = LATENCY_MIN_SECONDS,
) -> Report:
    """Write report.md (+ figures/), comparison.csv and report.html into ``out_dir``; log them to the
    parent run under report/ when ``log``. Each timing of a model runs at least ``timing_s`` seconds."""
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = out_dir / FIGURES
    figures.mkdir(exist_ok=True)
    runs = sweep_runs(experiment_id, parent.info.run_id)
    searched = parent.data.params.get(SEARCHED_PARAM)
    chosen = select_rows(runs, rows, searched.split(",") if searched else None)
    profs = None
    if profile and not chosen.empty:
        profs = profiles(chosen, runs, device, reprofile, progress, timing_s=timing_s)
    versus = against_top(chosen, fetch_predictions(chosen) if len(chosen) else {})
    table = comparison_table(chosen, profs, versus)
    # the method note names the shortest timing: cached rows may have been timed for longer
    # (of a network where there is one: a baseline has no FLOPs or ONNX numbers to describe)
    prof = min(profs.values(), key=lambda p: (p.flops is None, p.timing_s)) if profs else None
    outside = sorted(
        {p.onnx_note.removeprefix(f"{NOT_APPLICABLE}: ") for p in (profs or {}).values() if p.flops is None}
    )
    facts = {
        "title": sweep_title(parent, experiment_id),
        "rows": ROW_MODES[rows],
        "fate": trial_fate(runs, trials_planned(parent)),
        "space": search_space(parent),
        "method": " ".join(
            t for t in (method_note(prof, outside), versus.note, recipe_note(chosen), seeds_note(chosen)) if t
        ),
        "parent": parent,
        "data": data_source(parent),
        "baselines": baseline_verdict(table),
    }
    plots = []
    if profs and len(table):
        plots.append(
            scatter(table, "latency_ms", COLUMNS["latency_ms"], figures / "acc_vs_latency.png", "accuracy vs latency")
        )
        plots.append(
            scatter(
                table, "gflops", "GFLOPs per image (1 MAC = 2 FLOPs)", figures / "acc_vs_flops.png", "accuracy vs FLOPs"
            )
        )
    found, facts["importance_note"], facts["parallel_png"] = what_mattered(runs, parent, figures)
    facts["importances"] = found
    facts["importance_png"] = importance_chart(found, figures / "importance.png") if found else None
    if log and found:  # on the sweep's run too, to sort and chart sweeps by in the MLflow UI
        now = int(time.time() * 1000)
        metrics = [Metric(f"importance_{k}", v, now, 0) for k, v in found.items()]
        mlflow.MlflowClient().log_batch(parent.info.run_id, metrics=metrics)
    uris = dict(zip(chosen["run_id"], chosen["artifact_uri"], strict=True))
    evidence = fetch_evidence(table, figures, uris) if len(table) else {}
    csv = out_dir / "comparison.csv"
    shown(table).to_csv(csv, index=False)
    md = out_dir / "report.md"
    md.write_text(to_markdown(table, facts, plots, evidence, out_dir))
    page = out_dir / "report.html"
    page.write_text(to_html(table, facts, plots, evidence))
    if log:
        log_report(parent, out_dir)
        mlflow.MlflowClient().set_tag(parent.info.run_id, MLFLOW_RUN_NOTE, overview(table, facts))
    progress(f"report written in {time.perf_counter() - t0:.1f} s: {page}")
    return Report(md, csv, page, table, prof)


# The columns of the run's description: the answer and its cost, not all of the report's.
OVERVIEW_COLUMNS = (
    "arch", FAMILY_PARAM, "seeds", M.BEST_VAL_ACC, "val_acc_mean", "val_acc_std", M.TEST_ACC, ACC_CI_LOW,
    ACC_CI_HIGH, VS_TOP, M.TEST_F1, "params_m", "gflops", "latency_ms",
)  # fmt: skip


def overview(table: pd.DataFrame, facts: dict) -> str:
    """The sweep run's description in the MLflow UI: the answer in one line (the top row, which is the
    champion), the baselines' verdict, and the table's key columns in Markdown; the report is linked."""
    if table.empty:
        return f"No finished trial reported a validation accuracy. {fate_line(facts['fate'])}"
    top, low = table.iloc[0], table.iloc[0].get(ACC_CI_LOW)
    ci = "" if low is None or pd.isna(low) else f" (95% CI {100 * low:.1f}-{100 * top[ACC_CI_HIGH]:.1f})"
    answer = f"**Answer**: {top['arch']}: {validation_text(top)}, {100 * top[M.TEST_ACC]:.1f}% test accuracy{ci}."
    keep = [c for c in OVERVIEW_COLUMNS if c in table]
    tail = f"{fate_line(facts['fate'])} The whole report: artifacts, `report/report.html`."
    rows = len(table)
    while True:  # MLflow keeps a tag's first MAX_TAG_VAL_LENGTH characters: the table is cut at a row, and says so
        shown_rows = _display(table[keep].head(rows)).to_markdown(index=False)
        cut = f"The first {rows} of {len(table)} rows; every row is in the report. " if rows < len(table) else ""
        text = "\n".join([answer, "", facts["baselines"], "", shown_rows, "", cut + tail])
        if len(text) <= MAX_TAG_VAL_LENGTH or rows == 1:
            return text
        rows = max(1, rows * MAX_TAG_VAL_LENGTH // len(text) - 1)


def what_mattered(runs: pd.DataFrame, parent, figures: Path) -> tuple[dict[str, float], str, Path | None]:  # noqa: ANN001 - an MLflow Run
    """The searched settings' importances (``analysis.importance``) and the trials' parallel-coordinates plot
    (in ``figures``), the space read from the recipe the sweep logged on its run; ({}, why not, None) for a
    sweep that logged none."""
    import yaml

    from sweeps.config import config_from_dict

    try:
        with tempfile.TemporaryDirectory() as d:
            path = mlflow.MlflowClient().download_artifacts(parent.info.run_id, RECIPE_FILE, d)
            recipe = yaml.safe_load(Path(path).read_text())
        space = config_from_dict(recipe, RECIPE_FILE).space
    except Exception as e:  # noqa: BLE001 - an older sweep, or a recipe this version reads otherwise: said, not fatal
        return {}, f"What mattered: not computed (the sweep's {RECIPE_FILE} could not be read: {str(e)[:200]}).", None
    return (*importances(runs, space), parallel_coordinates(runs, space, figures / "parallel_coordinates.png"))


def _display(table: pd.DataFrame) -> pd.DataFrame:
    out = shown(table)
    return out.map(fmt) if not out.empty else out


def to_markdown(table: pd.DataFrame, facts: dict, plots: list[Path], evidence: dict, out_dir: Path) -> str:
    lines = [f"# Model comparison: {facts['title']}", "", f"Data: {facts['data']}. {fate_line(facts['fate'])}", ""]
    if table.empty:
        lines += ["No finished trial reported a validation accuracy: nothing to compare.", ""]
    else:
        verdict = [facts["baselines"], ""] if facts["baselines"] else []
        lines += [
            f"Rows: {facts['rows']}.",
            "",
            *verdict,
            _display(table).to_markdown(index=False),
            "",
            facts["method"],
            "",
        ]
    for p in plots:
        lines += [f"![{p.stem}]({p.relative_to(out_dir).as_posix()})", ""]
    for run_id, files in evidence.items():
        lines += [f"## {_row_title(table, run_id)}", ""]
        for key, path in files.items():
            lines.append(f"![{key}]({path.relative_to(out_dir).as_posix()})" if path else f"({key}: not logged)")
        lines.append("")
    if len(table) > MAX_EVIDENCE_ROWS:
        lines += [f"Evidence shown for the first {MAX_EVIDENCE_ROWS} of {len(table)} rows; every run has its own.", ""]
    space = facts["space"].map(lambda v: str(v).replace("|", "\\|"))  # a '|' in a value (prompts) ends a cell
    lines += ["## What mattered", "", facts["importance_note"], ""]
    if facts["importances"]:
        rows = pd.DataFrame({"setting": list(facts["importances"]), "importance": list(facts["importances"].values())})
        lines += [rows.to_markdown(index=False, floatfmt=".3f"), "", f"![importance]({FIGURES}/importance.png)", ""]
    if facts["parallel_png"]:
        lines += [PARALLEL_NOTE, "", f"![parallel coordinates]({FIGURES}/{facts['parallel_png'].name})", ""]
    lines += ["## Search space", "", space.to_markdown(index=False), ""]
    return "\n".join(lines)


def _row_title(table: pd.DataFrame, run_id: str) -> str:
    r = table.set_index("run_id").loc[run_id]
    if r[FAMILY_PARAM] == BASELINE_FAMILY:  # no freeze, augmentation or learning rate
        return f"{r['arch']} (baseline) · run {run_id[:8]}"
    return f"{r['arch']} · freeze {r['freeze']} · augment {r['augment']} · lr {r['lr']:.3g} · run {run_id[:8]}"


def _img(path: Path | None, alt: str) -> str:
    if path is None:
        return f"<p class=missing>{html.escape(alt)}: not logged by this run</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    wide = " class=wide" if alt == "Grad-CAM" else ""  # a row of images: as wide as the page allows
    return f'<img{wide} alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


# The HTML table's first view: what the answer and its cost are; every column is in the section below it.
KEY_COLUMNS = ("arch", "freeze", "augment", "lr", M.TEST_ACC, ACC_CI_LOW, VS_TOP, M.TEST_F1, "latency_ms", "gflops",
               "params_m")  # fmt: skip
# Quality and cost columns whose best value is marked: higher is better, or lower is.
BEST = {
    **dict.fromkeys((M.BEST_VAL_ACC, M.TEST_ACC, M.TEST_TOP5, M.TEST_F1, M.TEST_PRECISION, M.TEST_RECALL), "max"),
    "throughput_ips": "max",
    **dict.fromkeys(
        ("params_m", "gflops", "gmacs", "latency_ms", "latency_p90_ms", "onnx_latency_ms", "size_mb", M.TRAIN_TIME),
        "min",
    ),
}


def html_tables(table: pd.DataFrame) -> str:
    """The key columns, sortable, best values marked; then every column, in a section that opens on a click."""
    numbers = shown(table)
    best = {COLUMNS[k]: d for k, d in BEST.items()}
    key = [COLUMNS[k] for k in KEY_COLUMNS if COLUMNS[k] in numbers]
    return (
        sortable_table(numbers[key], best)
        + "<p class=note>Click a header to sort by it. Bold: the best value of a quality or cost column.</p>"
        + f"<details><summary>All {numbers.shape[1]} columns</summary><div class=scroll>"
        + sortable_table(numbers, best)
        + "</div></details>"
    )


def to_html(table: pd.DataFrame, facts: dict, plots: list[Path], evidence: dict) -> str:
    """One file, nothing fetched: styles and the sorting script inline, figures as data URIs."""
    e = html.escape
    parts = [
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{e(facts['title'])}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>Model comparison: {e(facts['title'])}</h1>",
        f"<p>Data: {e(facts['data'])}. {e(fate_line(facts['fate']))}</p>",
        f"<p class=note>MLflow parent run <code>{e(facts['parent'].info.run_id)}</code>, tracking URI "
        f"<code>{e(shown_uri(mlflow.get_tracking_uri()))}</code>.</p>",
    ]
    if table.empty:
        parts.append("<p class=missing>No finished trial reported a validation accuracy: nothing to compare.</p>")
    else:
        parts += [
            f"<h2>Comparison</h2><p class=note>Rows: {e(facts['rows'])}.</p>",
            f"<p class=verdict>{e(facts['baselines'])}</p>" if facts["baselines"] else "",
            html_tables(table),
            f"<p class=note>{e(facts['method'])}</p>",
        ]
    if plots:
        parts.append("<h2>Accuracy against cost</h2><div class=figs>")
        parts += [_img(p, p.stem) for p in plots]
        parts.append("</div>")
    if evidence:
        parts.append("<h2>Per model: test confusion matrix, learning curves, Grad-CAM on the sweep's samples</h2>")
        for run_id, files in evidence.items():
            parts.append(f"<h3>{e(_row_title(table, run_id))}</h3><div class=figs>")
            parts += [_img(path, key) for key, path in files.items()]
            parts.append("</div>")
        if len(table) > MAX_EVIDENCE_ROWS:
            parts.append(f"<p class=note>Shown for the first {MAX_EVIDENCE_ROWS} of {len(table)} rows.</p>")
    parts += ["<h2>What mattered</h2>", f"<p class=note>{e(facts['importance_note'])}</p>"]
    if facts["importances"]:
        rows = pd.DataFrame({"setting": list(facts["importances"]), "importance": list(facts["importances"].values())})
        parts += [rows.to_html(index=False, border=0, float_format="%.3f"), _img(facts["importance_png"], "importance")]
    if facts["parallel_png"]:
        parts += [f"<p class=note>{e(PARALLEL_NOTE)}</p>", _img(facts["parallel_png"], "parallel coordinates")]
    parts += ["<h2>Search space</h2>", facts["space"].to_html(index=False, border=0)]
    parts += [f"<script>{SORT_SCRIPT}</script></body></html>"]
    return "\n".join(parts)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m analysis.report",
        description="Build the model-comparison report of a sweep from its MLflow runs: Markdown, CSV and "
        "a self-contained HTML page, logged to the sweep's parent run under report/. Models are profiled "
        "(FLOPs, size, latency, throughput) on this machine unless a profile from this device is cached "
        "on their runs.",
    )
    add = p.add_argument
    add("--experiment", required=True, help="MLflow experiment name (a sweep prints it; e.g. classify-digits)")
    add(
        "--sweep",
        nargs="+",
        help=f"sweep name (the parent run's '{SWEEP_TAG}' tag, e.g. sweep-20261123-101500); default: the latest. "
        "Several: one table across them (as --all-sweeps)",
    )
    add(
        "--all-sweeps",
        action="store_true",
        help="one table across every classification sweep of the experiment: the best row per architecture of "
        "each, with its sweep and the recipe settings that differ between sweeps (analysis.across)",
    )
    add("--tracking-uri", help=TRACKING_URI_HELP)
    add("--rows", choices=list(ROW_MODES), default="arch", help="; ".join(f"{k}: {v}" for k, v in ROW_MODES.items()))
    add("--out", type=Path, help="output directory; default: reports/<experiment>/<sweep>")
    add("--device", help="where to profile: cpu, cuda or cuda:N; default: cuda if available, else cpu")
    add("--reprofile", action="store_true", help="measure again even where a profile from this device is cached")
    add("--no-profile", action="store_true", help="leave out the cost columns and plots (no timing at all)")
    add(
        "--timing-s",
        type=float,
        default=LATENCY_MIN_SECONDS,
        metavar="S",
        help="each latency and throughput timing runs at least S seconds (and 30 runs); default "
        f"{LATENCY_MIN_SECONDS:g}. A cached profile timed for less (a --smoke-test sweep's) is measured again",
    )
    add("--no-log", action="store_true", help="write the files only; do not log them to the parent run")
    return p.parse_args(argv)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = args.device or default_device()
    if not 0 < args.timing_s < float("inf"):
        print(f"error: --timing-s {args.timing_s}: must be > 0 seconds and finite", file=sys.stderr)
        return 2
    if not (device == "cpu" or device.startswith("cuda")):
        print(f"error: --device {device!r}: use cpu, cuda or cuda:N", file=sys.stderr)
        return 2
    if args.all_sweeps or len(args.sweep or []) > 1:
        return across_main(args, device)
    try:
        check_tracking_store(use_tracking_uri(args.tracking_uri)[0], reading=True)
        exp_id, parent = find_sweep(args.experiment, args.sweep[0] if args.sweep else None)
    except (TrackingUnavailable, LookupError, MlflowException) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sweep = parent.data.tags.get(SWEEP_TAG, parent.info.run_id)
    out = args.out or Path("reports") / args.experiment / sweep
    if parent.data.tags.get(TASK_TAG) == DETECT_TASK:  # one row per YOLO model
        from analysis.detect_report import build_detection_report

        report = build_detection_report(
            exp_id, parent, out, device, profile=not args.no_profile, log=not args.no_log, timing_s=args.timing_s
        )
    else:
        report = build_report(
            exp_id,
            parent,
            out,
            args.rows,
            device,
            args.reprofile,
            profile=not args.no_profile,
            log=not args.no_log,
            timing_s=args.timing_s,
        )
    print(report.markdown.read_text().split("\n## ")[0])
    print(f"report: {report.html}\ntable: {report.csv}")
    return 0


def across_main(args: argparse.Namespace, device: str) -> int:
    """--all-sweeps, or several --sweep names: one table across the sweeps (``analysis.across``)."""
    from analysis.across import across_table, sweeps_of, write_across

    if args.all_sweeps and args.sweep:
        print("error: --all-sweeps takes every sweep of the experiment; leave out --sweep", file=sys.stderr)
        return 2
    try:
        check_tracking_store(use_tracking_uri(args.tracking_uri)[0], reading=True)
        exp_id, parents = sweeps_of(args.experiment, None if args.all_sweeps else args.sweep)
    except (TrackingUnavailable, LookupError, MlflowException) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = across_table(exp_id, parents, device, not args.no_profile, args.reprofile, print, args.timing_s)
    out = args.out or Path("reports") / args.experiment / "across-sweeps"
    done = write_across(table, args.experiment, parents, out)
    print(done.markdown.read_text())
    print(f"report: {done.html}\ntable: {done.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
