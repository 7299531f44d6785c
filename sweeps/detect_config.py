"""The recipe of a detection sweep (default ``sweeps/configs/detect/default.yaml``): Ultralytics YOLO
trials over model family and size, image size, learning rate, optimizer and augmentation strength.

The space's keys are ``trainables.detection.DetectTrialConfig`` fields, written as in a classification
recipe; reading and checking are ``sweeps.recipe.Recipe``'s, with the same messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, StrictBool, StrictInt

from sweeps.recipe import ConfigError, Dim, Recipe, UserPath
from trainables import detection as D

DETECT_CONFIG = Path(__file__).resolve().parent / "configs" / "detect" / "default.yaml"
POINTS_ONE_PER_MODEL = "one_per_model"


def _absolute(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path is not None else None


@dataclass(frozen=True)
class DetectSweepConfig(Recipe):
    trial_type: ClassVar[type] = D.DetectTrialConfig
    trial_noun: ClassVar[str] = "detection trial parameter"
    row_key: ClassVar[str] = "model"
    points_one_per: ClassVar[str] = POINTS_ONE_PER_MODEL
    smoke_settings: ClassVar[dict[str, Any]] = {"shapes_train": 48, "train_limit": 48}
    objectives: ClassVar[tuple[str, ...]] = (D.SEARCH_METRIC,)  # the search maximises it; ASHA compares it too

    data: Annotated[UserPath | None, AfterValidator(_absolute)] = None
    """A YOLO dataset's data.yaml; None: the generated shapes dataset (trainables/shapes.py)."""
    shapes_train: StrictInt = 240
    """Images in the generated dataset's train split (val and test get a quarter each)."""
    data_cache: UserPath = "~/.cache/cvsweep/datasets"
    """Where each node writes the generated dataset (once; the same settings give the same files)."""
    train_limit: StrictInt | None = None
    """Train on at most this many images of the train split, the generated dataset's or a data.yaml's
    (drawn with the seed); None: all. For smoke tests."""
    skip_bad_images: StrictBool = False
    """Train without the image/label pairs of a data.yaml that Ultralytics would leave out (listed in the
    sweep's run) instead of stopping."""
    num_samples: StrictInt | None = 12
    grace_period: StrictInt = 4
    max_epochs: StrictInt = 12
    space: dict[str, Dim] = field(default_factory=lambda: {"model": Dim("choice", ("yolov8n", "yolo11n"))})

    def _check_task(self) -> None:
        problems = []
        if self.shapes_train < 1:
            problems.append(f"shapes_train: must be >= 1, got {self.shapes_train}")
        if self.train_limit is not None and self.train_limit < 1:
            problems.append(f"train_limit: must be >= 1 or null, got {self.train_limit}")
        if self.data is not None and not Path(self.data).is_file():
            what = "a folder" if Path(self.data).is_dir() else "no such file"
            problems.append(f"data: {self.data}: {what} (expected a YOLO dataset's data.yaml)")
        if self.confirm.trials:  # the trials would run, but the detection table would not show their seeds
            problems.append("confirm: not supported for detection yet (its table has one seed per row); use null")
        if problems:
            raise ConfigError.of(problems)

    @classmethod
    def space_keys(cls) -> list[str]:
        return [k for k in super().space_keys() if k not in ("max_epochs", "seed")]

    @property
    def models(self) -> tuple[str, ...]:
        return self.rows


def config_from_dict(d: Any, source: str = "<dict>") -> DetectSweepConfig:
    return DetectSweepConfig.from_dict(d, source)
