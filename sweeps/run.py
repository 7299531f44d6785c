"""Run one classification sweep: data -> MLflow parent run -> Ray Tune -> comparison report -> the
champion in the Model Registry; or resume an interrupted one from its Ray Tune experiment directory."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
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

from analysis.report import build_report, default_device
from analysis.samples import SAMPLES_DIR, log_samples
from sweeps.config import ConfigError, SweepConfig, load_config
from sweeps.credentials import restore_credentials, save_credentials, untrusted
from sweeps.space import num_trials, scheduler, search_algorithm
from sweeps.storage import storage_filesystem
from sweeps.tracking import (
    TRIAL_ID_TAG,
    TrackingUnavailable,
    check_tracking_store,
    register_champion,
    reopen_parent_run,
    shown,
    start_parent_run,
    ui_hint,
    use_tracking_uri,
)
from sweeps.trial_runs import MlflowTrialCallback, TrackingIncomplete
from trainables import metrics as M
from trainables.data import DatasetSplits, limit_train, load_splits, split_fingerprint
from trainables.models import build_model, input_size_of
from trainables.trainable import train_classifier

# Written into the Ray Tune experiment directory: which MLflow runs a resumed sweep continues.
SWEEP_FILE = "cvsweep.json"
RECIPE_FILE = "sweep_config.yaml"  # the recipe as run, overrides applied
SKIPPED_FILE = "data/skipped_images.txt"  # on the parent run: path<TAB>problem of each file left out
IGNORED_FILE = "data/ignored_files.txt"  # on the parent run: path<TAB>why of each file or link not used
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


def prepare_data(cfg: SweepConfig) -> DatasetSplits:
    splits = load_splits(
        cfg.data,
        cfg.val_frac,
        cfg.test_frac,
        cfg.seed,
        skip_bad=cfg.skip_bad_images,
        progress=log,
        decode_cache_mb=cfg.decode_cache_mb,
    )
    if splits.split_note:
        log(f"data: {splits.split_note}")
    if splits.decode_note:
        log(f"data: {splits.decode_note}")
    if splits.ignored:
        kinds = ", ".join(f"{n} {kind}" for kind, n in splits.ignored_by_kind().items())
        n = len(splits.ignored)
        log(f"data: {n} file(s) or folder(s) not used ({kinds}), listed in the run's {IGNORED_FILE}")
    if splits.cross_split_copies:
        a, b = splits.cross_split_copies[0]
        log(
            f"warning: {len(splits.cross_split_copies)} image(s) are in more than one split (identical files, e.g. "
            f"{a} = {b}): scores on them are optimistic; remove the copies from the val and test folders"
        )
    if splits.skipped:
        log(f"--skip-bad-images: left out {len(splits.skipped)} unreadable file(s), listed in the run's {SKIPPED_FILE}")
    if splits.duplicates and not splits.cross_split_copies:
        log(f"data: {splits.duplicates} file(s) are identical copies of another; each copy is in its original's split")
    elif splits.duplicates:  # split folders given as they are: copies can be in any of them
        log(f"data: {splits.duplicates} file(s) are identical copies of another, as the split folders hold them")
    if cfg.train_limit is not None:
        splits = limit_train(splits, cfg.train_limit, cfg.seed)
    return splits


def per_trial(cfg: SweepConfig) -> dict[str, float]:
    """What one trial asks Ray for, in Ray's resource names."""
    return {"CPU": cfg.cpus_per_trial, "GPU": cfg.gpus_per_trial}


def check_resources(cfg: SweepConfig, available: dict[str, float], local: bool) -> None:
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


def check_models(cfg: SweepConfig, num_classes: int) -> None:
    """Every (architecture, input size, weights) the space allows is built in the driver and runs one
    image forward, before Ray starts: a model that cannot take an input size, or weights that cannot be
    had, stop the sweep here with the combination named, not in every trial. For 'imagenet' this also
    fills timm's cache, which the trials on this machine then read."""
    import torch

    for arch in cfg.archs:
        for img_size in cfg.dim("img_size").candidates():
            for weights in cfg.dim("weights").candidates():
                if weights != "none":
                    log(f"checking {arch} with weights={weights}")
                model = build_model(arch, num_classes, img_size, weights)
                size = input_size_of(model, img_size)
                try:
                    with torch.inference_mode():
                        model.eval()(torch.zeros(1, 3, size, size))
                except RuntimeError as e:
                    raise ValueError(f"space: {arch} cannot take img_size={size}: {str(e)[:200]}") from None


