"""What every task's comparison report shares (``analysis.report`` for classification,
``analysis.detect_report`` for detection): the report's files, what the sweep's parent run says about the
sweep (title, data, planned trials, search space), how its trials ended, number formatting, the page's
style, and logging the report back to the parent run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
from mlflow.entities import Run

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
)

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
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1500px;padding:0 1rem;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1rem 0}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:right}
th{background:#f3f3f3;position:sticky;top:0}
td:nth-child(-n+5){text-align:left}
.note{color:#555;font-size:13px;max-width:1100px}
img{max-width:calc(50% - 1rem);margin:.5rem 1rem .5rem 0;border:1px solid #eee}
img.wide{max-width:100%}
.missing{color:#a00}
.figs{display:flex;flex-wrap:wrap;align-items:flex-start}
"""
