"""Object-detection sweep: which YOLO model, at which image size, trained how, finds the objects in
these images best, and what does each cost to run?

    python sweeps/detect.py                           # the default recipe on a generated shapes dataset, offline
    python sweeps/detect.py --data ~/data/my.yaml     # your YOLO dataset (Ultralytics' data.yaml)
    python sweeps/detect.py --models yolo11n yolo11s --img-size 320 640
    python sweeps/detect.py --smoke-test              # one short trial per model, about 2 minutes
    python sweeps/detect.py --resume ~/ray_results/detect-20261123-101500   # continue an interrupted sweep
    python sweeps/detect.py --resume                                        # the newest interrupted one

Needs the detection extra: pip install -e ".[detect]" (Ultralytics, AGPL-3.0). A sweep is a YAML recipe
(--config, default sweeps/configs/detect/default.yaml); the flags below override it. Every trial is an ordinary
Ray Tune trial (Optuna proposes, ASHA stops those behind their own family on validation mAP50-95, a
crashed trial is retried from its last epoch) training Ultralytics YOLO, and one MLflow run under the
sweep's run, with per-epoch losses, precision, recall, mAP50 and mAP50-95, its best weights, and the best
epoch's test metrics. The detection comparison report (mAP, params, FLOPs, latency per model) is written
and logged at the end; also `python -m analysis.report --experiment NAME`.

Ctrl-C stops a sweep cleanly (press it once and wait); --resume continues it in the same MLflow runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sweeps.cli import DATA, SPACE, Command, Flag, _flag, lr_range_flag
from sweeps.cli import main as _main

DETECT_CONFIG = Path(__file__).resolve().parent / "configs" / "detect" / "default.yaml"


def flags() -> list[Flag]:
    return [
        _flag(
            "--data",
            DATA,
            "settings",
            "data",
            metavar="DATA_YAML",
            help="a YOLO dataset's data.yaml (train/val[/test] image folders with labels/ beside them, names). "
            "Default: a generated dataset of shapes on textured backgrounds (3 classes), no download. On a "
            "cluster the path must be readable on every node.",
        ),
        _flag(
            "--models",
            SPACE,
            "space",
            "model",
            nargs="+",
            metavar="NAME",
            help="YOLO models: yolov8|yolo11|yolo12|yolo26 + n/s/m/l/x",
        ),
        _flag(
            "--weights",
            SPACE,
            "space",
            "weights",
            help="'none': random init from the model's YAML, offline; 'pretrained': Ultralytics' COCO weights "
            "(<model>.pt, downloaded once by the driver); or a local .pt file / a directory of <model>.pt files",
        ),
        _flag(
            "--img-size",
            SPACE,
            "space",
            "imgsz",
            nargs="+",
            type=int,
            metavar="PX",
            help="image sizes (multiples of 32)",
        ),
        _flag("--optimizer", SPACE, "space", "optimizer", nargs="+", help="SGD, AdamW, Adam, RMSProp"),
        _flag("--augment", SPACE, "space", "augment", nargs="+", help="augmentation strength: none, light, strong"),
        lr_range_flag("lr0", "lr0"),
        _flag("--batch", SPACE, "space", "batch", type=int, help="images per batch"),
    ]


def ultralytics_ready() -> str | None:
    """Detection needs the [detect] extra; without it, say how to get it."""
    import importlib.util

    try:
        found = importlib.util.find_spec("ultralytics") is not None
    except ImportError:
        found = False
    if not found:
        return (
            'detection sweeps need Ultralytics: pip install -e ".[detect]" (AGPL-3.0; classification works without it)'
        )
    return None


COMMAND = Command(
    prog="python sweeps/detect.py",
    doc=__doc__,
    task="sweeps.detection",
    default_recipe=DETECT_CONFIG,
    flags=flags(),
    smoke_help="one 2-epoch trial per model on 48 training images (of the generated dataset, or drawn from "
    "--data's), the report's timings 0.2 s each",
    set_examples="--set mosaic=0.5 --set 'lr0={loguniform: [1e-3, 1e-2]}' --set skip_bad_images=true",
    checkpoint="its last epoch",
    ready=ultralytics_ready,
)


def main(argv: list[str] | None = None) -> int:
    return _main(COMMAND, argv)


if __name__ == "__main__":
    sys.exit(main())