def build_tuner(cfg: SweepConfig, splits: DatasetSplits, sweep_name: str, callback: MlflowTrialCallback) -> tune.Tuner:
    return tune.Tuner(
        trainable_of(cfg, splits),
        tune_config=tune.TuneConfig(
            search_alg=search_algorithm(cfg),  # the space lives here (define-by-run), not in param_space
            scheduler=scheduler(cfg),
            num_samples=num_trials(cfg),
            trial_dirname_creator=lambda t: f"{t.trial_id}-{t.config['arch']}",  # Ray's default is ~200 chars
            # A trial starts in the process of one that ended: torch, timm and the splits are loaded once per
            # slot, not once per trial (a trial sets all of its own state: threads, seeds, model, data).
            reuse_actors=True,
        ),
        run_config=tune.RunConfig(
            name=sweep_name,
            storage_path=str(storage_root(cfg)),
            storage_filesystem=storage_filesystem(),  # a full disk cannot leave a truncated state file
            callbacks=[callback, StorageWatch()],
            # One kept: Tune registers a checkpoint only once it is fully written, then drops the older one.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            verbose=1,
        ),
    )


def trainable_of(cfg: SweepConfig, splits: DatasetSplits):
    return tune.with_resources(
        tune.with_parameters(train_classifier, splits=splits),  # put in Ray's object store once, not per trial
        {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial},
    )


CHECK_ERRORS = (TrackingUnavailable, FileNotFoundError, ValueError, RuntimeError, OSError)


def check_request(cfg: SweepConfig, tracking_uri: str) -> tuple[DatasetSplits | None, str]:
    """Everything a sweep needs besides Ray, checked before anything starts: the tracking store, the
    data, every model the space allows, and the storage path. The problems, all of them, as one message
    ('' when there are none)."""
    problems: list[str] = []
    splits = None
    for check in (
        lambda: check_tracking_store(tracking_uri),
        lambda: check_storage(storage_root(cfg)),
    ):
        try:
            check()
        except CHECK_ERRORS as e:
            problems.append(str(e))
    try:
        splits = prepare_data(cfg)
        cfg.check_batch_size(len(splits.train))  # the split's size is known only now
    except CHECK_ERRORS as e:
        problems.append(str(e))
    try:  # with the data unreadable, the models are still checked, for 2 classes
        check_models(cfg, splits.num_classes if splits else 2)
    except CHECK_ERRORS as e:
        problems.append(str(e))
    if len(problems) > 1:
        return splits, f"{len(problems)} problems, nothing has started:\n" + "\n".join(f"- {p}" for p in problems)
    return splits, "".join(problems)


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


def storage_root(cfg: SweepConfig) -> Path:
    return Path(cfg.storage_path or DEFAULT_STORAGE).expanduser().resolve()


def fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


# Ray on Linux takes the machine's network address for a node and serves its GCS, raylet and workers on
# all interfaces; on macOS and Windows it takes 127.0.0.1 instead, and they bind that. This switch (Ray's
# own, read when ray is imported) gives a local Linux instance the same: nothing reachable from outside.
RAY_LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
PENDING_TRIALS_ENV = "TUNE_MAX_PENDING_TRIALS_PG"  # how many trials Tune may be starting at once


def starts_local_ray(address: str | None) -> bool:
    """Whether ``ray.init(address=...)`` starts a new instance (no --address, no RAY_ADDRESS and no `ray start`
    instance on this machine; or 'local') rather than joining a cluster. Ray's own reading of the address."""
    from ray._private.services import canonicalize_bootstrap_address

    try:
        return canonicalize_bootstrap_address(address) is None
    except (ConnectionError, ValueError):  # not an address ray.init can join either: it says why
        return False


