"""Image-classification sweep: which backbone, fine-tuned how, with which augmentation, at which
learning rate, is best for these images, and what does each cost to run?

    python sweeps/classify.py                     # the default recipe on scikit-learn's digits, offline
    python sweeps/classify.py --data ~/my_images  # root/<class>/<image>, or root/train|val|test/<class>/<image>
    python sweeps/classify.py --config sweeps/configs/grid.yaml   # another recipe
    python sweeps/classify.py --smoke-test        # a tiny sweep in about a minute
    python sweeps/classify.py --resume ~/ray_results/sweep-20261123-101500   # continue an interrupted sweep
    python sweeps/classify.py --resume                                       # the newest interrupted one

A sweep is a YAML recipe (--config, default sweeps/configs/quickstart.yaml); the flags below override
its common settings. Ray Tune runs the trials (Optuna proposes them, ASHA stops those behind their own
family), each trial is an MLflow run nested under one run for the sweep (with its confusion matrix, per-class report,
learning curves, best checkpoint and model), the comparison report (table, Pareto plots, per-model
evidence; also `python -m analysis.report`) is written and logged at the end, and the best model
becomes the 'champion' alias in the MLflow Model Registry.

Ctrl-C stops a sweep cleanly (press it once and wait); --resume continues it in the same MLflow runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sweeps.cli import (
    DATA,
    SPACE,
    WHERE,
    Command,
    Flag,
    _flag,
    lr_range_flag,
    parse_set,  # noqa: F401  (read from here by tests)
)
from sweeps.cli import config_from_args as _config_from_args
from sweeps.cli import main as _main
from sweeps.cli import parse_args as _parse_args

DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "quickstart.yaml"


def flags() -> list[Flag]:
    from trainables.config import ARCH_PRESETS, BASELINES  # a light module: --help imports no torch

    presets = "; ".join(f"{k}: {', '.join(v)}" for k, v in ARCH_PRESETS.items())
    return [
        _flag(
            "--data",
            DATA,
            "settings",
            "data",
            metavar="PATH",
            help="Image folder: class folders, root/<class>/<image> (split here: stratified, --val-frac/--test-frac, "
            "seed), or a dataset already split, root/train/<class>/<image> with val/ and/or test/ beside it (also "
            "training/, valid/, validation/, dev/, testing/; any case), used as given, a missing val or test carved "
            "from train. Images: .bmp .gif (first frame) .jpeg .jpg .pgm .png .ppm .tif .tiff .webp, any case; other "
            "files, hidden and system files (.DS_Store, ._*, __MACOSX) and symbolic links back into the folder are "
            "left out and listed in the run (data/ignored_files.txt). "
            "Default: scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes), no download.",
        ),
        _flag(
            "--val-frac",
            DATA,
            "settings",
            "val_frac",
            type=float,
            metavar="F",
            help="share of images held out for validation",
        ),
        _flag(
            "--test-frac",
            DATA,
            "settings",
            "test_frac",
            type=float,
            metavar="F",
            help="share held out for the final test",
        ),
        _flag(
            "--skip-bad-images",
            DATA,
            "settings",
            "skip_bad_images",
            action="store_true",
            help="leave out files that are not readable images (truncated, corrupted, too large) instead of "
            "stopping; the sweep's MLflow run lists them",
        ),
        _flag(
            "--img-size",
            DATA,
            "space",
            "img_size",
            lambda v: None if v == 0 else v,
            type=int,
            metavar="PX",
            help="input size for every model, pixels; 0 = each model's own pretrained size (e.g. 224)",
        ),
        _flag(
            "--archs",
            SPACE,
            "space",
            "arch",
            nargs="+",
            metavar="NAME",
            help=f"timm model names or presets to compare ({presets}), and baselines beside them "
            f"({', '.join(BASELINES)})",
        ),
        _flag(
            "--freeze",
            SPACE,
            "space",
            "freeze",
            nargs="+",
            metavar="STRATEGY",
            help="freeze strategies: full (all train, backbone at a lower lr), partial (last stages + head), "
            "frozen (head only), gradual (head first, then everything)",
        ),
        _flag(
            "--augment",
            SPACE,
            "space",
            "augment",
            nargs="+",
            metavar="POLICY",
            help="training-split augmentation policies: none, light, randaugment, trivialaugment",
        ),
        lr_range_flag("lr", "the head learning rate"),
        _flag(
            "--weights",
            SPACE,
            "space",
            "weights",
            metavar="WEIGHTS",
            help="'none': random init, works offline; 'imagenet': timm's pretrained weights (needs the "
            "Hugging Face hub or its cache); or a local .safetensors/.pth file",
        ),
        _flag("--batch-size", SPACE, "space", "batch_size", type=int, help="images per training step"),
        _flag(
            "--registered-model",
            WHERE,
            "settings",
            "registered_model",
            metavar="NAME",
            help="Model Registry name whose 'champion' alias gets the sweep's best model "
            "(default: the experiment name)",
        ),
    ]


COMMAND = Command(
    prog="python sweeps/classify.py",
    doc=__doc__,
    task="sweeps.classification",
    default_recipe=DEFAULT_CONFIG,
    flags=flags(),
    smoke_help="tiny version of the recipe: one trial per architecture, 2 epochs, 300 training images, "
    "the report's timings 0.2 s each",
    set_examples="--set mixup=0.2 --set unfreeze_stages=[1,2] --set 'lr={uniform: [1e-4, 1e-3]}' "
    "--set objectives=[val_acc,latency_ms]",
)


def parse_args(argv: list[str] | None = None):
    return _parse_args(COMMAND, argv)


def config_from_args(a):
    """The recipe, with the flags the user gave on top. Raises ConfigError naming the file or flag."""
    return _config_from_args(COMMAND, a)


def main(argv: list[str] | None = None) -> int:
    return _main(COMMAND, argv)


if __name__ == "__main__":
    sys.exit(main())
