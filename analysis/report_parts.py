"""What every task's comparison report shares (``analysis.report`` for classification,
``analysis.detect_report`` for detection): the report's files, what the sweep's parent run says about the
sweep (title, data, planned trials, search space), how its trials ended, number formatting, the page's
style, and logging the report back to the parent run.
"""

from __future__ import annotations

import html
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Run
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from analysis.compare import finished
from analysis.profile import Profile
from trainables.contracts import (
    CONFIRM_PLANNED_PARAM,
    DATA_SOURCE_PARAM,
    REPORT_DIR,
    SPACE_PARAM_PREFIX,
    STOPPED_EARLY_TAG,
    SWEEP_TAG,
    TRIALS_PLANNED_PARAM,
    evidence_path,
)
from trainables.evidence import PREDICTIONS_CSV

# The search's settings shown beside the searched axes (the sweep config's names, as the parent run logs them).
SEARCH_SETTINGS = ("search", "num_samples", "objectives", "points_to_evaluate", "asha", "grace_period", "max_epochs")
SEARCH_SETTINGS += ("confirm.top", "confirm.seeds")


@dataclass
class Report:
    markdown: Path
    csv: Path
    html: Path
    table: pd.DataFrame
    profile: Profile | None


def sweep_title(parent: Run, experiment_id: str) -> str:
    """'<sweep name> (<experiment name>)'."""
    name = mlflow.MlflowClient().get_experiment(experiment_id).name
    return f"{parent.data.tags.get(SWEEP_TAG, parent.info.run_name)} ({name})"


def data_source(parent: Run) -> str:
    return parent.data.params.get(DATA_SOURCE_PARAM, "?")


def trials_planned(parent: Run) -> int | None:
    """The search's trials and, at most, the confirmation's."""
    planned = parent.data.params.get(TRIALS_PLANNED_PARAM)
    return int(planned) + int(parent.data.params.get(CONFIRM_PLANNED_PARAM, 0)) if planned else None


def trial_fate(runs: pd.DataFrame, planned: int | None, done: pd.DataFrame | None = None) -> dict[str, int]:
    """How the sweep's trials ended, from their runs: finished (of which ASHA stopped early), failed,
    killed or still running. ``done``: the finished runs with a result (default: classification's)."""
    status = runs["status"].value_counts() if not runs.empty else pd.Series(dtype=int)
    done = finished(runs) if done is None else done
    early = int((done.get(f"tags.{STOPPED_EARLY_TAG}", pd.Series(dtype=str)) == "true").sum())
    return {
        "planned": planned if planned is not None else len(runs),
        "runs": len(runs),
        "finished": int(status.get("FINISHED", 0)),
        "stopped_early": early,
        "ran_all_epochs": len(done) - early,
        "failed": int(status.get("FAILED", 0)),
        "killed": int(status.get("KILLED", 0)),
        "running": int(status.get("RUNNING", 0)),
    }


def fate_line(f: dict[str, int]) -> str:
    return (
        f"{f['planned']} trials planned, {f['runs']} started: {f['finished']} finished "
        f"({f['ran_all_epochs']} ran every epoch, {f['stopped_early']} stopped early by ASHA), "
        f"{f['failed']} failed, {f['killed']} killed, {f['running']} still running."
    )


def search_space(parent: Run) -> pd.DataFrame:
    """The searched axes and the search's settings, as the sweep's parent run recorded them."""
    p = parent.data.params
    rows = [(k.removeprefix(SPACE_PARAM_PREFIX), v) for k, v in sorted(p.items()) if k.startswith(SPACE_PARAM_PREFIX)]
    rows += [(k, p[k]) for k in SEARCH_SETTINGS if k in p]
    return pd.DataFrame(rows, columns=["setting", "value"])


def fmt(v) -> str:
    if isinstance(v, float | np.floating):
        return "" if np.isnan(v) else f"{v:.4g}"
    return str(v)


def log_report(parent: Run, out_dir: Path) -> None:
    """Every file of ``out_dir`` onto the sweep's parent run, under ``report/``."""
    mlflow.MlflowClient().log_artifacts(parent.info.run_id, str(out_dir), REPORT_DIR)


