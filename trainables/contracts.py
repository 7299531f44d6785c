"""What crosses a layer, defined once: the state a classification trial saves in each checkpoint, the
best-model file of a finished trial, and the MLflow run schema (tag, parameter and artifact names) that
``sweeps/`` writes and ``analysis/`` reads. Metric names are ``trainables.metrics``'.

Every value here is user-visible (the MLflow UI, ``runs:/`` URIs, filters such as ``tags.sweep = '...'``):
change one and runs already logged no longer match.

Light on purpose: the standard library only (torch and pyarrow are imported by the functions that need them),
so that any module of any layer can import it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

if TYPE_CHECKING:
    from torch import Tensor

# -- a classification trial's checkpoint (trainables.engine builds it, trainables.trainable saves it) --

STATE_FILE = "state.pt"  # in every Tune checkpoint of a classification trial


class TrialInfo(TypedDict):
    """Facts about the trial (``trainables.engine.build``), logged as its run's parameters under these names."""

    num_classes: int
    input_size: int  # px, the model's square input
    interpolation: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_pct: float | None
    param_count: int
    trainable_param_count: int
    device: str
    amp_active: bool
    channels_last: bool
    loader_workers: int
    weights_source: str


class BestEpoch(TypedDict):
    """The epoch validation chose so far, evaluated on the test split when it was chosen."""

    epoch: int
    val_acc: float
    test: dict[str, float]  # trainables.metrics' TEST_* names -> value
    test_report: dict[str, list]  # confusion matrix, per-class metrics, every test image's true and predicted label
    classes: list[str]
    model: dict[str, Tensor]  # that epoch's weights, on the CPU


class TrialState(TypedDict):
    """Everything a trial needs to continue after an epoch (``STATE_FILE``); tensors, numbers and strings
    only, so it loads with ``torch.load(weights_only=True)``."""

    epoch: int  # the last epoch done
    num_updates: int  # optimizer steps so far: where the LR schedule resumes
    model: dict[str, Tensor]
    optimizer: dict[str, Any]
    best: BestEpoch
    train_time_s: float  # wall seconds of all epochs so far, retries included
    info: TrialInfo
    preprocessing: dict[str, Any]  # the eval transform (trainables.augment.eval_config), for whoever serves it


@dataclass
class EpochReport:
    """What a classification trial's loop yields after each epoch (``trainables.engine.fit``, or once for a
    baseline, ``trainables.baselines``) to whoever drives it."""

    metrics: dict[str, float]  # this epoch's curves plus the best-so-far summary (trainables.metrics)
    state: TrialState  # everything needed to resume after this epoch
    improved: bool  # this epoch is the new best on validation


def save_trial_state(state: TrialState, directory: str | Path) -> Path:
    import torch

    path = Path(directory) / STATE_FILE
    torch.save(state, path)
    return path


def load_trial_state(directory: str | Path) -> TrialState:
    """The state in a checkpoint directory, on the CPU; nothing is unpickled."""
    import torch

    return torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)


@contextmanager
def checkpoint_files(checkpoint: Any) -> Iterator[Path]:
    """The directory of a Tune checkpoint (a ``ray.tune.Checkpoint``), to read from: its own files where they are
    when they lie on a filesystem of this machine (a shared mount included), else a temporary copy. Tune's
    ``as_directory`` reads in place only from pyarrow's ``LocalFileSystem``; the sweep's storage is a local
    filesystem of its own (``sweeps.storage``), of which it would first copy every byte, weights included."""
    from fsspec.implementations.local import LocalFileSystem
    from pyarrow.fs import LocalFileSystem as ArrowLocalFileSystem

    fs = checkpoint.filesystem
    fsspec_fs = getattr(getattr(fs, "handler", None), "fs", None)  # a pyarrow PyFileSystem over an fsspec one
    if isinstance(fs, ArrowLocalFileSystem) or isinstance(fsspec_fs, LocalFileSystem):
        yield Path(checkpoint.path)
    else:
        with checkpoint.as_directory() as d:
            yield Path(d)


# -- the best model of a finished classification trial (sweeps.trial_runs logs it, analysis.champion reads it)

