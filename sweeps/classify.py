"""Image-classification sweep: which backbone, fine-tuned how, with which augmentation, at which
learning rate, is best for these images, and what does each cost to run?

    python sweeps/classify.py                     # the default sweep on scikit-learn's digits, offline
    python sweeps/classify.py --data ~/my_images  # your ImageFolder directory (root/<class>/<image>)
    python sweeps/classify.py --smoke-test        # a tiny sweep in about a minute

Ray Tune runs the trials (Optuna proposes them, ASHA stops laggards), each trial is an MLflow run
nested under one run for the sweep, and the comparison table is printed, saved and logged at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from sweeps.config import DEFAULT_ARCHS, SearchSpace, SweepConfig

    d, s = SweepConfig(), SearchSpace()
    p = argparse.ArgumentParser(
        prog="python sweeps/classify.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--data",
        metavar="PATH",
        help="ImageFolder directory, root/<class name>/<image file>. "
        "Default: scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes), no download.",
    )
    data.add_argument(
        "--val-frac",
        type=float,
        default=d.val_frac,
        help="share of images held out for validation (default %(default)s)",
    )
    data.add_argument(
        "--test-frac",
        type=float,
        default=d.test_frac,
        help="share held out for the final test (default %(default)s)",
    )
    data.add_argument(
        "--img-size",
        type=int,
        default=d.img_size,
        metavar="PX",
        help="input size for every model, pixels (default %(default)s; 0 = each model's own pretrained size)",
    )

    space = p.add_argument_group("search space")
    space.add_argument(
        "--archs",
        nargs="+",
        default=list(DEFAULT_ARCHS),
        metavar="NAME",
        help="timm model names to compare (default: %(default)s)",
    )
    space.add_argument(
        "--freeze",
        nargs="+",
        default=list(s.freeze),
        metavar="STRATEGY",
        help="freeze strategies: full (all train, backbone at lr x 0.1), partial (last stage + head), "
        "frozen (head only) (default: %(default)s)",
    )
    space.add_argument(
        "--augment",
        nargs="+",
        default=list(s.augment),
        metavar="POLICY",
        help="training-split augmentation policies (default: %(default)s)",
    )
    space.add_argument(
        "--lr-range",
        nargs=2,
        type=float,
        default=[s.lr_min, s.lr_max],
        metavar=("MIN", "MAX"),
        help="log-uniform range of the head learning rate (default: %(default)s)",
    )
    space.add_argument(
        "--weights",
        choices=["none", "imagenet"],
        default=d.weights,
        help="'none': random init, works offline; 'imagenet': timm's pretrained weights (needs the "
        "Hugging Face hub or its cache) (default: %(default)s)",
    )

    run = p.add_argument_group("sweep")
    run.add_argument("--num-samples", type=int, default=d.num_samples, help="number of trials (default %(default)s)")
    run.add_argument("--max-epochs", type=int, default=d.max_epochs, help="epochs per trial (default %(default)s)")
    run.add_argument(
        "--batch-size", type=int, default=d.batch_size, help="images per training step (default %(default)s)"
    )
    run.add_argument("--no-asha", action="store_true", help="run every trial to --max-epochs (no early stopping)")
    run.add_argument(
        "--grace-period",
        type=int,
        default=d.grace_period,
        help="epochs before ASHA may stop a trial (default %(default)s)",
    )
    run.add_argument(
        "--cpus-per-trial",
        type=float,
        default=d.cpus_per_trial,
        help="CPU cores per trial; also its torch threads (default %(default)s)",
    )
    run.add_argument(
        "--gpus-per-trial",
        type=float,
        default=d.gpus_per_trial,
        help="GPUs per trial, fractions share a GPU (default %(default)s)",
    )
    run.add_argument(
        "--max-failures",
        type=int,
        default=d.max_failures,
        help="retries of a crashed trial, from its last checkpoint (default %(default)s)",
    )
    run.add_argument(
        "--seed",
        type=int,
        default=d.seed,
        help="seed of the split, the search and the trials (default %(default)s)",
    )
    run.add_argument(
        "--smoke-test",
        action="store_true",
        help="tiny sweep: 4 trials (one per architecture), 2 epochs, 300 training images",
    )

    where = p.add_argument_group("where things go")
    where.add_argument("--experiment", help="MLflow experiment name (default: classify-<data name>)")
    where.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI, e.g. http://127.0.0.1:5000 (default: "
        "$MLFLOW_TRACKING_URI, else MLflow's local default sqlite:///mlflow.db in this directory)",
    )
    where.add_argument("--storage-path", help="Ray Tune results and checkpoints (default: Ray's, ~/ray_results)")
    where.add_argument(
        "--output-dir",
        default=d.output_dir,
        help="directory for the comparison table, under <experiment>/<sweep> (default: %(default)s)",
    )
    where.add_argument("--address", help="Ray cluster to join ('auto' on a cluster node); default: start a local Ray")
    return p.parse_args(argv)


def config_from_args(a: argparse.Namespace):
    from sweeps.config import SMOKE, SearchSpace, SweepConfig

    cfg = SweepConfig(
        experiment=a.experiment,
        data=a.data,
        num_samples=a.num_samples,
        max_epochs=a.max_epochs,
        img_size=a.img_size or None,
        batch_size=a.batch_size,
        weights=a.weights,
        cpus_per_trial=a.cpus_per_trial,
        gpus_per_trial=a.gpus_per_trial,
        asha=not a.no_asha,
        grace_period=a.grace_period,
        max_failures=a.max_failures,
        seed=a.seed,
        val_frac=a.val_frac,
        test_frac=a.test_frac,
        tracking_uri=a.tracking_uri,
        storage_path=a.storage_path,
        output_dir=a.output_dir,
        address=a.address,
        space=SearchSpace(
            archs=tuple(a.archs),
            freeze=tuple(a.freeze),
            augment=tuple(a.augment),
            lr_min=a.lr_range[0],
            lr_max=a.lr_range[1],
        ),
    )
    if a.smoke_test:
        cfg = dataclasses.replace(cfg, **SMOKE)
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = config_from_args(args)
    except ValueError as e:  # a bad flag value: say which, before anything expensive starts
        print(f"error: {e}", file=sys.stderr)
        return 2
    from sweeps.run import run_sweep

    return run_sweep(cfg, PROJECT_ROOT)


if __name__ == "__main__":
    sys.exit(main())
