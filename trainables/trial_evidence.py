"""The evidence of a classification trial, made in the trial, on its worker: where the model already is.

The best epoch's weights with what serving them needs (``best_model.pt``), the test confusion matrix,
per-class report and predictions, the learning curves, Grad-CAM on the sweep's sample images, and the
model as an MLflow model directory (PyTorch flavour, signature, metadata). No code of a trial runs after
its last report, and a trial may end at its last epoch or where the sweep's scheduler stops it (ASHA's
rungs, ``sweeps.space.stop_epochs``): the checkpoints of exactly those epochs carry the evidence of the best
epoch so far, and a trial's last checkpoint is always one of them. The heavy part (rebuilding the model,
Grad-CAM, the MLflow model) is redone only when the best epoch has changed since the last time.

Trials still never talk to MLflow: the model directory is written to local disk, and the driver
(``sweeps.trial_runs``) uploads the checkpoint's files and records them in the trial's run, at a cost per
trial that does not depend on the model. In a checkpoint directory, beside ``STATE_FILE``:

    evidence.json          EvidenceManifest, in every checkpoint: which epoch the files show (None: no files
                           here), Grad-CAM's layer or why none, the curves' numbers (a resumed trial goes on)
    artifacts/             the files of the trial's run, at their artifact paths (evidence/, checkpoint/)
    mlflow_model/          the MLflow model directory
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from importlib.metadata import version
from pathlib import Path

import torch

from trainables import metrics as M
from trainables.config import TrialConfig, run_name
from trainables.contracts import (
    CHECKPOINT_DIR,
    EVIDENCE_DIR,
    EVIDENCE_MANIFEST,
    MLFLOW_MODEL_DIR,
    RUN_ARTIFACTS_DIR,
    UNREADABLE_FILE,
    EvidenceManifest,
    TrialState,
    best_model_of,
    save_best_model,
)
from trainables.data import DatasetSplits
from trainables.evidence import write_confusion, write_learning_curves, write_per_class, write_predictions
from trainables.gradcam import Sample, gradcam, sample_images, write_gradcam
from trainables.models import load_model


class TrialEvidence:
    """The evidence of one trial's best epoch so far, kept in a local directory and added to a checkpoint.

    ``update`` after every epoch, then ``add_to`` the checkpoint directory before it is reported. Every
    checkpoint gets the manifest (the curves' numbers, so a resumed trial draws them whole); the files only
    where ``update`` was told the trial may end after this epoch (``due``): its last planned epoch, and the
    epochs where the sweep's scheduler may stop it. Made at a due epoch, they are reused at the next one if
    the best epoch has not changed."""

    def __init__(
        self,
        cfg: TrialConfig,
        splits: DatasetSplits,
        device: torch.device,
        workdir: Path,
        resume_dir: str | Path | None,
    ) -> None:
        self.cfg, self.splits, self.device = cfg, splits, device
        self.name = run_name(cfg.to_dict())  # the title of every figure: the trial's run name
        self.dir = Path(workdir)  # the local copy; what an earlier attempt left there is not trusted
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.history: dict[str, dict[int, float]] = {}  # metric -> epoch -> value, retries and resumes included
        self.built_for: int | None = None  # the best epoch whose files the local copy holds
        self.manifest: EvidenceManifest | None = None  # of the last update
        self._samples: list[Sample] | None = None
        self._gradcam_note: str | None = None  # what became of the Grad-CAM of the files the local copy holds
        manifest = Path(resume_dir) / EVIDENCE_MANIFEST if resume_dir is not None else None
        if manifest is not None and manifest.is_file():  # what the trial made up to its checkpoint
            made: EvidenceManifest = json.loads(manifest.read_text())
            self.history = {k: {int(e): v for e, v in h.items()} for k, h in made["history"].items()}
            if made["epoch"] is not None:
                for part in (RUN_ARTIFACTS_DIR, MLFLOW_MODEL_DIR):
                    shutil.copytree(Path(resume_dir) / part, self.dir / part)
                self.built_for, self._gradcam_note = made["epoch"], made["gradcam"]

    def update(self, metrics: dict[str, float], state: TrialState, due: bool) -> None:
        epoch, best = int(metrics[M.EPOCH]), int(state["best"]["epoch"])
        for k in M.EPOCH_METRICS:
            if k in metrics:
                self.history.setdefault(k, {})[epoch] = float(metrics[k])
        if due:
            out = _mkdir(self.dir / RUN_ARTIFACTS_DIR / EVIDENCE_DIR)
            if self.built_for != best:
                self._gradcam_note = self._best_epoch(state, out)
                self.built_for = best
            write_learning_curves({k: sorted(h.items()) for k, h in self.history.items()}, out, self.name)
            self._unreadable()
        self.manifest = EvidenceManifest(
            epoch=best if due else None,
            at_epoch=epoch,
            gradcam=self._gradcam_note if due else "",
            history={k: {str(e): v for e, v in h.items()} for k, h in self.history.items()},
            made_in={"hostname": socket.gethostname(), "pid": os.getpid()},
        )

    def _unreadable(self) -> None:
        """The files that failed to decode in this trial (each replaced by another image of its class), named
        in the run (``UNREADABLE_FILE``) as well as counted (``unreadable_images``)."""
        splits = (("train", self.splits.train), ("val", self.splits.val), ("test", self.splits.test))
        found = [f"{path}\t{name}\n" for name, s in splits for path in s.unreadable_files()]
        if found:
            path = self.dir / RUN_ARTIFACTS_DIR / UNREADABLE_FILE
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(found))

    def add_to(self, checkpoint_dir: str | Path) -> None:
        assert self.manifest is not None, "update() first"
        if self.manifest["epoch"] is not None:
            for part in (RUN_ARTIFACTS_DIR, MLFLOW_MODEL_DIR):
                shutil.copytree(self.dir / part, Path(checkpoint_dir) / part, dirs_exist_ok=True)
        (Path(checkpoint_dir) / EVIDENCE_MANIFEST).write_text(json.dumps(self.manifest))

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- the best epoch's evidence -----------------------------------------------------------------------

    def _best_epoch(self, state: TrialState, out: Path) -> str:
        """Everything that depends on the best epoch's weights; returns the run's ``gradcam`` tag."""
        best, info, cfg = state["best"], state["info"], self.cfg
        save_best_model(best_model_of(state, cfg.arch), _mkdir(self.dir / RUN_ARTIFACTS_DIR / CHECKPOINT_DIR))
        title = f"{self.name}: test split, epoch {best['epoch']} (best on validation)"
        write_confusion(best["test_report"]["confusion"], best["classes"], out, title)
        write_per_class(best["test_report"], best["classes"], out)
        write_predictions(best["test_report"], best["classes"], out)
        model = load_model(cfg.arch, info["num_classes"], cfg.img_size, best["model"])
        note = self._gradcam(model, state, out)
        save_mlflow_model(model.cpu(), state, self.dir / MLFLOW_MODEL_DIR)
        return note

    def _gradcam(self, model: torch.nn.Module, state: TrialState, out: Path) -> str:
        """Grad-CAM of the best model on the sweep's sample images, on the trial's device. Where none can be
        drawn, the note says why (the run's ``gradcam`` tag) and the other evidence stands; otherwise it names
        the layer read."""
        for stale in out.glob("gradcam.*"):  # an earlier best epoch's
            stale.unlink()
        if state.get("preprocessing") is None:
            return "none: the trial's state does not record its eval transform (begun by an earlier version)"
        if self._samples is None:
            self._samples = [s for _, s in sample_images(self.splits.val, self.splits.classes)]
        try:
            heat = gradcam(model.to(self.device), self.cfg.arch, state["preprocessing"], self._samples)
        except Exception as e:  # noqa: BLE001 - a heatmap that cannot be drawn must not cost the trial its evidence
            return f"none: {type(e).__name__}: {str(e)[:300]}"
        title = f"{self.name}: epoch {state['best']['epoch']} (best on validation), the sweep's validation samples"
        write_gradcam(heat, self._samples, state["best"]["classes"], out, title)
        return heat.target


class _NoPickleNote(logging.Filter):
    """MLflow warns at every pickled save; the driver says it once for the sweep instead (``PICKLE_NOTE``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Saving pytorch model by Pickle")


def save_mlflow_model(model: torch.nn.Module, state: TrialState, path: Path) -> None:
    """The model in MLflow's PyTorch flavour, on local disk; the driver logs it as the run's model."""
    import mlflow.pytorch  # the model format only: nothing here talks to a tracking server
    from mlflow.models import infer_signature

    said = logging.getLogger("mlflow.pytorch")
    if not any(isinstance(f, _NoPickleNote) for f in said.filters):
        said.addFilter(_NoPickleNote())
    shutil.rmtree(path, ignore_errors=True)  # an earlier best epoch's
    size = int(state["info"]["input_size"])
    x = torch.zeros(2, 3, size, size)
    with torch.inference_mode():
        y = model.eval()(x)
    mlflow.pytorch.save_model(
        model,
        str(path),
        # A float32 batch of normalised images (N, 3, size, size) in, class logits (N, classes) out.
        signature=infer_signature(x.numpy(), y.numpy()),
        # MLflow 3's default 'pt2' (torch.export) cannot trace every timm architecture; the pickled
        # module loads back anywhere torch and timm are installed (the requirements below).
        serialization_format="pickle",
        # Stated, not inferred: inference imports the model in a subprocess, slow and fragile here.
        pip_requirements=[f"{p}=={version(p)}" for p in ("torch", "torchvision", "timm")],
        # What serving needs besides the weights: the class names and the eval transform's settings.
        metadata={"classes": state["best"]["classes"], "preprocessing": state.get("preprocessing")},
    )


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