@contextlib.contextmanager
def loopback_only():
    """A Ray instance started in here serves on 127.0.0.1 only: its own processes (GCS, raylet, agents,
    workers) inherit the switch, this one, which imported ray before, gets Ray's constant set too. Both are
    put back on the way out: a later ray.init in this process (a test, a notebook) may join a cluster."""
    from unittest import mock  # the standard library's set-and-restore, for an environment variable and a constant

    from ray._private import ray_constants

    switch = mock.patch.dict(os.environ, {RAY_LOCAL_ONLY: "0"})
    with switch, mock.patch.object(ray_constants, "ENABLE_RAY_CLUSTER", False):
        yield


def trials_at_once(cfg: SweepConfig, available: dict[str, float]) -> int:
    """How many trials fit in these resources at once (at least 1)."""
    fits = min(available.get(k, 0) / n for k, n in per_trial(cfg).items() if n > 0)
    return max(1, math.floor(fits + 1e-9))  # 0.3 / 0.1 is 2.999...: three trials of 0.1 GPU fit


def start_ray(cfg: SweepConfig) -> str | None:
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


def run_sweep(cfg: SweepConfig, project_root: Path) -> int:
    t0 = time.perf_counter()
    tracking_uri, credentials = use_tracking_uri(cfg.tracking_uri)
    if cfg.tracking_uri:  # the recipe as run, saved in the sweep directory and pickled by Tune: no credentials
        cfg = dataclasses.replace(cfg, tracking_uri=tracking_uri)
    splits, problems = check_request(cfg, tracking_uri)
    if problems:
        return fail(problems)
    s = splits.summary()
    log(
        f"data: {s['data_source']}: {s['num_classes']} classes, train/val/test = "
        f"{s['train_size']}/{s['val_size']}/{s['test_size']} images ({s['data_layout']}, seed {cfg.seed})"
    )
    experiment = cfg.experiment or f"classify-{splits.name}"
    sweep_name = time.strftime("sweep-%Y%m%d-%H%M%S")
    exp_dir = storage_root(cfg) / sweep_name
    log(f"MLflow: {shown(tracking_uri)}, experiment {experiment!r}")

    if error := start_ray(cfg):
        return fail(error)
    n = num_trials(cfg)
    log(f"Ray: {ray.cluster_resources()}; {n} trials, up to {cfg.max_epochs} epochs each")
    objectives = " and ".join(f"{M.OBJECTIVES[o]} {o}" for o in cfg.objectives)
    log(f"search: {cfg.search} ({objectives}), ASHA {'on' if cfg.asha else 'off'}, recipe {cfg.source}")
    if cfg.search == "grid" and n < cfg.grid_size():
        log(f"warning: num_samples={n} runs only {n} of the grid's {cfg.grid_size()} configurations")
    if cfg.search != "grid" and cfg.num_samples is not None and n < cfg.num_samples:
        log(f"num_samples={cfg.num_samples}, but the space has only {n} configurations: each runs once, {n} trials")

    with start_parent_run(experiment, sweep_name, project_root) as parent:
        exp_id, parent_id = parent.info.experiment_id, parent.info.run_id
        fingerprint = split_fingerprint(splits)
        mlflow.log_params({**cfg.flat(), **s, "split_fingerprint": fingerprint})
        searched = ",".join(k for k, d in cfg.space.items() if d.searched)  # what a "configuration" is
        mlflow.log_params({"trials_planned": n, "searched": searched or "arch"})
        mlflow.log_dict(cfg.to_yaml_dict(addresses=False), RECIPE_FILE)
        mlflow.log_dict({"points_to_evaluate": cfg.starting_points()}, "search_space.json")
        if splits.skipped:
            mlflow.log_text("".join(f"{path}\t{why}\n" for path, why in splits.skipped), SKIPPED_FILE)
        if splits.ignored:
            mlflow.log_text("".join(f"{path}\t{why}\n" for path, why in splits.ignored), IGNORED_FILE)
        shown_on = log_samples(splits.val, splits.classes)  # every model's Grad-CAM is drawn on these
        log(f"samples: {shown_on} validation images on the sweep's run ({SAMPLES_DIR}/), for every model's Grad-CAM")
        exp_dir.mkdir(parents=True, exist_ok=True)
        (exp_dir / RECIPE_FILE).write_text(_yaml(cfg.to_yaml_dict()))
        sweep = {
            "tracking_uri": tracking_uri,
            "experiment": experiment,
            "experiment_id": exp_id,
            "parent_run_id": parent_id,
            "sweep_name": sweep_name,
            "split_fingerprint": fingerprint,
        }
        (exp_dir / SWEEP_FILE).write_text(json.dumps(sweep, indent=2))
        if kept := save_credentials(exp_dir, credentials):
            log(f"the credentials of {shown(tracking_uri)}: kept for --resume in {kept} (mode 0600), nowhere else")
        log(f"sweep directory: {exp_dir} (resume an interrupted sweep with --resume {exp_dir})")
        callback = MlflowTrialCallback(tracking_uri, exp_id, parent_id, sweep_name, cfg.tracking_wait_s, str(exp_dir))
        tuner = build_tuner(cfg, splits, sweep_name, callback)
        return finish(cfg, tuner, sweep, exp_dir, t0)


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
    gone = [r for r in children if r.data.tags.get(TRIAL_ID_TAG) not in saved]
    for run in gone:
        client.delete_run(run.info.run_id)
        log(
            f"trial {run.data.tags.get(TRIAL_ID_TAG)} ({run.info.run_name}) started after the last state the sweep "
            f"could save: its run {run.info.run_id} is deleted in MLflow; the search proposes it again"
        )
    if gone:
        before = parent.data.tags.get("forgotten_runs", "")
        mlflow.set_tag("forgotten_runs", ",".join(filter(None, [before, *(r.info.run_id for r in gone)])))
    return [r.info.run_id for r in gone]


