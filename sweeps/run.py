"""The one sweep lifecycle, for every task (``sweeps.task``): check everything up front, start or join
Ray, open the sweep's MLflow run, build the Tuner, run, resume, finish, report, and hand the winner to
the task (the champion in the Model Registry for classification)."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import json
import math
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import ray
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from ray import tune

from sweeps.credentials import restore_credentials, save_credentials, untrusted
from sweeps.ray_compat import loopback_only, starts_local_ray
from sweeps.recipe import ConfigError, Recipe, expand_user
from sweeps.space import num_trials, scheduler, search_algorithm, trials_planned
from sweeps.storage import storage_filesystem
from sweeps.study import StudyRecord, study_storage
from sweeps.task import Prepared, Task
from sweeps.tracking import (
    TrackingUnavailable,
    check_tracking_store,
    dataset_inputs,
    reopen_parent_run,
    shown,
    start_parent_run,
    ui_hint,
    use_tracking_uri,
)
from sweeps.trial_runs import TrackingIncomplete, TrialNames
from trainables import contracts as C

# Written into the Ray Tune experiment directory: which MLflow runs a resumed sweep continues, and its task.
SWEEP_FILE = "cvsweep.json"
RECIPE_FILE = C.RECIPE_FILE  # the recipe as run, overrides applied
DEFAULT_STORAGE = "~/ray_results"  # Ray Tune's own default, made explicit so the sweep knows its directory
# Storage faults: every later checkpoint would fail the same way, so the sweep stops (resumably) at the first.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT)
STORAGE_ERRORS = tuple(os.strerror(n) for n in STORAGE_ERRNOS)  # "No space left on device", ...


class StorageWatch(tune.Callback):
    """Stops the sweep the way Ctrl-C does (Tune's SIGUSR1: state saved, unfinished trials resumable)
    the first time a trial fails because the storage path is full or read-only, instead of letting
    every trial fail its checkpoints in turn. ``fault`` says what happened."""

    fault: str | None = None  # the process's one sweep: read by ``finish`` after Tune returns

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self._check(trial)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._check(trial)

    def _check(self, trial) -> None:
        try:
            text = Path(trial.error_file).read_text(errors="replace") if trial.error_file else ""
        except OSError:
            text = ""
        said = next((e for e in STORAGE_ERRORS if e in text), None)
        if said and StorageWatch.fault is None:
            StorageWatch.fault = f"{said} (trial {trial.trial_id} could not save its checkpoint)"
            log(f"storage: {StorageWatch.fault}; stopping the sweep so that it can be resumed")
            os.kill(os.getpid(), signal.SIGUSR1)


def log(msg: str) -> None:
    print(f"[sweep] {msg}", flush=True)


def per_trial(cfg: Recipe) -> dict[str, float]:
    """What one trial asks Ray for, in Ray's resource names."""
    return {"CPU": cfg.cpus_per_trial, "GPU": cfg.gpus_per_trial}


def check_resources(cfg: Recipe, available: dict[str, float], local: bool) -> None:
    """A trial that asks for more than the whole cluster has would wait forever: refuse it now. On a
    cluster joined (``local`` False), the autoscaler may still add nodes, so there it is only a warning."""
    need = per_trial(cfg)
    short = [
        f"{need[k]:g} {k} per trial, cluster has {available.get(k, 0):g}" for k in need if need[k] > available.get(k, 0)
    ]
    if not short:
        return
    message = f"--cpus-per-trial/--gpus-per-trial ask for more than this Ray cluster has: {'; '.join(short)}"
    if local:
        raise ValueError(message + ". Lower the request, or join a cluster that has them with --address.")
    log(f"warning: {message}; trials wait until the autoscaler adds such nodes.")


CHECK_ERRORS = (TrackingUnavailable, FileNotFoundError, ValueError, RuntimeError, OSError)


def check_request(task: Task, cfg: Recipe, tracking_uri: str) -> tuple[Prepared | None, str]:
    """Everything a sweep needs besides Ray, checked before anything starts: the tracking store, the
    storage path, and what the task prepares (its data, every model the space allows). The problems, all
    of them, as one message ('' when there are none)."""
    problems: list[str] = []
    prepared = None
    for check in (
        lambda: check_tracking_store(tracking_uri),
        lambda: check_storage(storage_root(cfg)),
    ):
        try:
            check()
        except CHECK_ERRORS as e:
            problems.append(str(e))
    try:
        prepared = task.prepare(cfg, log)
    except ConfigError as e:
        problems += e.problems
    except CHECK_ERRORS as e:
        problems.append(str(e))
    if len(problems) > 1:
        return prepared, f"{len(problems)} problems, nothing has started:\n" + "\n".join(f"- {p}" for p in problems)
    return prepared, "".join(problems)


# Tune's console (Ray 2.60): its own reporter takes the columns to show only in the output engine that
# RAY_AIR_NEW_OUTPUT=0 selects; the newer engine infers them (the first four metrics a trial reports, no
# define-by-run settings) and prints a configuration box for every trial that starts.
CONSOLE_ENV = {
    "RAY_AIR_NEW_OUTPUT": "0",
    # Tune warns at every forced state snapshot when trials checkpoint faster than every 5 s: num_to_keep=1 is
    # this sweep's choice (one complete checkpoint per trial), not a problem to fix. Its warning about a
    # snapshot that is slow to write (a storage problem) stays.
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
}


def quiet_console(verbose: bool) -> None:
    """Tune's console as a sweep shows it: the status table only (``verbose``: also a line per result, with
    the trial's settings, and Tune's snapshot warnings). A value the user set in the environment stands."""
    for name, value in CONSOLE_ENV.items():
        if not (verbose and name.startswith("TUNE_WARN")):
            os.environ.setdefault(name, value)


def progress_reporter(cfg: Recipe) -> tune.CLIReporter:
    """Tune's status table: a row per trial (named as its MLflow run), with the searched settings, the
    objectives and the epoch it reached. Not sorted by the objective: Tune's "current best trial" line, which
    comes with sorting, cannot print a trial that lacks a conditional setting (Ray 2.60: KeyError)."""
    settings = [k for k in cfg.ordered_keys() if cfg.space[k].searched] + ["seed"] * bool(cfg.confirm.trials)
    return tune.CLIReporter(
        metric_columns={**{o: o for o in cfg.objectives}, "training_iteration": "epoch"},
        parameter_columns=settings or [cfg.row_key],
        max_report_frequency=30,  # seconds between tables while trials run; the last one lists every trial
        max_column_length=24,
    )


def build_tuner(task: Task, cfg: Recipe, data, exp_dir: Path, callback, verbose: bool = False) -> tune.Tuner:
    sweep_name = exp_dir.name
    return tune.Tuner(
        trainable_of(task, cfg, data),
        tune_config=tune.TuneConfig(
            search_alg=search_algorithm(cfg),  # the space lives here (define-by-run), not in param_space
            scheduler=scheduler(cfg),
            num_samples=num_trials(cfg) + cfg.confirm.trials,  # the searcher says when it has no more
            trial_dirname_creator=functools.partial(trial_dirname, cfg.row_key),
            trial_name_creator=TrialNames(callback),  # as its MLflow run is named
            # A trial starts in the process of one that ended: torch, timm and the data are loaded once per
            # slot, not once per trial (a trial sets all of its own state: threads, seeds, model, data).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=sweep_name,
            storage_path=str(storage_root(cfg)),
            storage_filesystem=storage_filesystem(),  # a full disk cannot leave a truncated state file
            callbacks=[callback, StorageWatch(), StudyRecord(cfg, exp_dir, log)],
            # One kept: Tune registers a checkpoint only once it is fully written, then drops the older one.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            progress_reporter=progress_reporter(cfg),
            verbose=2 if verbose else 1,
        ),
    )


def trial_dirname(row_key: str, trial) -> str:
    """A trial's directory: its id and its row (Ray's default name is ~200 characters). A module function, so that
    Tune, which pickles it into every trial's state, keeps a reference, not a copy of the recipe."""
    return f"{trial.trial_id}-{trial.config[row_key]}"


def trainable_of(task: Task, cfg: Recipe, data):
    return tune.with_resources(
        # in Ray's object store once
        tune.with_parameters(task.trainable(), **{task.data_arg: data}, **task.trial_args(cfg)),
        {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial},
    )


def check_storage(root: Path) -> None:
    """Tune writes every checkpoint under this directory: make sure it can, before hours of training.
    Directories made for the check are removed again: a refused sweep leaves nothing behind."""
    made: list[Path] = []
    try:
        made = [p for p in (root, *root.parents) if not p.exists()]
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-check-"):
            pass
    except OSError as e:
        raise OSError(f"--storage-path {root}: not a writable directory ({e.strerror or e}).") from None
    finally:
        for p in made:  # deepest first; one that something else has filled meanwhile stays
            with contextlib.suppress(OSError):
                p.rmdir()


def storage_root(cfg: Recipe) -> Path:
    return Path(cfg.storage_path or DEFAULT_STORAGE).expanduser().resolve()


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


PENDING_TRIALS_ENV = "TUNE_MAX_PENDING_TRIALS_PG"  # how many trials Tune may be starting at once


def trials_at_once(cfg: Recipe, available: dict[str, float]) -> int:
    """How many trials fit in these resources at once (at least 1)."""
    fits = min(available.get(k, 0) / n for k, n in per_trial(cfg).items() if n > 0)
    return max(1, math.floor(fits + 1e-9))  # 0.3 / 0.1 is 2.999...: three trials of 0.1 GPU fit


def start_ray(cfg: Recipe) -> str | None:
    """Start or join Ray; the error message if it cannot be joined or cannot run one trial (Ray is shut
    down then). A Ray of the sweep's own listens on 127.0.0.1 only, and all its trial slots start at once;
    joining a cluster is asking for more."""
    local = starts_local_ray(cfg.address)
    try:
        with loopback_only() if local else contextlib.nullcontext():
            ray.init(address=cfg.address)
    except (ConnectionError, ray.exceptions.AuthenticationError) as e:
        auth = os.environ.get("RAY_AUTH_MODE", "disabled")
        return (
            f"--address {shown(cfg.address)}: could not join the Ray cluster: {str(e).splitlines()[0][:300]}. "
            f"RAY_AUTH_MODE here is {auth!r}: a cluster with token authentication (cluster.yaml) needs "
            "RAY_AUTH_MODE=token and its token (~/.ray/auth_token, or RAY_AUTH_TOKEN) on this machine too."
        )
    try:
        check_resources(cfg, ray.cluster_resources(), local)
    except ValueError as e:
        ray.shutdown()
        return str(e)
    if not local:
        log(f"Ray: joined the cluster at {ray.get_runtime_context().gcs_address}")
        return None
    # Behind a searcher, Tune starts one trial at a time: it waits for each trial's process to come up
    # before it starts the next. On a Ray of the sweep's own every slot may start at once. Tune's own
    # setting, read when fit() builds its controller (a user's value stands). Not max_concurrent_trials:
    # that wraps the search, whose saved state a resume restores with trials the saved experiment may lack,
    # each then holding its slot for good.
    slots = trials_at_once(cfg, ray.cluster_resources())
    os.environ.setdefault(PENDING_TRIALS_ENV, str(slots))
    log(f"Ray: a local instance of its own, on 127.0.0.1 only; {os.environ[PENDING_TRIALS_ENV]} trial(s) start at once")
    return None


def run_sweep(task: Task, cfg: Recipe, project_root: Path, verbose: bool = False) -> int:
    t0 = time.perf_counter()
    quiet_console(verbose)
    tracking_uri, credentials = use_tracking_uri(cfg.tracking_uri)
    if cfg.tracking_uri:  # the recipe as run, saved in the sweep directory and pickled by Tune: no credentials
        cfg = dataclasses.replace(cfg, tracking_uri=tracking_uri)
    prepared, problems = check_request(task, cfg, tracking_uri)
    if problems:
        return fail(problems)
    cfg = prepared.cfg or cfg
    log(prepared.line)
    experiment = cfg.experiment or f"{task.name}-{prepared.name}"
    sweep_name = time.strftime(f"{task.sweep_prefix}-%Y%m%d-%H%M%S")
    exp_dir = storage_root(cfg) / sweep_name
    log(f"MLflow: {shown(tracking_uri)}, experiment {experiment!r}")

    if error := start_ray(cfg):
        return fail(error)
    n = num_trials(cfg)
    confirming = f", then the best {cfg.confirm.top} again with {cfg.confirm.seeds} more seed(s) each"
    confirming *= bool(cfg.confirm.trials)
    log(f"Ray: {ray.cluster_resources()}; {n} trials{confirming}, up to {cfg.max_epochs} epochs each")
    objectives = " and ".join(f"{mode} {o}" for mode, o in zip(cfg.modes(), cfg.objectives, strict=True))
    stopping = "ASHA within each family" if cfg.asha else "off"
    log(f"search: {cfg.search} ({objectives}), early stopping: {stopping}, recipe {cfg.source}")
    if cfg.search == "grid" and n < cfg.grid_size():
        log(f"warning: num_samples={n} runs only {n} of the grid's {cfg.grid_size()} configurations")
    if cfg.search != "grid" and cfg.num_samples is not None and n < cfg.num_samples:
        log(f"num_samples={cfg.num_samples}, but the space has only {n} configurations: each runs once, {n} trials")

    with start_parent_run(experiment, sweep_name, project_root) as parent:
        exp_id, parent_id = parent.info.experiment_id, parent.info.run_id
        mlflow.set_tags({C.TASK_TAG: task.name, **task.tags()})
        fingerprint = {C.SPLIT_FINGERPRINT_PARAM: prepared.fingerprint} if prepared.fingerprint else {}
        mlflow.log_params({**cfg.flat(), **prepared.summary, **fingerprint})
        datasets = dataset_inputs(prepared.name, prepared.summary, prepared.fingerprint)
        mlflow.MlflowClient().log_inputs(parent_id, datasets)
        searched = ",".join(k for k, d in cfg.space.items() if d.searched)  # what a "configuration" is
        mlflow.log_params({C.TRIALS_PLANNED_PARAM: n, C.SEARCHED_PARAM: searched or cfg.row_key})
        mlflow.log_param(C.CONFIRM_PLANNED_PARAM, cfg.confirm.trials)
        mlflow.log_dict(cfg.to_yaml_dict(addresses=False), RECIPE_FILE)
        mlflow.log_dict({"points_to_evaluate": cfg.starting_points()}, C.SEARCH_SPACE_FILE)
        prepared.record()
        exp_dir.mkdir(parents=True, exist_ok=True)
        (exp_dir / RECIPE_FILE).write_text(_yaml(cfg.to_yaml_dict()))
        sweep = {
            "task": task.name,
            "script": task.script,
            "tracking_uri": tracking_uri,
            "experiment": experiment,
            "experiment_id": exp_id,
            "parent_run_id": parent_id,
            "sweep_name": sweep_name,
            **fingerprint,
        }
        (exp_dir / SWEEP_FILE).write_text(json.dumps(sweep, indent=2))
        if kept := save_credentials(exp_dir, credentials):
            log(f"the credentials of {shown(tracking_uri)}: kept for --resume in {kept} (mode 0600), nowhere else")
        log(f"sweep directory: {exp_dir} (resume an interrupted sweep with --resume {exp_dir})")
        mlflow.set_tag(C.OPTUNA_STUDY_TAG, study_storage(exp_dir))
        log(f"Optuna study {sweep_name!r}: optuna-dashboard {study_storage(exp_dir)}")
        callback = task.callback(
            tracking_uri, exp_id, parent_id, sweep_name, cfg.tracking_wait_s, str(exp_dir), sweep_seed=cfg.seed
        )
        tuner = build_tuner(task, cfg, prepared.data, exp_dir, callback, verbose)
        return finish(task, cfg, tuner, sweep, exp_dir, t0)


def saved_trials(exp_dir: Path) -> set[str]:
    """The ids of the trials in the sweep's saved state: what a resumed sweep continues."""
    return {t.trial_id for t in tune.ExperimentAnalysis(str(exp_dir)).trials}


def forget_unsaved_trials(saved: set[str], parent_run_id: str) -> list[str]:
    """Delete the runs of trials that are not in the sweep's ``saved`` state (MLflow's delete: the UI's
    "Deleted" runs still show them) and say so; returns their run ids, also in the parent's
    ``forgotten_runs`` tag. Such a trial started after the last state Tune could save: the checkpoint
    directory had turned read-only or full, or the driver was killed. Its run exists, but the resumed search
    proposes that configuration again, as a new trial with a run of its own; the old run would stay a second
    run of it (one that even finished before the stop: Tune's count of trials no longer includes it)."""
    client = mlflow.MlflowClient()
    parent = client.get_run(parent_run_id)
    under = f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'"
    children = client.search_runs([parent.info.experiment_id], filter_string=under, max_results=50000)
    gone = [r for r in children if r.data.tags.get(C.TRIAL_ID_TAG) not in saved]
    for run in gone:
        client.delete_run(run.info.run_id)
        log(
            f"trial {run.data.tags.get(C.TRIAL_ID_TAG)} ({run.info.run_name}) started after the last state the sweep "
            f"could save: its run {run.info.run_id} is deleted in MLflow; the search proposes it again"
        )
    if gone:
        before = parent.data.tags.get(C.FORGOTTEN_RUNS_TAG, "")
        mlflow.set_tag(C.FORGOTTEN_RUNS_TAG, ",".join(filter(None, [before, *(r.info.run_id for r in gone)])))
    return [r.info.run_id for r in gone]


def interrupted_sweeps(root: Path, task: Task) -> list[Path]:
    """The sweep directories right under ``root`` of this task that did not finish, newest first."""
    found = []
    for f in root.glob(f"*/{SWEEP_FILE}"):
        try:
            sweep = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if sweep.get("task", "classify") == task.name and not sweep.get("finished"):
            found.append((f.stat().st_mtime, f.parent))
    return [d for _, d in sorted(found, reverse=True)]


def sweep_to_resume(task: Task, path: Path) -> tuple[Path, str]:
    """``path`` if it is a sweep directory; else the newest interrupted sweep of this task right under it (a
    storage path: ``--resume`` alone looks in the default one), said, with the others listed. The problem
    ('' when none)."""
    if (path / SWEEP_FILE).is_file():
        return path, ""
    candidates = interrupted_sweeps(path, task)
    if not candidates:
        found = sorted(p.parent for p in path.glob(f"*/{SWEEP_FILE}"))[-3:]
        hint = f"; sweeps under it: {', '.join(map(str, found))}" if found else ""
        return path, (
            f"--resume {path}: not a sweep directory (no {SWEEP_FILE}), nor a storage path with an interrupted "
            f"{task.name} sweep in it{hint}"
        )
    chosen = candidates[0]
    experiment = json.loads((chosen / SWEEP_FILE).read_text()).get("experiment", "?")
    log(f"--resume {path}: the newest interrupted {task.name} sweep there is {chosen.name} (experiment {experiment!r})")
    if len(candidates) > 1:
        log(f"{len(candidates) - 1} more interrupted there; resume one with --resume DIR:")
        for d in candidates[1:]:
            log(f"  {d}")
    return chosen, ""


def resume_sweep(task: Task, exp_dir: Path | None, address: str | None, verbose: bool = False) -> int:
    """Continue an interrupted sweep: the same parent run, finished trials kept, unfinished ones
    continued from their last checkpoints into their own child runs (Tuner.restore, which keeps the
    console the sweep started with). ``exp_dir``: the sweep's directory, or a storage path to take the
    newest interrupted sweep from (None: the default storage path)."""
    t0 = time.perf_counter()
    quiet_console(verbose)
    try:
        where = expand_user(str(exp_dir or DEFAULT_STORAGE)).resolve()
    except ValueError as e:
        return fail(f"--resume {e}")
    exp_dir, problem = sweep_to_resume(task, where)
    if problem:
        return fail(problem)
    sweep = json.loads((exp_dir / SWEEP_FILE).read_text())
    owner = sweep.get("task", "classify"), sweep.get("script", "classify.py")  # sweeps before tasks were recorded
    if owner[0] != task.name:
        return fail(
            f"--resume {exp_dir}: a {owner[0]!r} sweep, not a {task.name!r} one; resume it with "
            f"python sweeps/{owner[1]} --resume {exp_dir}"
        )
    if refused := untrusted(exp_dir):
        return fail(refused)
    log(
        f"--resume unpickles the sweep's saved Tune state (tuner.pkl, searcher and experiment state in {exp_dir}): "
        "whoever can write there can run code as you"
    )
    try:
        cfg = task.load(exp_dir / RECIPE_FILE)
    except ConfigError as e:
        return fail(str(e))
    if address is not None:
        cfg = dataclasses.replace(cfg, address=address)
    restore_credentials(exp_dir)
    tracking_uri, _ = use_tracking_uri(sweep["tracking_uri"])
    try:
        check_tracking_store(tracking_uri)
        check_storage(exp_dir)
        prepared = task.prepare(cfg, log)
    except ConfigError as e:
        return fail("\n".join(e.problems))
    except CHECK_ERRORS as e:
        return fail(str(e))
    if C.SPLIT_FINGERPRINT_PARAM not in sweep:
        log(f"warning: {SWEEP_FILE} records no split fingerprint (an older sweep): its data cannot be checked")
    elif prepared.fingerprint != sweep[C.SPLIT_FINGERPRINT_PARAM]:  # the data changed under the sweep
        return fail(
            f"--resume {exp_dir}: the data ({prepared.summary.get('data_source')}) no longer splits into the "
            "images this sweep trained and tested on (split fingerprint differs); start a new sweep instead."
        )
    cfg = prepared.cfg or cfg
    if error := start_ray(cfg):
        return fail(error)
    log(f"resuming {sweep['sweep_name']} from {exp_dir}; MLflow: {shown(tracking_uri)}")
    with reopen_parent_run(sweep["parent_run_id"]):
        forget_unsaved_trials(saved_trials(exp_dir), sweep["parent_run_id"])
        tuner = tune.Tuner.restore(
            str(exp_dir),
            trainable=trainable_of(task, cfg, prepared.data),
            storage_filesystem=storage_filesystem(),
            resume_unfinished=True,  # interrupted trials continue from their last checkpoint
            resume_errored=False,  # a trial that failed for good (max_failures spent) stays failed
        )
        return finish(task, cfg, tuner, sweep, exp_dir, t0)


def fit_trials(cfg, tuner: tune.Tuner, exp_dir: Path, script: str = "classify.py"):
    """Run the trials. Returns (results, None) once every trial ended, with the parent run's trial
    counts logged; (None, exit code) when the sweep stopped early (Ctrl-C, storage, tracking), with
    what to do next said and the parent run marked."""
    StorageWatch.fault = None
    try:
        results = tuner.fit()
    except Exception as e:  # noqa: BLE001 - reported with what to do next
        if incomplete := _caused_by(e, TrackingIncomplete):
            return None, tracking_stop(str(incomplete), exp_dir, script)
        oserror = _caused_by(e, OSError)
        if StorageWatch.fault or (oserror and oserror.errno in STORAGE_ERRNOS):
            return None, storage_stop(StorageWatch.fault or str(oserror), exp_dir, script)
        raise
    finally:
        ray.shutdown()  # before profiling: latency is measured with the machine to itself
    if StorageWatch.fault:
        return None, storage_stop(StorageWatch.fault, exp_dir, script)

    # What the experiment state says, not the ResultGrid: that leaves out trials that never reported.
    trials = tune.ExperimentAnalysis(str(exp_dir)).trials
    ended = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
    planned = trials_planned(cfg, trials)
    if ended < planned:  # Ctrl-C: Tune saved the experiment and returned early
        mlflow.set_tag(C.INTERRUPTED_TAG, "true")
        mlflow.end_run(status="KILLED")
        log(f"interrupted: {ended} of {planned} trials ended; runs, checkpoints and the search's state are kept")
        log(f"resume with: python sweeps/{script} --resume {exp_dir}")
        return None, 130
    mlflow.set_tag(C.INTERRUPTED_TAG, "false")
    if C.TRACKING_ERROR_TAG in mlflow.get_run(mlflow.active_run().info.run_id).data.tags:  # a resume delivered them
        mlflow.delete_tag(C.TRACKING_ERROR_TAG)
        log("the MLflow writes an earlier attempt could not make are delivered")
    errors = [r for r in results if r.error]
    mlflow.log_metrics({"trials": len(results), "trials_failed": len(errors)})
    if errors:
        mlflow.set_tag(C.FAILED_TRIALS_TAG, ", ".join(str(r.path) for r in errors))
    log(f"trials finished: {len(results) - len(errors)} of {len(results)}; profiling the best of each model")
    return results, None


def finish(task: Task, cfg: Recipe, tuner: tune.Tuner, sweep: dict, exp_dir: Path, t0: float) -> int:
    """Run the trials, then (if the sweep was not interrupted) the report and the task's conclusion."""
    results, stopped = fit_trials(cfg, tuner, exp_dir, task.script)
    if results is None:
        return stopped
    errors = [r for r in results if r.error]
    if results and len(errors) == len(results):
        return none_finished(errors, sweep, exp_dir)
    out_dir = Path(cfg.output_dir) / sweep["experiment"] / sweep["sweep_name"]
    report = task.report(cfg, sweep, out_dir, log)
    concluded = task.conclude(cfg, sweep, report)
    (exp_dir / SWEEP_FILE).write_text(json.dumps({**sweep, "finished": True}, indent=2))  # not one to resume
    print()
    print(report.markdown.read_text().split("\n## ")[0])  # the table and how it was measured; figures in the HTML
    log(f"done in {time.perf_counter() - t0:.0f} s")
    log(f"comparison report: {report.html} (also {report.markdown.name}, {report.csv.name}; logged to the parent run)")
    for line in concluded:
        log(line)
    log(f"trial checkpoints: {exp_dir}")
    log(f"browse the runs: {ui_hint(mlflow.get_tracking_uri(), sweep['experiment_id'], sweep['parent_run_id'])}")
    return 1 if errors else 0


def none_finished(errors: list, sweep: dict, exp_dir: Path) -> int:
    """Every trial failed: nothing to compare or register. The sweep's run ends FAILED (tagged with the first
    failure) and the sweep is not one to resume: its trials spent their retries (max_failures)."""
    first = next((line for line in reversed(str(errors[0].error).splitlines()) if line.strip()), "unknown error")
    mlflow.end_run(status="FAILED")
    (exp_dir / SWEEP_FILE).write_text(json.dumps({**sweep, "finished": True}, indent=2))
    return fail(
        f"no trial finished: all {len(errors)} failed, so there is no report or champion. The first: "
        f"{first.strip()}\n  each trial's error.txt (the whole traceback) is in its directory under {exp_dir}"
    )


def tracking_stop(what: str, exp_dir: Path, script: str = "classify.py") -> int:
    """Some MLflow writes of the trials were not made: the sweep's run is not FINISHED but FAILED, tagged with
    what failed, and no report or champion is made from runs that lack them. ``--resume`` delivers them."""
    with contextlib.suppress(Exception):  # the store may be the very thing that is failing: the message still goes out
        mlflow.set_tag(C.TRACKING_ERROR_TAG, what[:5000])
    with contextlib.suppress(Exception):
        mlflow.end_run(status="FAILED")
    return fail(f"{what}\n  resume: python sweeps/{script} --resume {exp_dir}")


def storage_stop(fault: str, exp_dir: Path, script: str = "classify.py") -> int:
    """The sweep stopped because its storage path is full or read-only: say so, and how to go on."""
    mlflow.set_tags({C.INTERRUPTED_TAG: "true", C.STORAGE_ERROR_TAG: fault[:5000]})
    mlflow.end_run(status="KILLED")
    return fail(
        f"--storage-path {exp_dir.parent}: {fault}. The sweep stopped there: finished trials, their MLflow "
        "runs and checkpoints are kept, unfinished trials continue from their last complete checkpoint. "
        "Free space (or make the directory writable), then resume:\n"
        f"  python sweeps/{script} --resume {exp_dir}"
    )


def _caused_by(e: BaseException | None, kind: type) -> BaseException | None:
    while e is not None:
        if isinstance(e, kind):
            return e
        e = e.__cause__ or e.__context__
    return None


def _yaml(d: dict) -> str:
    import yaml

    return yaml.safe_dump(d, sort_keys=False)
