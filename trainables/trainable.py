"""The function Ray Tune calls for one trial: config dict -> typed config -> ``engine.fit`` -> reports.

This is the only module under ``trainables/`` that imports Ray.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path

import torch
from ray import tune

from trainables import metrics as M
from trainables.baselines import fit_baseline
from trainables.config import TrialConfig, epochs_planned, is_baseline
from trainables.contracts import INFO_PREFIX, checkpoint_files, load_trial_state, save_trial_state
from trainables.data import DatasetSplits, ImageSamples
from trainables.engine import fit
from trainables.system import SystemMeter
from trainables.trial_evidence import TrialEvidence

# Fault injection, for the tests that prove a failed trial is retried into the same MLflow run: a trial
# started from scratch raises halfway through this epoch, after its first training batch (as a bad batch
# or a CUDA error would), and its retry resumes from the previous epoch's checkpoint (a detection trial:
# as that epoch starts, right after the previous one is reported). Unset in normal use.
FAIL_IN_EPOCH_ENV = "CVSWEEP_FAIL_IN_EPOCH"


@dataclasses.dataclass(frozen=True)
class _FailingImages(ImageSamples):
    """The training images, loading normally until ``armed`` says how many more loads may happen."""

    armed: list = dataclasses.field(default_factory=lambda: [None])  # loads left before failing; None: off

    def load(self, i: int):
        left = self.armed[0]
        if left is not None:
            if left <= 0:
                raise RuntimeError(f"{FAIL_IN_EPOCH_ENV}: failure injected in the middle of a training epoch")
            self.armed[0] = left - 1
        return super().load(i)


def train_classifier(config: dict, splits: DatasetSplits, stop_epochs: tuple[int, ...] = ()) -> None:
    """One classification trial: ``engine.fit`` (or a baseline's fit), each epoch reported to Tune with a
    checkpoint. The best epoch's evidence (``trial_evidence``) goes into the checkpoints of the epochs after
    which the trial may end: ``stop_epochs`` (where the sweep's scheduler may stop it) and its last."""
    cfg = TrialConfig.from_dict(config)
    resources = tune.get_context().get_trial_resources().required_resources
    cpus = max(1, int(resources.get("CPU", 1)))
    if cfg.num_workers is None:  # the trial's other cores decode and augment (recorded as `loader_workers`)
        cfg = dataclasses.replace(cfg, num_workers=cpus - 1)
    torch.set_num_threads(max(1, cpus - cfg.num_workers))  # the cores the loader workers leave to the loop
    if resources.get("GPU", 0) > 0 and not torch.cuda.is_available():  # never fall back to CPU silently
        raise RuntimeError(
            f"this trial was given {resources['GPU']:g} GPU by Ray, but torch {torch.__version__} sees no CUDA "
            "device: install a CUDA build of torch on the worker nodes, or run with --gpus-per-trial 0."
        )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # Ray hides GPUs not given to us

    # Scratch space on the trial's node, outside its trial directory: Tune syncs that directory to the driver
    # while the trial runs, and a file this trial removes under it made "Saving experiment state failed".
    workdir = Path(tempfile.mkdtemp(prefix="cvsweep-evidence-"))
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # a retry after a failure, or a restored sweep: continue, don't restart
        with checkpoint_files(checkpoint) as d:
            resume = load_trial_state(d)
            evidence = TrialEvidence(cfg, splits, device, workdir, resume_dir=d)  # and the evidence made so far
    else:
        resume, evidence = None, TrialEvidence(cfg, splits, device, workdir, resume_dir=None)

    fail_in = int(os.environ.get(FAIL_IN_EPOCH_ENV, 0)) if resume is None else 0
    if fail_in:  # counted in this process: the tests that use it load images here (num_workers 0)
        splits = dataclasses.replace(splits, train=_FailingImages(**vars(splits.train)))
        if fail_in == 1:
            splits.train.armed[0] = cfg.batch_size  # one batch of epoch 1, then fail
    run = fit_baseline if is_baseline(cfg.arch) else fit  # a baseline fits once and reports once
    last = epochs_planned(cfg.to_dict())
    try:
        for report in run(cfg, splits, device, resume=resume):
            epoch = int(report.metrics[M.EPOCH])
            evidence.update(report.metrics, report.state, due=epoch in stop_epochs or epoch >= last)
            with tempfile.TemporaryDirectory() as d:
                save_trial_state(report.state, d)
                evidence.add_to(d)
                tune.report(
                    {**report.metrics, **{f"{INFO_PREFIX}{k}": v for k, v in report.state["info"].items()}},
                    checkpoint=tune.Checkpoint.from_directory(d),
                )
            if fail_in and report.metrics["epoch"] == fail_in - 1:
                splits.train.armed[0] = cfg.batch_size  # the next epoch trains one batch, then fails
    finally:
        evidence.close()


def train_detector(config: dict, data: dict) -> None:
    """One detection trial (Ultralytics YOLO, ``trainables.detection``): each epoch's metrics and its
    last/best weights reported to Tune; a retried or resumed trial continues from them. ``data``:
    {"yaml": a data.yaml every node can read, "path": its dataset root} or {"shapes": ShapesSpec fields,
    "root": directory}, the generated dataset, made on the trial's node if that node has no copy yet; either
    with a split's files as a list where the driver gave one (``trainables.detection.trial_dataset``)."""
    from trainables.detection import DetectTrialConfig, EpochReport, fit_detector, trial_dataset
    from trainables.shapes import ShapesSpec, generate

    cfg = DetectTrialConfig.from_dict(config)
    resources = tune.get_context().get_trial_resources().required_resources
    gpus = resources.get("GPU", 0)
    if gpus > 0 and not torch.cuda.is_available():
        raise RuntimeError(
            f"this trial was given {gpus:g} GPU by Ray, but torch {torch.__version__} sees no CUDA device: "
            "install a CUDA build of torch on the worker nodes, or run with --gpus-per-trial 0."
        )
    device = "0" if gpus > 0 else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES to the trial's GPU
    threads = max(1, int(resources.get("CPU", 1)))
    trial_dir = Path(tune.get_context().get_trial_dir())
    if "yaml" in data:
        data_yaml = trial_dataset(data, trial_dir)
    else:  # made here if this node has no copy yet; train_limit's images are the same files on every node
        made = generate(Path(data["root"]), ShapesSpec(**data["shapes"]))
        data_yaml = trial_dataset({**data, "yaml": str(made), "path": str(made.parent)}, trial_dir)

    checkpoint = tune.get_checkpoint()
    fail_in = int(os.environ.get(FAIL_IN_EPOCH_ENV, 0)) if checkpoint is None else 0

    # what each epoch asked of the machine (Ultralytics runs the loop: no data-wait share)
    meter = SystemMeter(threads, torch.device("cuda" if gpus > 0 else "cpu"))

    def report(r: EpochReport) -> None:
        system = meter.epoch()
        with tempfile.TemporaryDirectory() as d:
            for f in r.checkpoint_dir.iterdir():
                shutil.copy2(f, d)
            info = {**r.info, "device": torch.cuda.get_device_name(0) if gpus > 0 else "cpu", "threads": threads}
            tune.report(
                {**r.metrics, **system, **{f"{INFO_PREFIX}{k}": v for k, v in info.items()}},
                checkpoint=tune.Checkpoint.from_directory(d),
            )
        meter.begin()
        if fail_in and r.metrics["epoch"] == fail_in - 1:  # the tests' fault: epoch fail_in never finishes
            raise RuntimeError(f"{FAIL_IN_EPOCH_ENV}: failure injected at the start of epoch {fail_in}")

    workdir = trial_dir / "ultralytics"
    with meter:
        if checkpoint is None:
            fit_detector(cfg, data_yaml, workdir, device, report, threads=threads)
            return
        with checkpoint_files(checkpoint) as d:  # a retry after a failure, or a resumed sweep
            fit_detector(cfg, data_yaml, workdir, device, report, threads=threads, resume_dir=d)