BEST_MODEL_FILE = "best_model.pt"


class BestModel(TypedDict):
    """What serving a trial's model needs: the best epoch's weights and how to rebuild and feed them."""

    model: dict[str, Tensor]
    arch: str  # timm name (trainables.models.build_model)
    num_classes: int
    input_size: int
    classes: list[str]
    preprocessing: dict[str, Any] | None  # the eval transform (trainables.augment.eval_config)
    epoch: int
    best_val_acc: float  # trainables.metrics.BEST_VAL_ACC


def best_model_of(state: TrialState, arch: str) -> BestModel:
    best, info = state["best"], state["info"]
    return BestModel(
        model=best["model"],
        arch=arch,
        num_classes=info["num_classes"],
        input_size=info["input_size"],
        classes=best["classes"],
        preprocessing=state.get("preprocessing"),  # None in states that predate it
        epoch=best["epoch"],
        best_val_acc=best["val_acc"],
    )


def save_best_model(best: BestModel, directory: str | Path) -> Path:
    import torch

    path = Path(directory) / BEST_MODEL_FILE
    torch.save(best, path)
    return path


def load_best_model(path: str | Path) -> BestModel:
    """A ``BEST_MODEL_FILE``, on the CPU; nothing is unpickled."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


# -- the evidence a classification trial adds to each checkpoint (trainables.trial_evidence makes it,
# sweeps.trial_runs uploads it) -------------------------------------------------------------------------

RUN_ARTIFACTS_DIR = "artifacts"  # the files of the trial's run, at their artifact paths (evidence/, checkpoint/)
MLFLOW_MODEL_DIR = "mlflow_model"  # the best epoch's model in MLflow's PyTorch flavour, logged as the run's model
EVIDENCE_MANIFEST = "evidence.json"
# Said once by the driver as it logs the first model, for whoever loads them; MLflow says it at every save.
PICKLE_NOTE = (
    "each trial's model is logged pickled (MLflow's serialization_format='pickle': its default, torch.export, "
    "cannot trace every timm architecture); unpickling runs code, so load models only from a store you trust"
)


class EvidenceManifest(TypedDict):
    """What the evidence in a checkpoint is of (``EVIDENCE_MANIFEST``, JSON)."""

    epoch: int | None  # the best epoch so far, which the files show; None: this checkpoint has no files
    at_epoch: int  # the epoch of the checkpoint
    gradcam: str  # the layer Grad-CAM read, or 'none: <why>' (the run's GRADCAM_TAG)
    history: dict[str, dict[str, float]]  # per-epoch metric -> epoch -> value: the learning curves' numbers
    made_in: dict[str, str | int]  # hostname and pid of the trial process that made it


# -- a detection trial's checkpoint (Ultralytics' files, trainables.detection) -----------------------------

DETECT_WEIGHTS_FILE = "best.pt"  # the best epoch's weights, loadable with ultralytics.YOLO
DETECT_RECORD_FILE = "trial.json"  # the trial's own record of its epochs

# -- the run schema: tags ---------------------------------------------------------------------------------

# On a sweep's parent run and on each of its trials' runs.
SWEEP_TAG = "sweep"  # the sweep's name, e.g. sweep-20261123-101500
# On a sweep's parent run.
TASK_TAG = "task"  # which task the sweep ran; a parent run without it is read as classification
CLASSIFY_TASK, DETECT_TASK = "classify", "detect"  # its values
CHAMPION_TAG = "champion"  # 'NAME@champion (version N)': the registered best model
CHAMPION_ALIAS = "champion"  # the Model Registry alias of a sweep's best model
INTERRUPTED_TAG = "interrupted"  # 'true' while the sweep can be resumed, 'false' once every trial ended
RESUMES_TAG = "resumes"  # how many times the sweep was resumed
TRACKING_ERROR_TAG = "tracking_error"  # MLflow writes of the trials not made yet (--resume delivers them)
STORAGE_ERROR_TAG = "storage_error"  # the storage fault that stopped the sweep
FORGOTTEN_RUNS_TAG = "forgotten_runs"  # run ids deleted on resume: trials the saved state did not have
FAILED_TRIALS_TAG = "failed_trials"  # the trial directories of failed trials
OPTUNA_STUDY_TAG = "optuna_study"  # the Optuna storage URL of the sweep's study (named as the sweep)
# On a trial's run.
TRIAL_ID_TAG = "ray_trial_id"  # how a resumed sweep finds the trial's run again
FAMILY_TAG = "family"  # the model family (also a parameter)
STOPPED_EARLY_TAG = "stopped_early"  # 'true' when ASHA stopped the trial before max_epochs
MODEL_ID_TAG = "model_id"  # the trial's model logged with MLflow's PyTorch flavour (models:/<id>)
GRADCAM_TAG = "gradcam"  # the layer Grad-CAM read, or 'none: <why>'
ERROR_TAG = "error"  # why the trial failed for good
RETRIES_TAG, LAST_ERROR_TAG = "retries", "last_error"  # a trial retried from its checkpoint
EPOCH_GAP_TAG = "epoch_gap"  # epochs missing from the run's history
HOSTNAME_TAG, DEVICE_TAG = "hostname", "device"  # where the trial ran (hostname: the parent run's too)
STAGE_TAG = "stage"  # which stage of the sweep ran the trial: one of its values below
SEARCH_STAGE, CONFIRM_STAGE = "search", "confirm"  # the search; the best configurations again, other seeds


def stage_of(config: dict[str, Any], sweep_seed: int) -> str:
    """A trial's stage: every search trial runs with the sweep's seed, a confirmation trial with another."""
    return SEARCH_STAGE if config.get("seed", sweep_seed) == sweep_seed else CONFIRM_STAGE


# -- the run schema: parameters ---------------------------------------------------------------------------

# On a sweep's parent run (besides the sweep config's settings and the data summary).
TRIALS_PLANNED_PARAM = "trials_planned"  # also what tells a sweep's parent run from other runs
CONFIRM_PLANNED_PARAM = "confirm_trials_planned"  # at most this many confirmation trials after the search
SEARCHED_PARAM = "searched"  # comma-separated: the parameters that make a configuration
DATA_SOURCE_PARAM = "data_source"  # where the images came from, as a person reads it
SPLIT_FINGERPRINT_PARAM = "split_fingerprint"  # which images went to which split (trainables.data)
SPACE_PARAM_PREFIX = "space."  # one parameter per search-space axis: space.<name>
# On a trial's run (besides its config's fields and its TrialInfo).
FAMILY_PARAM = "family"
# The trainable's result keys with this prefix are facts (TrialInfo), not metrics: run parameters.
INFO_PREFIX = "info/"

# -- the run schema: artifact paths -----------------------------------------------------------------------

# On a trial's run.
CHECKPOINT_DIR = "checkpoint"
BEST_MODEL_ARTIFACT = f"{CHECKPOINT_DIR}/{BEST_MODEL_FILE}"
EVIDENCE_DIR = "evidence"  # confusion matrix, per-class report, learning curves, Grad-CAM (trainables.evidence)
WEIGHTS_DIR = "weights"  # a detection trial's DETECT_WEIGHTS_FILE
EXPORT_DIR = "export"  # ONNX and TorchScript files (analysis.export)
# On a sweep's parent run.
REPORT_DIR = "report"  # the comparison report (analysis.report)
SAMPLES_DIR = "samples"  # the sample images every model's Grad-CAM is drawn on (analysis.samples)
RECIPE_FILE = "sweep_config.yaml"  # the recipe as run, overrides applied (also in the sweep directory)
SEARCH_SPACE_FILE = "search_space.json"
SKIPPED_FILE = "data/skipped_images.txt"  # path<TAB>problem of each image left out
IGNORED_FILE = "data/ignored_files.txt"  # path<TAB>why of each file or link not used
# On a trial's run.
UNREADABLE_FILE = "data/unreadable_images.txt"  # path<TAB>split of each file that failed to decode in the trial


def evidence_path(name: str) -> str:
    """Where a trial's run keeps one evidence file (``trainables.evidence``'s names)."""
    return f"{EVIDENCE_DIR}/{name}"
