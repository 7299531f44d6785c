"""One table across several sweeps of an experiment: the best row of each architecture in each sweep (as the
sweep's own report chooses it, on validation), with the sweep it came from and the recipe settings that differ
between the sweeps (input size, weights, data, epochs, ...), best validation accuracy first.

    python -m analysis.report --experiment classify-digits --all-sweeps
    python -m analysis.report --experiment classify-digits --sweep sweep-20261203-101500 sweep-20261204-091200

Written as across.md, across.csv and across.html (sortable, as the sweep report's table) under
reports/<experiment>/across-sweeps/. Each row's interval is its own sweep's (its test split); no paired test
across sweeps, whose test splits may differ.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from mlflow.entities import Run

from analysis.compare import COLUMNS, comparison_table, profiles, select_rows, shown, sweep_runs
from analysis.report_parts import CSS, SORT_SCRIPT, fetch_predictions, fmt, sortable_table, sweep_parents
from analysis.significance import MCNEMAR_P, VS_TOP, against_top
from trainables import metrics as M
from trainables.contracts import (
    CONFIRM_PLANNED_PARAM,
    DETECT_TASK,
    SEARCHED_PARAM,
    SPACE_PARAM_PREFIX,
    SWEEP_TAG,
    TASK_TAG,
    TRIALS_PLANNED_PARAM,
)

# Parent-run parameters that say where a sweep's things went or how it was counted, not what it trained.
NOT_SETTINGS = {
    "tracking_uri", "storage_path", "output_dir", "experiment", "address", "tracking_wait_s", "max_failures",
    "cpus_per_trial", "gpus_per_trial", "registered_model", "timing_s", "decode_cache_mb", "data_decoding",
    "images_in_memory", "source", TRIALS_PLANNED_PARAM, SEARCHED_PARAM, CONFIRM_PLANNED_PARAM,
}  # fmt: skip
SWEEP_COLUMN = "sweep"


@dataclass(frozen=True)
class Across:
    markdown: Path
    csv: Path
    html: Path
    table: pd.DataFrame  # display headers


def sweeps_of(experiment: str, names: list[str] | None = None) -> tuple[str, list[Run]]:
    """(experiment id, the parent runs of its classification sweeps, newest first): all, or those ``names``
    (every name must be found)."""
    exp_id, parents = sweep_parents(experiment)
    if names:
        by_name = {p.data.tags[SWEEP_TAG]: p for p in parents}
        missing = [n for n in names if n not in by_name]
        if missing:
            raise LookupError(
                f"--sweep: experiment {experiment!r} has no sweep named {', '.join(missing)}; "
                f"its sweeps: {', '.join(by_name) or 'none'}"
            )
        parents = [by_name[n] for n in names]
    detection = [p.data.tags[SWEEP_TAG] for p in parents if p.data.tags.get(TASK_TAG) == DETECT_TASK]
    if detection:
        raise LookupError(f"--all-sweeps compares classification sweeps; {', '.join(detection)} are detection sweeps")
    if len(parents) < 2:
        raise LookupError(f"--all-sweeps: experiment {experiment!r} has {len(parents)} sweep(s); it needs two or more")
    return exp_id, parents


def differing_settings(parents: list[Run]) -> list[str]:
    """The recipe settings (parent-run parameters) whose values are not the same in every sweep."""
    keys = sorted({k for p in parents for k in p.data.params} - NOT_SETTINGS)
    return [k for k in keys if len({p.data.params.get(k, "") for p in parents}) > 1]


def _name(key: str, keys: list[str]) -> str:
    """A recipe axis' parameter (space.img_size) under its own name (img_size), unless that is taken."""
    bare = key.removeprefix(SPACE_PARAM_PREFIX)
    return bare if bare == key or bare not in keys else key


def across_table(
    experiment_id: str, parents: list[Run], device: str, profile: bool, reprofile: bool, progress, timing_s: float
) -> pd.DataFrame:
    """The best row per architecture of each sweep, with its sweep and the differing settings, best on
    validation first; in display form (``shown``)."""
    differ = differing_settings(parents)
    tables = []
    for parent in parents:
        runs = sweep_runs(experiment_id, parent.info.run_id)
        searched = parent.data.params.get(SEARCHED_PARAM)
        chosen = select_rows(runs, "arch", searched.split(",") if searched else None)
        if chosen.empty:
            progress(f"{parent.data.tags[SWEEP_TAG]}: no finished trial, no rows")
            continue
        profs = profiles(chosen, runs, device, reprofile, progress, timing_s=timing_s) if profile else None
        table = comparison_table(chosen, profs, against_top(chosen, fetch_predictions(chosen)))
        table = table.drop(columns=[VS_TOP, MCNEMAR_P], errors="ignore")  # within one sweep only: left out here
        settings = {_name(k, differ): parent.data.params.get(k, "") for k in differ}
        tables.append(table.assign(**{SWEEP_COLUMN: parent.data.tags[SWEEP_TAG]}, **settings))
    if not tables:
        return pd.DataFrame()
    table = pd.concat(tables, ignore_index=True).sort_values(M.BEST_VAL_ACC, ascending=False, kind="stable")
    first = ["arch", SWEEP_COLUMN, *(_name(k, differ) for k in differ)]
    return shown(table[first + [c for c in table if c not in first]])


def write_across(table: pd.DataFrame, experiment: str, parents: list[Run], out_dir: Path) -> Across:
    out_dir.mkdir(parents=True, exist_ok=True)
    names = ", ".join(p.data.tags[SWEEP_TAG] for p in parents)
    differ = [c for c in table.columns[2:] if c not in COLUMNS.values()]
    note = (
        f"Sweeps: {names}. One row per architecture per sweep: the sweep's own choice (best validation accuracy; a "
        "confirmed configuration by its mean over seeds). Columns after 'sweep' up to the first metric are the "
        f"recipe settings that differ between these sweeps ({', '.join(differ) or 'none'}): validation and test "
        "numbers of sweeps with different data are on different images. Intervals are each row's own sweep's; "
        "no paired test across sweeps."
    )
    csv = out_dir / "across.csv"
    table.to_csv(csv, index=False)
    md = out_dir / "across.md"
    title = f"Across sweeps: {experiment}"
    md.write_text(f"# {title}\n\n{note}\n\n{table.map(fmt).to_markdown(index=False)}\n")
    best = {COLUMNS[M.BEST_VAL_ACC]: "max", COLUMNS[M.TEST_ACC]: "max", COLUMNS[M.TEST_F1]: "max"}
    best |= {COLUMNS[k]: "min" for k in ("params_m", "gflops", "latency_ms", "size_mb", M.TRAIN_TIME)}
    e = html.escape
    page = out_dir / "across.html"
    page.write_text(
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{e(title)}</title><style>{CSS}</style>"
        f"</head><body><h1>{e(title)}</h1><p class=note>{e(note)}</p><div class=scroll>"
        f"{sortable_table(table, best)}</div><script>{SORT_SCRIPT}</script></body></html>"
    )
    return Across(md, csv, page, table)
