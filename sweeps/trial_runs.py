"""One MLflow child run per Ray Tune trial, exactly once, whatever happens to the trial or the driver.

All MLflow writes of trials happen in the driver, in one background thread that a Tune ``Callback``
feeds; the trials only report metrics to Tune. So:

- the tracking store has a single writer, however many trials run at once: no "database is locked"
  with the local SQLite store, and workers on a cluster need no route to the tracking server;
- Tune's loop never waits for MLflow: while a tracking server is away the trials keep training and
  the writes queue up, retried in order until the server is back (or the sweep fails loudly at its end);
- the writes not made yet are part of the callback's state, which Tune saves with the experiment, so a
  resumed sweep delivers them.

Ray's stock ``MLflowLoggerCallback`` keeps its trial -> run map only in memory, so a restored sweep
opens second runs. Here the child run of a trial is found by its ``ray_trial_id`` tag under the parent,
and an epoch already in a run's history is not logged again (a trial resumed from a checkpoint older
than its last logged epoch replays those epochs).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import pickle
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import requests
import sqlalchemy.exc
from mlflow.entities import LoggedModelOutput, LoggedModelStatus, Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.models.model import MLMODEL_FILE_NAME
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from ray.tune import Callback
from ray.tune.experiment import Trial

from sweeps.config import trial_params
from sweeps.storage import PARTIAL_SUFFIX
from trainables import detection as D
from trainables import metrics as M
from trainables.config import epochs_planned, run_name
from trainables.contracts import (
    CONFIRM_STAGE,
    DETECT_RECORD_FILE,
    DETECT_WEIGHTS_FILE,
    DEVICE_TAG,
    EPOCH_GAP_TAG,
    ERROR_TAG,
    EVIDENCE_DIR,
    EVIDENCE_MANIFEST,
    FAMILY_PARAM,
    FAMILY_TAG,
    GRADCAM_TAG,
    HOSTNAME_TAG,
    INFO_PREFIX,
    LAST_ERROR_TAG,
    MLFLOW_MODEL_DIR,
    MODEL_ID_TAG,
    PICKLE_NOTE,
    RETRIES_TAG,
    RUN_ARTIFACTS_DIR,
    SEARCH_STAGE,
    STAGE_TAG,
    STOPPED_EARLY_TAG,
    SWEEP_TAG,
    TRIAL_ID_TAG,
    WEIGHTS_DIR,
    EvidenceManifest,
    checkpoint_files,
    stage_of,
)
from trainables.models import family_of

MAX_PARAM_LEN = 6000  # MLflow's limit on a parameter value's length, in characters
RETRY_S = 5.0  # pause between attempts while the tracking store refuses a write
PERMANENT_ATTEMPTS = 3  # a write that fails for another reason than an unreachable store, this often, is set aside
MAX_REFUSALS_SHOWN = 3  # refused writes quoted in the end-of-sweep error; the rest are counted
# MLflow error codes of a store that is there but cannot answer now; any other MlflowException is a refusal.
TRANSIENT_CODES = {"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "DEADLINE_EXCEEDED"}
REPORT_EVERY_S = 30.0  # how often a waiting flush says what it waits for
# In the sweep directory: writes the store refused or never took by the sweep's end, for --resume to deliver.
# Tune saves the experiment's state before it ends the callbacks, so what fails at the end needs a file of its own.
UNSENT_FILE = "unsent_mlflow_writes.pkl"


def log(msg: str) -> None:
    print(f"[mlflow] {msg}", flush=True)


def _params(d: dict[str, Any]) -> list[Param]:
    return [Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in sorted(d.items())]


class TrackingIncomplete(RuntimeError):
    """Some MLflow writes of the sweep could not be made; they are kept in the sweep's saved state."""


def transient(e: Exception) -> bool:
    """Whether a failed write may succeed later as it is: the store is away or busy, not refusing it."""
    if isinstance(e, (requests.RequestException, ConnectionError, TimeoutError, sqlalchemy.exc.OperationalError)):
        return True
    return isinstance(e, MlflowException) and e.error_code in TRANSIENT_CODES


