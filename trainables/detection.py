"""What one detection trial does: train an Ultralytics YOLO model on a YOLO-format dataset, report each
epoch's validation metrics, and evaluate each new best model on the test split.

No Ray and no MLflow here: ``fit_detector`` takes a plain ``on_epoch`` function (the trainable's, in
``trainables.trainable``, reports to Ray Tune). Ultralytics' own integrations (its MLflow, Ray Tune,
W&B... callbacks, its analytics and its platform sync) are taken off the trainer, so a trial leaves
exactly one MLflow run, the sweep's; and nothing of a default trial touches the network:

- the model is built from its YAML definition (random init) unless a local ``.pt`` is given;
- ``YOLO_OFFLINE`` and ``YOLO_AUTOINSTALL=false`` are set before Ultralytics is imported
  (``load_ultralytics``, which every path calls first), so it does not probe DNS, check for updates or
  pip-install anything;
- the AMP check on CUDA, which downloads a model to compare against, is replaced by a local one;
- Ultralytics fetches the Arial font the first time it checks a dataset: it gets matplotlib's bundled
  DejaVu Sans instead, and training plots are off.

How each of these reaches into Ultralytics is in ``trainables.ultralytics_compat``. Importing this module
imports no Ultralytics and sets no environment variable.

``tests/trainables/test_detection.py`` runs a trial with every non-local connection refused and recorded.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainables.registry import unknown_name_message
from trainables.ultralytics_compat import load_ultralytics, quiet_trainer_class

# Model families and sizes (Ultralytics' YAML definitions, ``<family><size>.yaml``).
FAMILIES = ("yolov8", "yolo11", "yolo12", "yolo26")
SIZES = "nsmlx"
MODEL_RE = re.compile(rf"^({'|'.join(FAMILIES)})([{SIZES}])$")
OPTIMIZERS = ("SGD", "AdamW", "Adam", "RMSProp")
WEIGHTS = ("none", "pretrained")  # or a local .pt file, or a directory holding <model>.pt

# Augmentation strength: Ultralytics' hyperparameters per level, training split only (its val/test
# loaders letterbox and normalise, nothing else). A recipe may set any of them directly instead.
AUGMENT = {
    "none": dict(mosaic=0.0, mixup=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, fliplr=0.0, translate=0.0, scale=0.0),
    "light": dict(mosaic=0.0, mixup=0.0, hsv_h=0.015, hsv_s=0.4, hsv_v=0.3, fliplr=0.5, translate=0.1, scale=0.25),
    "strong": dict(mosaic=1.0, mixup=0.1, hsv_h=0.015, hsv_s=0.7, hsv_v=0.4, fliplr=0.5, translate=0.1, scale=0.5),
}
AUGMENT_KEYS = tuple(AUGMENT["none"])

# Metric names, as reported to Tune, logged to MLflow and read by the analysis.
EPOCH = "epoch"
EPOCH_METRICS = (
    "train_box_loss",
    "train_cls_loss",
    "train_dfl_loss",
    "val_box_loss",
    "val_cls_loss",
    "val_dfl_loss",
    "val_precision",
    "val_recall",
    "val_mAP50",
    "val_mAP50_95",
    "lr",
    "epoch_time_s",
)
SEARCH_METRIC = "val_mAP50_95"  # what the search maximises and ASHA compares
TEST_METRICS = ("test_precision", "test_recall", "test_mAP50", "test_mAP50_95")
SUMMARY_METRICS = ("best_val_mAP50_95", "best_epoch", *TEST_METRICS, "train_time_s")
_ULTRALYTICS_KEYS = {  # Ultralytics' names -> ours (validation and test share the box metrics)
    "metrics/precision(B)": "precision",
    "metrics/recall(B)": "recall",
    "metrics/mAP50(B)": "mAP50",
    "metrics/mAP50-95(B)": "mAP50_95",
}
CHECKPOINT_FILES = ("last.pt", "best.pt", "results.csv", "trial.json")  # what a Tune checkpoint holds


@dataclass(frozen=True)
class DetectTrialConfig:
    model: str = "yolov8n"
    """Ultralytics model family and size: yolov8|yolo11|yolo12|yolo26 + n|s|m|l|x, e.g. yolo11n."""
    weights: str = "none"
    """'none' (random init from the YAML definition), or a local .pt file (or a directory holding
    <model>.pt) whose matching tensors are transferred; the sweep resolves 'pretrained' to such a file."""
    imgsz: int = 128
    """Training and evaluation image size, pixels (a multiple of 32)."""
    lr0: float = 0.01
    """Initial learning rate (Ultralytics' lr0)."""
    lrf: float = 0.01
    """Final learning rate, as a fraction of lr0 (linear decay)."""
    optimizer: str = "SGD"
    momentum: float = 0.937
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    augment: str = "light"
    """Augmentation strength: none | light | strong (see AUGMENT); the keys below override single values."""
    mosaic: float | None = None
    mixup: float | None = None
    hsv_h: float | None = None
    hsv_s: float | None = None
    hsv_v: float | None = None
    fliplr: float | None = None
    translate: float | None = None
    scale: float | None = None
    close_mosaic: int = 2
    """Last epochs trained without mosaic (Ultralytics' close_mosaic)."""
    batch: int = 16
    nbs: int | None = None
    """Nominal batch size for gradient accumulation; None: ``batch`` (a step every batch). Ultralytics'
    default of 64 means one optimizer step per 4 batches of 16, too few for short runs."""
    max_epochs: int = 12
    seed: int = 0
    amp: bool = True
    """Mixed precision on CUDA (ignored on CPU)."""

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not MODEL_RE.match(self.model):
            raise ValueError(
                f"model: {self.model!r} is not a YOLO model name; expected one of {', '.join(FAMILIES)} "
                f"followed by a size letter ({'/'.join(SIZES)}), e.g. yolo11n"
            )
        if self.weights not in WEIGHTS and not (self.weights.endswith(".pt") or Path(self.weights).is_dir()):
            raise ValueError(
                f"weights: {self.weights!r} is neither none nor pretrained nor a .pt file or a directory of them"
            )
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: {unknown_name_message('optimizer', self.optimizer, OPTIMIZERS)}")
        if self.augment not in AUGMENT:
            raise ValueError(f"augment: {unknown_name_message('augmentation strength', self.augment, AUGMENT)}")
        if self.imgsz < 32 or self.imgsz % 32:
            raise ValueError(f"imgsz: a multiple of 32 (YOLO's largest stride), at least 32, got {self.imgsz}")
        for key in ("lr0", "lrf", "batch", "max_epochs"):
            if not getattr(self, key) > 0:
                raise ValueError(f"{key}: must be > 0, got {getattr(self, key)!r}")
        for key in AUGMENT_KEYS:
            v = getattr(self, key)
            if v is not None and not 0.0 <= v <= 1.0:
                raise ValueError(f"{key}: a probability or fraction in [0, 1], got {v}")
        if not 0 <= self.warmup_epochs < self.max_epochs:
            raise ValueError(
                f"warmup_epochs ({self.warmup_epochs}) must be shorter than max_epochs ({self.max_epochs})"
            )

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectTrialConfig:
        unknown = [k for k in d if k not in cls.field_names()]
        if unknown:
            raise ValueError("; ".join(unknown_name_message("trial config key", k, cls.field_names()) for k in unknown))
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def family(self) -> str:
        return MODEL_RE.match(self.model).group(1)

    def augmentation(self) -> dict[str, float]:
        """The augmentation hyperparameters this trial trains with: its level, then single overrides."""
        values = dict(AUGMENT[self.augment])
        values.update({k: getattr(self, k) for k in AUGMENT_KEYS if getattr(self, k) is not None})
        return values

    def train_args(self, data_yaml: str | Path, save_dir: Path, device: str, workers: int) -> dict[str, Any]:
        """Everything Ultralytics' trainer is given; nothing is left to its defaults that matters here."""
        return dict(
            data=str(data_yaml),
            epochs=self.max_epochs,
            imgsz=self.imgsz,
            batch=self.batch,
            nbs=self.nbs or self.batch,
            lr0=self.lr0,
            lrf=self.lrf,
            optimizer=self.optimizer,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            warmup_epochs=self.warmup_epochs,
            close_mosaic=self.close_mosaic,
            seed=self.seed,
            deterministic=False,  # torch.use_deterministic_algorithms slows CPU training a lot
            device=device,
            workers=workers,
            amp=self.amp and device != "cpu",
            plots=False,  # batch mosaics and label plots draw text with a font Ultralytics would download
            save_dir=str(save_dir),
            exist_ok=True,
            val=True,
            patience=self.max_epochs,  # Ray Tune's scheduler decides when to stop, not Ultralytics
            verbose=False,
            **self.augmentation(),
        )


def model_source(cfg: DetectTrialConfig) -> tuple[str, str | None]:
    """(the YAML definition to build, the local .pt whose weights are transferred or None)."""
    if cfg.weights == "none":
        return f"{cfg.model}.yaml", None
    if cfg.weights == "pretrained":
        raise ValueError("weights: 'pretrained' is resolved by the sweep to a local file before trials start")
    path = Path(cfg.weights).expanduser()
    if path.is_dir():
        path = path / f"{cfg.model}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"weights: {path} does not exist")
    return f"{cfg.model}.yaml", str(path)


@dataclass
class EpochReport:
    """What a trial tells the sweep after an epoch: metrics, and the directory with its checkpoint files."""

    metrics: dict[str, float]
    checkpoint_dir: Path
    info: dict[str, Any]


def trial_dataset(data: dict[str, Any], trial_dir: Path) -> str:
    """The data.yaml a trial trains on: the user's (``data["yaml"]``), or a copy in ``trial_dir`` with
    ``data["path"]``, the dataset root the driver resolved, where the file's root is relative (Ultralytics
    reads a relative root from the directory it runs in, and each trial runs in one of its own), and with
    a list of files for each split ``data`` gives as one (``data["train"]``: the images ``train_limit``
    drew; any split: a .txt list whose lines are relative to where the driver ran)."""
    import yaml

    given = yaml.safe_load(Path(data["yaml"]).read_text(encoding="utf-8"))
    changes = {}
    for split in ("train", "val", "test"):
        if data.get(split):
            listed = Path(trial_dir) / f"{split}_images.txt"
            listed.write_text("".join(f"{f}\n" for f in data[split]), encoding="utf-8")
            changes[split] = str(listed)
    if changes or (given.get("path") and not Path(given["path"]).is_absolute()):
        changes["path"] = data["path"]  # a copy without a root would be read from trial_dir
    if not changes:
        return data["yaml"]
    copy = Path(trial_dir) / f"dataset-{Path(data['yaml']).name}"
    copy.write_text(yaml.safe_dump({**given, **changes}, sort_keys=False), encoding="utf-8")
    return str(copy)


def _ours(metrics: dict[str, float], prefix: str) -> dict[str, float]:
    return {
        f"{prefix}_{ours}": float(metrics[theirs]) for theirs, ours in _ULTRALYTICS_KEYS.items() if theirs in metrics
    }


def fit_detector(
    cfg: DetectTrialConfig,
    data_yaml: str | Path,
    workdir: Path,
    device: str,
    on_epoch: Callable[[EpochReport], None],
    threads: int = 1,
    resume_dir: Path | None = None,
) -> None:
    """Train ``cfg`` on ``data_yaml`` in ``workdir``; after each epoch, ``on_epoch`` gets the validation
    metrics and a directory holding last.pt, best.pt and the trial's record (to resume from). A new best
    epoch (Ultralytics' fitness on validation) is evaluated on the test split, which never steers anything.
    ``resume_dir``: such a directory, to continue from instead of starting over."""
    load_ultralytics()
    import torch
    from ultralytics import YOLO

    workdir = Path(workdir)
    weights_dir = workdir / "weights"
    weights_dir.mkdir(parents=True, exist_ok=True)
    record = {"best": {}, "train_time_s": 0.0, "reported": 0}
    yaml_name, transfer = model_source(cfg)
    if resume_dir is not None:
        for name in ("last.pt", "best.pt"):
            if (resume_dir / name).is_file():
                shutil.copy2(resume_dir / name, weights_dir / name)
        record = json.loads((resume_dir / "trial.json").read_text())
        model = YOLO(str(weights_dir / "last.pt"), task="detect")
    else:
        torch.manual_seed(cfg.seed)
        model = YOLO(yaml_name, task="detect")
        if transfer:
            model.load(transfer)
    trainer_class = quiet_trainer_class()
    info: dict[str, Any] = {"weights_file": transfer or "none (random init)", "ultralytics_integrations_off": ""}
    epoch_start = [time.perf_counter()]

    def set_threads(trainer) -> None:  # Ultralytics' select_device sets its own thread count
        torch.set_num_threads(threads)
        info["ultralytics_integrations_off"] = ",".join(m.rsplit(".", 1)[-1] for m in trainer_class.removed)
        info["num_classes"] = int(trainer.data["nc"])
        epoch_start[0] = time.perf_counter()

    test_validator: list = []

    def epoch_end(trainer) -> None:
        epoch = trainer.epoch + 1
        if epoch > trainer.epochs or epoch <= record["reported"]:
            return  # final_eval's second call with best.pt's numbers: already reported as that epoch
        seconds = time.perf_counter() - epoch_start[0]
        record["train_time_s"] += seconds
        losses = trainer.label_loss_items(trainer.tloss, prefix="train")
        metrics = {
            **{k.replace("/", "_"): float(v) for k, v in losses.items()},
            **{
                f"val_{k.split('/')[1]}": float(v)
                for k, v in trainer.metrics.items()
                if k.startswith("val/") and k.split("/")[1] in ("box_loss", "cls_loss", "dfl_loss")
            },
            **_ours(trainer.metrics, "val"),
            "lr": float(trainer.optimizer.param_groups[0]["lr"]),
            "epoch_time_s": seconds,
        }
        if trainer.best_fitness == trainer.fitness:  # best.pt was just written from this epoch
            test = _evaluate_test(trainer, test_validator)
            record["best"] = {"epoch": epoch, "best_val_mAP50_95": metrics["val_mAP50_95"], **test}
        record["reported"] = epoch
        (weights_dir / "trial.json").write_text(json.dumps(record))
        best = record["best"]
        summary = {
            "best_val_mAP50_95": best.get("best_val_mAP50_95", 0.0),
            "best_epoch": float(best.get("epoch", 0)),
            **{k: best[k] for k in TEST_METRICS if k in best},
            "train_time_s": record["train_time_s"],
        }
        on_epoch(EpochReport({EPOCH: epoch, **metrics, **summary}, weights_dir, dict(info)))
        epoch_start[0] = time.perf_counter()

    model.add_callback("on_train_start", set_threads)
    model.add_callback("on_fit_epoch_end", epoch_end)
    args = cfg.train_args(data_yaml, workdir, device, workers=0)
    if resume_dir is not None:
        model.train(
            trainer=trainer_class,
            resume=str(weights_dir / "last.pt"),
            data=args["data"],
            device=device,
            workers=0,
            save_dir=str(workdir),
            plots=False,
        )
    else:
        model.train(trainer=trainer_class, **args)


def _evaluate_test(trainer, cache: list) -> dict[str, float]:
    """The current (EMA) model on the test split, with Ultralytics' validator; {} if the data has no
    test split."""
    from copy import copy

    load_ultralytics()
    from ultralytics.models.yolo.detect import DetectionValidator

    if not trainer.data.get("test"):
        return {}
    if not cache:
        args = copy(trainer.args)
        args.split, args.plots = "test", False
        loader = trainer.get_dataloader(trainer.data["test"], batch_size=trainer.batch_size * 2, rank=-1, mode="val")
        cache.append(DetectionValidator(loader, save_dir=trainer.save_dir / "test", args=args))
    validator = cache[0]
    metrics = validator(trainer=trainer)
    return _ours(metrics, "test")
