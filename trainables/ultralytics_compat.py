"""What this project changes in Ultralytics, in one place, so that a detection trial leaves exactly one
MLflow run (the sweep's) and touches no network:

- ``OFFLINE_ENV``: Ultralytics' environment switches, set by ``load_ultralytics`` before it imports
  Ultralytics (no DNS probe or update check, no pip installs, no console chatter);
- ``load_ultralytics``: its import, minus what that import does to the rest of the process
  (``OMP_NUM_THREADS=1``, a wrapped ``PIL.Image.open``);
- ``keep_ultralytics_offline``: ``check_font``, which downloads Arial, replaced where it is looked up;
- ``read_as_trainer``: image and label files read by ``verify_image_label`` with the arguments its
  detection dataset passes it, so that the driver finds before Ray starts what a trainer would drop;
- ``quiet_trainer_class``: its ``DetectionTrainer`` without the integration callbacks (its MLflow,
  Ray Tune, W&B..., analytics and platform sync) and with a local AMP check instead of ``check_amp``,
  which downloads a model, patched for the length of the private ``BaseTrainer._setup_train``.

``tests/test_compat.py`` fails, naming the name and Ultralytics' version, when one of these moves or
Ultralytics leaves ``CHECKED``. Importing this module imports nothing and sets nothing.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

CHECKED = {"ultralytics": ">=8.4,<8.5"}  # pyproject admits >=8.3,<9; these internals were read in 8.4

# Read by ultralytics.utils: AUTOINSTALL and VERBOSE when it is imported, OFFLINE when it checks for a network.
OFFLINE_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_VERBOSE": "false"}
FONT_LOOKUPS = ("ultralytics.utils.checks", "ultralytics.data.utils", "ultralytics.utils.plotting")  # check_font
INTEGRATIONS = ("ultralytics.utils.callbacks.", "ultralytics.utils.events", "ultralytics.hub")  # callback modules
DEFAULT_CALLBACKS = "ultralytics.utils.callbacks.base"  # Ultralytics' own defaults: they stay


def load_ultralytics() -> None:
    """Set ``OFFLINE_ENV`` (where not set already) and import Ultralytics, then undo what its import does
    to the rest of the process: it sets OMP_NUM_THREADS=1 (inherited by every process started later: Ray's
    workers, the profiler, which then times on one thread where classification uses every core) and
    wraps PIL.Image.open (changing the errors a broken image file raises). Call it before any other
    Ultralytics import; later calls only set the switches. HEIF images, which that wrapper would open,
    are not supported here."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    if "ultralytics" in sys.modules:
        return
    import PIL.Image
    import torch  # noqa: F401 - first: OpenMP sizes torch's thread pool when torch loads, so not at Ultralytics' 1

    omp, pil_open = os.environ.get("OMP_NUM_THREADS"), PIL.Image.open
    import ultralytics  # noqa: F401

    if omp is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = omp
    PIL.Image.open = pil_open
    keep_ultralytics_offline()


def local_font(font: str = "Arial.ttf") -> str:
    """Ultralytics' ``check_font`` without its download: labels in plots are drawn with matplotlib's
    bundled DejaVu Sans. (Its dataset check asks for Arial.ttf, fetched from the network when missing.)"""
    from matplotlib import font_manager

    return font_manager.findfont("DejaVu Sans")


def keep_ultralytics_offline() -> None:
    """Point every place Ultralytics resolves a font at ``local_font`` (idempotent)."""
    import importlib

    for name in FONT_LOOKUPS:
        importlib.import_module(name).check_font = local_font


def read_as_trainer(images: list[str], num_classes: int) -> list[tuple[int | None, str]]:
    """Each image with its label file, read as Ultralytics' detection dataset reads them to build its label
    cache (``YOLODataset.cache_labels``: ``verify_image_label`` on its threads, given that method's tuple
    of arguments, no keypoints, every class its own): per image (its boxes, '') or (None, why a trainer
    leaves it out)."""
    from multiprocessing.pool import ThreadPool

    from ultralytics.data.utils import img2label_paths, verify_image_label
    from ultralytics.utils import NUM_THREADS

    labels = img2label_paths(images)
    args = [(image, label, "", False, num_classes, 0, 0, False) for image, label in zip(images, labels, strict=True)]
    with ThreadPool(NUM_THREADS) as pool:
        read = pool.map(verify_image_label, args)  # [image or None, boxes, shape, ..., message]
    return [(len(r[1]), "") if r[0] is not None else (None, r[-1].strip()) for r in read]


def _integration(fn: Callable) -> bool:
    module = getattr(fn, "__module__", "") or ""
    return module.startswith(INTEGRATIONS) and module != DEFAULT_CALLBACKS


def quiet_trainer_class():
    """Ultralytics' DetectionTrainer, minus its integrations (only ``callbacks.base`` defaults and this
    project's callbacks stay) and with a local AMP check. ``removed`` lists the modules taken off."""
    load_ultralytics()
    import torch
    from ultralytics.engine import trainer as trainer_module
    from ultralytics.models.yolo.detect import DetectionTrainer

    class QuietTrainer(DetectionTrainer):
        removed: list[str] = []

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            for event, fns in self.callbacks.items():
                keep = [f for f in fns if not _integration(f)]
                QuietTrainer.removed += sorted({f.__module__ for f in fns if _integration(f)} - set(self.removed))
                self.callbacks[event] = keep

        def _setup_train(self) -> None:
            # check_amp() compares the model against a downloaded yolo26n.pt. Without it, AMP is used on
            # CUDA as asked (``amp``); that path has not run on a GPU in this project yet.
            original = trainer_module.check_amp
            trainer_module.check_amp = lambda model: torch.cuda.is_available()
            try:
                super()._setup_train()
            finally:
                trainer_module.check_amp = original

    return QuietTrainer