class MlflowTrialCallback(Callback):
    """Turns Tune's trial events into MLflow writes, made in order by a background thread.

    For classification trials; a task subclasses it with its own metric names and run contents
    (``DetectionTrialCallback``)."""

    epoch_metrics: tuple[str, ...] = (*M.EPOCH_METRICS, *M.SYSTEM_METRICS, M.UNREADABLE_IMAGES)  # from each result
    summary_metrics: tuple[str, ...] = (*M.SUMMARY_METRICS, M.TEST_TOP5)  # from the last result
    history_metric: str = M.VAL_ACC  # read back to find the last epoch a run already has

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        sweep_name: str,
        flush_timeout_s: float = 900,
        sweep_dir: str | None = None,
        sweep_seed: int | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.sweep_name = sweep_name
        self.flush_timeout_s = flush_timeout_s  # how long the end of a sweep waits for an absent server
        self.sweep_dir = sweep_dir  # where writes not made by the sweep's end are kept for --resume
        self.sweep_seed = sweep_seed  # the search's seed: a trial with another is a confirmation (STAGE_TAG)
        self._runs: dict[str, str] = {}  # trial id -> run id, a cache of what the tags say
        self._pending: collections.deque[dict] = collections.deque()  # writes not made yet, oldest first
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._client: MlflowClient | None = None
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._last_step: dict[str, int] = {}  # run id -> last epoch in its history
        self._info_logged: set[str] = set()  # run ids whose trial facts are logged
        self._error: str | None = None  # the last failed write, while it is being retried
        self._dropped: list[str] = []  # what the store said when it refused a write, for the end-of-sweep error
        self._refused: list[dict] = []  # those writes, kept to be tried again by a resumed sweep
        self._ended: set[str] = set()  # trials that completed or failed for good while this process ran
        self._datasets: list | None = None  # the sweep run's dataset inputs, read once, given to every trial run
        self._first_start: float | None = None  # time.monotonic() of the first trial start this process saw
        self._last_end: float | None = None  # ... and of the last trial end
        self._noted_pickle = False

    # The callback is pickled with the Tuner (tuner.pkl) and restored from it: no thread, lock or client.
    def __getstate__(self) -> dict:
        return {**self.settings(), "_runs": self._runs, "_pending": list(self._pending)}

    def settings(self) -> dict:
        """What the callback was made with, without the trials' runs and writes (pickled by ``TrialNames``)."""
        keep = (
            "tracking_uri",
            "experiment_id",
            "parent_run_id",
            "sweep_name",
            "flush_timeout_s",
            "sweep_dir",
            "sweep_seed",
        )
        return {k: self.__dict__[k] for k in keep}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("sweep_dir", None)
        self.__dict__.setdefault("sweep_seed", None)
        self._pending = collections.deque(state["_pending"])
        self._init_runtime()

    # Tune saves this with every experiment snapshot and hands it back on Tuner.restore.
    def get_state(self) -> dict:
        with self._cv:  # refused writes first: they are older than any still queued
            return {"runs": dict(self._runs), "pending": [*self._refused, *self._pending]}

    def set_state(self, state: dict) -> None:
        unsent = self._read_unsent()  # written after Tune's last save of this state: the newer account
        with self._cv:
            self._runs = dict(state["runs"])
            self._pending = collections.deque(state["pending"] if unsent is None else unsent)
        if self._pending:
            log(f"{len(self._pending)} writes saved with the sweep's state are delivered now")
            self._start()

    def _unsent_path(self) -> Path | None:
        return Path(self.sweep_dir) / UNSENT_FILE if self.sweep_dir else None

    def _read_unsent(self) -> list[dict] | None:
        path = self._unsent_path()
        if path is None or not path.is_file():
            return None
        with path.open("rb") as f:
            return pickle.load(f)  # the sweep's own file, beside Tune's pickled state in the same directory

    def _keep_unsent(self) -> None:
        """Every write not made, refused ones first, into the sweep directory (readable by its owner only),
        where a resumed sweep finds them; the file goes once a sweep has made every write."""
        path = self._unsent_path()
        if path is None:
            return
        unsent = [*self._refused, *self._pending]
        if not unsent:
            path.unlink(missing_ok=True)
            return
        tmp = path.with_suffix(".tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as f:
            pickle.dump(unsent, f)
        tmp.replace(path)

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    # ---- Tune's events: each becomes a write in the queue ------------------------------------------

    def _put(self, kind: str, trial: Trial, **payload: Any) -> None:
        op = {"op": kind, "trial": trial.trial_id, "config": dict(trial.config), **payload}
        with self._cv:
            self._pending.append(op)
            self._cv.notify_all()
        self._start()

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._first_start = self._first_start or time.monotonic()
        self._put("open", trial)

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info) -> None:
        self._put(
            "result",
            trial,
            epoch=int(result[M.EPOCH]),
            metrics={k: float(result[k]) for k in self.epoch_metrics if k in result},
            info={k[len(INFO_PREFIX) :]: v for k, v in result.items() if k.startswith(INFO_PREFIX)},
            hostname=str(result.get("hostname", "")),
        )

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._put("recover", trial, failures=trial.num_failures, error=_error_text(trial))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        last = trial.last_result or {}
        summary = {k: float(last[k]) for k in self.summary_metrics if k in last}
        self._ended.add(trial.trial_id)
        self._last_end = time.monotonic()
        self._put("complete", trial, epoch=int(last.get(M.EPOCH, 0)), summary=summary, checkpoint=trial.checkpoint)

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info) -> None:
        self._ended.add(trial.trial_id)
        self._last_end = time.monotonic()
        self._put("error", trial, error=_error_text(trial))

    def on_experiment_end(self, trials: list[Trial], **info) -> None:
        """Runs of trials an interrupted sweep leaves unfinished are marked KILLED (a resumed sweep
        reopens them); then every queued write is made before the sweep goes on to its report. Tune's
        cleanup marks every trial of an interrupted sweep TERMINATED before this is called (Ray 2.60; the
        snapshot it saved before says otherwise), so a trial counts as ended only if Tune said so while
        this process ran; one that ended before a resume is left as it is (only a RUNNING run is marked
        KILLED), and one that never started gets no run."""
        for trial in trials:
            if trial.trial_id not in self._ended:
                self._put("interrupted", trial)
        flushed = self.flush(self.flush_timeout_s)
        with self._cv:
            self._keep_unsent()
        if flushed and self._last_end is not None:  # what the tracking of the trials added to the sweep's time
            done, first = time.monotonic(), self._first_start or self._last_end
            log(
                f"{len(self._ended)} trials ended in {self._last_end - first:.1f} s; their MLflow writes "
                f"were all made {done - self._last_end:.1f} s after the last one ended"
            )
        if not flushed:
            raise TrackingIncomplete(
                f"{len(self._pending)} MLflow writes could not be made in {self.flush_timeout_s:g} s "
                f"(last error: {self._error}). They are saved with the sweep's state: once {self.tracking_uri} "
                "answers again, resume the sweep (--resume) to deliver them."
            )
        if self._dropped:
            shown = "; ".join(self._dropped[:MAX_REFUSALS_SHOWN])
            extra = len(self._dropped) - MAX_REFUSALS_SHOWN
            more = f"; and {extra} more" if extra > 0 else ""
            raise TrackingIncomplete(
                f"{len(self._dropped)} MLflow writes were refused by {self.tracking_uri}: {shown}{more}. "
                "What the trials trained is kept: once the cause is fixed, resume the sweep (--resume) to deliver them."
            )

    # ---- the writer thread -------------------------------------------------------------------------

    def _start(self) -> None:
        with self._cv:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._drain, name="mlflow-writer", daemon=True)
                self._thread.start()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued write is made; False if some are still pending after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        next_report = time.monotonic() + REPORT_EVERY_S
        with self._cv:
            while self._pending:
                now = time.monotonic()
                if now >= deadline:
                    return False
                if now >= next_report and self._error:
                    log(f"waiting for {self.tracking_uri}: {len(self._pending)} writes pending ({self._error})")
                    next_report = now + REPORT_EVERY_S
                self._cv.wait(timeout=min(1.0, deadline - now))
        return True

    def _drain(self) -> None:
        mlflow.set_tracking_uri(self.tracking_uri)  # log_model's fluent half, in this thread too
        while True:
            with self._cv:
                while not self._pending:
                    self._cv.wait()
                op = self._pending[0]
            self._attempt(op)
            with self._cv:
                self._pending.popleft()
                self._cv.notify_all()

    def _attempt(self, op: dict) -> None:
        """Make one write: retried while the store is away (however long), dropped with an error kept
        for the end of the sweep if the store refuses it ``PERMANENT_ATTEMPTS`` times."""
        what = f"write '{op['op']}' of trial {op['trial']}"
        failures = 0
        while True:
            try:
                self._apply(op)
            except Exception as e:  # noqa: BLE001 - every failed write is retried or reported, never ignored
                failures += 1
                error = f"{type(e).__name__}: {str(e)[:300]}"
                if not transient(e) and failures >= PERMANENT_ATTEMPTS:
                    log(f"error: {what} refused {failures} times, kept for --resume: {error}")
                    self._dropped.append(f"{what}: {error}")
                    self._refused.append(op)
                    self._error = None
                    return
                if error != self._error or failures % 12 == 0:
                    log(f"{what} failed ({error}); retrying every {RETRY_S:g} s")
                self._error = error
                time.sleep(RETRY_S)
                continue
            if failures:
                log(f"the tracking store answers again: {what} made after {failures} failed attempts")
            self._error = None
            return

    def _apply(self, op: dict) -> None:
        run_id = self._run_id(op["trial"], op["config"], create=op["op"] != "interrupted")
        if run_id is not None:  # None: an interrupted trial that never started has no run, nor gets one
            getattr(self, f"_on_{op['op']}")(run_id, op)

    def _run_id(self, trial_id: str, config: dict, create: bool = True) -> str | None:
        if trial_id not in self._runs:
            found = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.parent_run_id}' "
                f"and tags.`{TRIAL_ID_TAG}` = '{trial_id}'",
            )
            if not found and not create:
                return None
            self._runs[trial_id] = found[0].info.run_id if found else self._create_run(trial_id, config)
        run_id = self._runs[trial_id]
        if run_id not in self._last_step:  # a run met for the first time by this process: read its history
            history = self.client.get_metric_history(run_id, self.history_metric)
            self._last_step[run_id] = max((m.step for m in history), default=0)
        return run_id

    def trial_name(self, config: dict) -> str:
        """The trial's name in Tune's console and its MLflow run's name: the configuration, and for a
        confirmation trial its seed (which tells its runs apart)."""
        name = self._describe(config)[0]
        return name + f"-seed{config['seed']}" if self._stage(config) == CONFIRM_STAGE else name

    def _stage(self, config: dict) -> str:
        return SEARCH_STAGE if self.sweep_seed is None else stage_of(config, self.sweep_seed)

    def _create_run(self, trial_id: str, config: dict) -> str:
        name, params = self.trial_name(config), self._describe(config)[1]
        stage = self._stage(config)
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={
                MLFLOW_PARENT_RUN_ID: self.parent_run_id,
                MLFLOW_RUN_NAME: name,
                TRIAL_ID_TAG: trial_id,
                SWEEP_TAG: self.sweep_name,
                FAMILY_TAG: params[FAMILY_PARAM],
                STAGE_TAG: stage,
            },
        )
        self.client.log_batch(run.info.run_id, params=_params(params))
        if self._datasets is None:  # the sweep's data, as its run records it: each trial trained on the same
            self._datasets = self.client.get_run(self.parent_run_id).inputs.dataset_inputs
        if self._datasets:
            self.client.log_inputs(run.info.run_id, self._datasets)
        return run.info.run_id

    def _describe(self, config: dict) -> tuple[str, dict[str, Any]]:
        """The run's name and parameters: every TrialConfig field, the defaults the sweep did not set
        included (the run says what ran), and the model family."""
        return run_name(config), {**trial_params(config), FAMILY_PARAM: family_of(config["arch"])}

    def _status(self, run_id: str) -> str:
        return self.client.get_run(run_id).info.status

    def _on_open(self, run_id: str, op: dict) -> None:
        status = self._status(run_id)
        if status == "FINISHED":  # replayed by a restore from a snapshot older than its end: all logged already
            log(f"trial {op['trial']}: its run finished before the sweep stopped; it stays as it was")
        elif status != "RUNNING":  # a retried or resumed trial: its run goes on
            self.client.update_run(run_id, status="RUNNING")

    def _on_result(self, run_id: str, op: dict) -> None:
        epoch, last = op["epoch"], self._last_step[run_id]
        if epoch <= last:
            log(f"trial {op['trial']}: epoch {epoch} is already in its run (resumed from an earlier checkpoint)")
            return
        if epoch > last + 1:  # cannot happen while results arrive in order; say so loudly if it does
            log(f"warning: trial {op['trial']}: epochs {last + 1}..{epoch - 1} missing from its run")
            self.client.set_tag(run_id, EPOCH_GAP_TAG, f"{last + 1}..{epoch - 1}")
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, epoch) for k, v in op["metrics"].items()]
        params, tags = [], []
        if run_id not in self._info_logged and DEVICE_TAG not in self.client.get_run(run_id).data.tags:
            params = _params(op["info"])
            tags = [RunTag(HOSTNAME_TAG, op["hostname"]), RunTag(DEVICE_TAG, str(op["info"].get("device", "")))]
        self.client.log_batch(run_id, metrics=metrics, params=params, tags=tags)
        self._info_logged.add(run_id)
        self._last_step[run_id] = epoch

    def _on_recover(self, run_id: str, op: dict) -> None:
        log(f"trial {op['trial']} failed and is retried from its last checkpoint: {op['error'][:200]}")
        self.client.log_batch(
            run_id, tags=[RunTag(RETRIES_TAG, str(op["failures"])), RunTag(LAST_ERROR_TAG, op["error"][:5000])]
        )

    def _on_complete(self, run_id: str, op: dict) -> None:
        if self._status(run_id) == "FINISHED":  # delivered before a restore replayed it
            return
        now, step = int(time.time() * 1000), op["epoch"]
        summary = [Metric(k, v, now, step) for k, v in op["summary"].items()]
        stopped_early = step < epochs_planned(op["config"])
        self.client.log_batch(
            run_id,
            metrics=[*summary, Metric(M.EPOCHS_RUN, float(step), now, step)],
            tags=[RunTag(STOPPED_EARLY_TAG, str(stopped_early).lower())],
        )
        if op["checkpoint"] is not None:
            with checkpoint_files(op["checkpoint"]) as d, complete_files(d) as d:
                self._log_final(run_id, op, d)
        self.client.set_terminated(run_id, status="FINISHED")

    def _log_final(self, run_id: str, op: dict, checkpoint_dir: Path) -> None:
        """What a finished trial leaves besides its metrics: the evidence its last checkpoint carries."""
        self._log_evidence(run_id, checkpoint_dir)

    def _on_error(self, run_id: str, op: dict) -> None:
        self.client.set_tag(run_id, ERROR_TAG, op["error"][:5000])
        self.client.set_terminated(run_id, status="FAILED")

    def _on_interrupted(self, run_id: str, op: dict) -> None:
        if self._status(run_id) == "RUNNING":
            self.client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.KILLED))

    # ---- the evidence of a finished trial ----------------------------------------------------------

    def _log_evidence(self, run_id: str, checkpoint_dir: Path) -> None:
        """Uploads what the trial made on its worker (``trainables.trial_evidence``): the best epoch's weights
        with the preprocessing they expect (``checkpoint/best_model.pt``), the confusion matrix, per-class
        report, predictions, learning curves and Grad-CAM heatmaps (``evidence/``), and the model in MLflow's
        PyTorch flavour. Files only: the driver never builds a model, whatever its size."""
        manifest_file = checkpoint_dir / EVIDENCE_MANIFEST
        manifest: EvidenceManifest | None = json.loads(manifest_file.read_text()) if manifest_file.is_file() else None
        if manifest is None or manifest["epoch"] is None:  # said on the run and here, never silent
            why = (
                "none: the trial's checkpoint has no evidence (a trial begun by an earlier version)"
                if manifest is None
                else f"none: the trial ended after epoch {manifest['at_epoch']}, where the sweep did not expect "
                "it to stop, and made its evidence only where it did"
            )
            self.client.set_tag(run_id, GRADCAM_TAG, why)
            log(f"warning: trial run {run_id}: no evidence: {why[len('none: ') :]}")
            return
        self.client.log_artifacts(run_id, str(checkpoint_dir / RUN_ARTIFACTS_DIR))
        self.client.set_tag(run_id, GRADCAM_TAG, manifest["gradcam"])
        if manifest["gradcam"].startswith("none"):
            log(f"trial run {run_id}: no Grad-CAM: {manifest['gradcam'][len('none: ') :]}")
        if MODEL_ID_TAG not in self.client.get_run(run_id).data.tags:
            self._log_model(run_id, checkpoint_dir / MLFLOW_MODEL_DIR, manifest["epoch"])

    def _log_model(self, run_id: str, model_dir: Path, step: int) -> None:
        """The trial's MLflow model directory as the run's logged model (``models:/<id>``), as
        ``mlflow.pytorch.log_model`` would have logged it from the model object."""
        if not self._noted_pickle:  # MLflow's note, which the trials keep to themselves (trainables.trial_evidence)
            log(f"note: {PICKLE_NOTE}")
            self._noted_pickle = True
        model = self.client.create_logged_model(self.experiment_id, name="model", source_run_id=run_id)
        self.client.log_outputs(run_id, [LoggedModelOutput(model.model_id, step=step)])
        with tempfile.TemporaryDirectory() as d:  # links to the trial's files, whatever their size; MLmodel anew
            local = Path(d) / "model"
            shutil.copytree(model_dir, local, copy_function=os.symlink)
            meta = Model.load(str((model_dir / MLMODEL_FILE_NAME).resolve()))  # + the ids the worker could not know
            meta.run_id, meta.model_id, meta.model_uuid = run_id, model.model_id, model.model_id
            meta.artifact_path = model.artifact_location
            (local / MLMODEL_FILE_NAME).unlink()
            meta.save(str(local / MLMODEL_FILE_NAME))
            self.client.log_model_artifacts(model.model_id, str(local))
        self.client.finalize_logged_model(model.model_id, LoggedModelStatus.READY)
        self.client.set_tag(run_id, MODEL_ID_TAG, model.model_id)