def resume_sweep(exp_dir: Path, address: str | None, project_root: Path) -> int:
    """Continue an interrupted sweep: the same parent run, finished trials kept, unfinished ones
    continued from their last checkpoints into their own child runs (Tuner.restore)."""
    t0 = time.perf_counter()
    exp_dir = exp_dir.expanduser().resolve()
    if not (exp_dir / SWEEP_FILE).is_file():
        found = sorted(p.parent for p in exp_dir.glob(f"*/{SWEEP_FILE}"))[-3:]
        hint = f"; sweeps under it: {', '.join(map(str, found))}" if found else ""
        return fail(f"--resume {exp_dir}: not a sweep directory (no {SWEEP_FILE}){hint}")
    if refused := untrusted(exp_dir):
        return fail(refused)
    log(
        f"--resume unpickles the sweep's saved Tune state (tuner.pkl, searcher and experiment state in {exp_dir}): "
        "whoever can write there can run code as you"
    )
    sweep = json.loads((exp_dir / SWEEP_FILE).read_text())
    try:
        cfg = load_config(exp_dir / RECIPE_FILE)
    except ConfigError as e:
        return fail(str(e))
    if address is not None:
        cfg = dataclasses.replace(cfg, address=address)
    restore_credentials(exp_dir)
    tracking_uri, _ = use_tracking_uri(sweep["tracking_uri"])
    try:
        check_tracking_store(tracking_uri)
        check_storage(exp_dir)
        splits = prepare_data(cfg)
    except CHECK_ERRORS as e:
        return fail(str(e))
    if split_fingerprint(splits) != sweep["split_fingerprint"]:  # the data changed under the sweep
        return fail(
            f"--resume {exp_dir}: the data ({splits.source}) no longer splits into the images this sweep "
            "trained and tested on (split fingerprint differs); start a new sweep instead."
        )
    if error := start_ray(cfg):
        return fail(error)
    log(f"resuming {sweep['sweep_name']} from {exp_dir}; MLflow: {shown(tracking_uri)}")
    with reopen_parent_run(sweep["parent_run_id"]):
        forget_unsaved_trials(saved_trials(exp_dir), sweep["parent_run_id"])
        tuner = tune.Tuner.restore(
            str(exp_dir),
            trainable=trainable_of(cfg, splits),
            storage_filesystem=storage_filesystem(),
            resume_unfinished=True,  # interrupted trials continue from their last checkpoint
            resume_errored=False,  # a trial that failed for good (max_failures spent) stays failed
        )
        return finish(cfg, tuner, sweep, exp_dir, t0)


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
    planned = num_trials(cfg)
    if ended < planned:  # Ctrl-C: Tune saved the experiment and returned early
        mlflow.set_tag("interrupted", "true")
        mlflow.end_run(status="KILLED")
        log(f"interrupted: {ended} of {planned} trials ended; runs, checkpoints and the search's state are kept")
        log(f"resume with: python sweeps/{script} --resume {exp_dir}")
        return None, 130
    mlflow.set_tag("interrupted", "false")
    if "tracking_error" in mlflow.get_run(mlflow.active_run().info.run_id).data.tags:  # a resume delivered them
        mlflow.delete_tag("tracking_error")
        log("the MLflow writes an earlier attempt could not make are delivered")
    errors = [r for r in results if r.error]
    mlflow.log_metrics({"trials": len(results), "trials_failed": len(errors)})
    if errors:
        mlflow.set_tag("failed_trials", ", ".join(str(r.path) for r in errors))
    log(f"trials finished: {len(results) - len(errors)} of {len(results)}; profiling the best of each model")
    return results, None