CSS = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1240px;padding:0 1rem;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1rem 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3;position:sticky;top:0;z-index:1}
td:nth-child(-n+5){text-align:left}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
td.best{font-weight:bold;background:#e3f2e6}
.scroll{overflow-x:auto;max-width:100%}
details>summary{cursor:pointer;font-size:14px;margin:.5rem 0}
.note{color:#555;font-size:13px;max-width:1100px}
img{max-width:calc(50% - 1rem);margin:.5rem 1rem .5rem 0;border:1px solid #eee}
img.wide{max-width:100%}
.missing{color:#a00}
.figs{display:flex;flex-wrap:wrap;align-items:flex-start}
"""


# Sorting for every <table class=sortable>: a click on a header sorts the rows by that column, again reverses.
# A cell's data-v (its number) sorts numerically; cells without one (n/a, empty, names) by text, after numbers.
SORT_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(t => t.querySelectorAll('thead th').forEach((th, i) =>
  th.addEventListener('click', () => {
    const asc = th.getAttribute('aria-sort') !== 'ascending';
    t.querySelectorAll('thead th').forEach(h => h.removeAttribute('aria-sort'));
    th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
    const key = r => r.cells[i].dataset.v === undefined ? r.cells[i].textContent : Number(r.cells[i].dataset.v);
    const body = t.tBodies[0];
    Array.from(body.rows).sort((a, b) => {
      const x = key(a), y = key(b), xn = typeof x === 'number', yn = typeof y === 'number';
      if (xn !== yn) return xn ? -1 : 1;
      const d = xn ? x - y : x.localeCompare(y, undefined, {numeric: true});
      return asc ? d : -d;
    }).forEach(r => body.appendChild(r));
  })));
"""


def sortable_table(numbers: pd.DataFrame, best: dict[str, str]) -> str:
    """An HTML table of ``numbers`` (display headers, values as measured) that sorts by any column
    (``SORT_SCRIPT``), each cell shown as ``fmt`` writes it; in each column of ``best`` (header -> 'max' or
    'min') the best value is marked (class ``best``; ties all marked)."""
    e = html.escape
    marks: dict[str, object] = {}
    for column, direction in best.items():
        if column in numbers:
            values = pd.to_numeric(numbers[column], errors="coerce")
            if values.notna().any():
                marks[column] = values.max() if direction == "max" else values.min()
    head = "".join(f"<th scope=col>{e(str(c))}</th>" for c in numbers.columns)
    rows = []
    for _, r in numbers.iterrows():
        cells = []
        for c in numbers.columns:
            v = r[c]
            number = isinstance(v, int | float | np.number) and not isinstance(v, bool) and not pd.isna(v)
            attrs = f' data-v="{float(v)!r}"' if number else ""
            if number and c in marks and v == marks[c]:
                attrs += " class=best"
            cells.append(f"<td{attrs}>{e(fmt(v))}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="comparison sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def run_file(artifact_uri: str, path: str, dst: str) -> str:
    """The file ``path`` a run logged, downloaded into ``dst`` from the run's artifact URI (``sweep_runs``' column).
    Not through ``runs:/<id>/...``: that looks up the run, and its logged models, again for every file (22 ms a
    file against 1.3 ms, SQLite store of 10,000 runs). MlflowException where the run has no such file."""
    return mlflow.artifacts.download_artifacts(artifact_uri=f"{artifact_uri.rstrip('/')}/{path}", dst_path=dst)


def fetch_predictions(runs: pd.DataFrame) -> dict[str, pd.DataFrame | None]:
    """run_id -> the per-image test predictions its trial logged (PREDICTIONS_CSV), or None where the run
    has none; one download per row of ``runs`` (``sweep_runs``' rows), every row (the intervals and ties need
    them all)."""
    found = {}
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:  # read, not kept: the run keeps them
        for run_id, uri in zip(runs["run_id"], runs["artifact_uri"], strict=True):
            try:
                found[run_id] = pd.read_csv(run_file(uri, evidence_path(PREDICTIONS_CSV), f"{tmp}/{run_id}"))
            except MlflowException:  # the run has none: its cells stay empty, and the note says so
                found[run_id] = None
    return found


def sweep_parents(experiment: str, sweep: str | None = None, limit: int = 1000) -> tuple[str, list[Run]]:
    """(experiment id, the parent runs of its sweeps, newest first, at most ``limit``): the one named ``sweep``,
    or all. An experiment that is not there is named with the ones that are."""
    from sweeps.credentials import shown as shown_uri

    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = sorted(e.name for e in client.search_experiments())
        raise LookupError(
            f"--experiment: no experiment named {experiment!r} at {shown_uri(mlflow.get_tracking_uri())}; "
            f"experiments there: {', '.join(names) or 'none'}"
        )
    # A sweep's parent run records how many trials it planned; its trials' runs do not.
    which = f"tags.`{SWEEP_TAG}` = '{sweep}'" if sweep else f"tags.`{SWEEP_TAG}` LIKE '%'"
    parents = client.search_runs(
        [exp.experiment_id],
        filter_string=f"{which} AND params.{TRIALS_PLANNED_PARAM} LIKE '%'",
        order_by=["attributes.start_time DESC"],
        max_results=limit,
    )
    return exp.experiment_id, [r for r in parents if MLFLOW_PARENT_RUN_ID not in r.data.tags][:limit]