@contextlib.contextmanager
def complete_files(folder: Path) -> Iterator[Path]:
    """``folder`` less the files a lost writer left unfinished. The sweep's storage writes each file beside
    its place and renames it once complete (``sweeps.storage``); a node lost while it uploaded a checkpoint
    leaves those partial files in the checkpoint's directory, which the retried trial writes again. Said,
    and the rest linked, not copied."""
    unfinished = sorted(str(p.relative_to(folder)) for p in folder.rglob(f"*{PARTIAL_SUFFIX}"))
    if not unfinished:
        yield folder
        return
    names = ", ".join(unfinished)
    log(f"note: {folder}: left out {len(unfinished)} unfinished file(s) of an interrupted write: {names}")
    with tempfile.TemporaryDirectory() as d:
        kept = Path(d) / folder.name
        shutil.copytree(folder, kept, copy_function=os.symlink, ignore=shutil.ignore_patterns(f"*{PARTIAL_SUFFIX}"))
        yield kept


class TrialNames:
    """Tune's ``trial_name_creator``: each trial named as its MLflow run (``MlflowTrialCallback.trial_name``).

    Tune pickles its name functions into every trial's saved state, again at each of the trial's results, and
    keeps that state in the driver's memory: this one pickles as the callback's settings only. A closure over
    the callback would put its trial-to-run map and every unsent write into each trial's state: memory and
    snapshot time quadratic in the trials."""

    def __init__(self, callback: MlflowTrialCallback) -> None:
        self.callback = callback

    def __call__(self, trial: Trial) -> str:
        return self.callback.trial_name(trial.config)

    def __reduce__(self) -> tuple:
        return _trial_names, (type(self.callback), {**self.callback.settings(), "_runs": {}, "_pending": []})