def finish(cfg: SweepConfig, tuner: tune.Tuner, sweep: dict, exp_dir: Path, t0: float) -> int:
    """Run the trials, then (if the sweep was not interrupted) the table and the champion."""
    results, stopped = fit_trials(cfg, tuner, exp_dir)
    if results is None:
        return stopped
    errors = [r for r in results if r.error]

    exp_id, parent_id, experiment = sweep["experiment_id"], sweep["parent_run_id"], sweep["experiment"]
    out_dir = Path(cfg.output_dir) / experiment / sweep["sweep_name"]
    parent = mlflow.get_run(parent_id)
    report = build_report(exp_id, parent, out_dir, "arch", default_device(), progress=log, timing_s=cfg.timing_s)
    table, md = report.table, report.markdown
    champion = None
    if not table.empty:
        top = table.iloc[0]  # the table is sorted by best validation accuracy: selection never sees test
        description = (
            f"{top['arch']} from sweep {sweep['sweep_name']}: val acc {top[M.BEST_VAL_ACC]:.4f}, "
            f"test acc {top[M.TEST_ACC]:.4f}, test macro-F1 {top[M.TEST_F1]:.4f}"
        )
        champion = register_champion(cfg.registered_model or experiment, top["run_id"], description)
        mlflow.set_tag("champion", champion)

    print()
    print(md.read_text().split("\n## ")[0])  # the table and how it was measured; figures are in the HTML
    log(f"done in {time.perf_counter() - t0:.0f} s")
    log(f"comparison report: {report.html} (also {md.name}, {report.csv.name}; logged to the parent run)")
    if champion:
        uri = f"models:/{champion.split()[0]}"
        log(f"champion: {champion}, run {top['run_id']}; load it with mlflow.pytorch.load_model('{uri}')")
    log(f"trial checkpoints: {exp_dir}")
    log(f"browse the runs: {ui_hint(mlflow.get_tracking_uri(), exp_id, parent_id)}")
    return 1 if errors else 0


def tracking_stop(what: str, exp_dir: Path, script: str = "classify.py") -> int:
    """Some MLflow writes of the trials were not made: the sweep's run is not FINISHED but FAILED, tagged with
    what failed, and no report or champion is made from runs that lack them. ``--resume`` delivers them."""
    with contextlib.suppress(Exception):  # the store may be the very thing that is failing: the message still goes out
        mlflow.set_tag("tracking_error", what[:5000])
    with contextlib.suppress(Exception):
        mlflow.end_run(status="FAILED")
    return fail(f"{what}\n  resume: python sweeps/{script} --resume {exp_dir}")


def storage_stop(fault: str, exp_dir: Path, script: str = "classify.py") -> int:
    """The sweep stopped because its storage path is full or read-only: say so, and how to go on."""
    mlflow.set_tags({"interrupted": "true", "storage_error": fault[:5000]})
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