def _trial_names(callback_type: type[MlflowTrialCallback], settings: dict) -> TrialNames:
    callback = callback_type.__new__(callback_type)
    callback.__setstate__(settings)
    return TrialNames(callback)


def _error_text(trial: Trial) -> str:
    return str(trial.error_file or "see Ray Tune's trial log")


class DetectionTrialCallback(MlflowTrialCallback):
    """The same one-run-per-trial logging for detection trials (``trainables.detection``): per-epoch
    losses, precision, recall, mAP50 and mAP50-95; at the end the best epoch's test metrics and its
    weights (``weights/best.pt``, loadable with ``ultralytics.YOLO``)."""

    epoch_metrics = (*D.EPOCH_METRICS, *M.SYSTEM_METRICS)
    summary_metrics = D.SUMMARY_METRICS
    history_metric = D.SEARCH_METRIC

    def _describe(self, config: dict) -> tuple[str, dict[str, Any]]:
        cfg = D.DetectTrialConfig.from_dict(config)
        lr = f"{cfg.lr0:.0e}".replace("e-0", "e-")
        name = f"{cfg.model}-{cfg.imgsz}px-{cfg.optimizer}-{cfg.augment}-lr{lr}"
        # The augmentation values the trial trains with, resolved from its strength level.
        params = {**cfg.to_dict(), **cfg.augmentation(), "nbs": cfg.nbs or cfg.batch, FAMILY_PARAM: cfg.family}
        return name, params

    def _log_final(self, run_id: str, op: dict, checkpoint_dir: Path) -> None:
        for name, where in ((DETECT_WEIGHTS_FILE, WEIGHTS_DIR), (DETECT_RECORD_FILE, EVIDENCE_DIR)):
            if (checkpoint_dir / name).is_file():
                self.client.log_artifact(run_id, str(checkpoint_dir / name), where)
