"""Image-classification sweep: which backbone, fine-tuned how, with which augmentation, at which
learning rate, is best for these images, and what does each cost to run?

    python sweeps/classify.py                     # the default recipe on scikit-learn's digits, offline
    python sweeps/classify.py --data ~/my_images  # root/<class>/<image>, or root/train|val|test/<class>/<image>
    python sweeps/classify.py --config sweeps/configs/grid.yaml   # another recipe
    python sweeps/classify.py --smoke-test        # a tiny sweep in about a minute
    python sweeps/classify.py --resume ~/ray_results/sweep-20261123-101500   # continue an interrupted sweep

A sweep is a YAML recipe (--config, default sweeps/configs/quickstart.yaml); the flags below override
its common settings. Ray Tune runs the trials (Optuna proposes them, ASHA stops laggards), each trial
is an MLflow run nested under one run for the sweep (with its confusion matrix, per-class report,
learning curves, best checkpoint and model), the comparison report (table, Pareto plots, per-model
evidence; also `python -m analysis.report`) is written and logged at the end, and the best model
becomes the 'champion' alias in the MLflow Model Registry.

Ctrl-C stops a sweep cleanly (press it once and wait); --resume continues it in the same MLflow runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Flag -> (where it goes, key): "settings" are top-level recipe keys, "space" trial parameters.
OVERRIDES = {
    "--data": ("settings", "data"),
    "--val-frac": ("settings", "val_frac"),
    "--test-frac": ("settings", "test_frac"),
    "--search": ("settings", "search"),
    "--num-samples": ("settings", "num_samples"),
    "--max-epochs": ("settings", "max_epochs"),
    "--grace-period": ("settings", "grace_period"),
    "--cpus-per-trial": ("settings", "cpus_per_trial"),
    "--gpus-per-trial": ("settings", "gpus_per_trial"),
    "--max-failures": ("settings", "max_failures"),
    "--seed": ("settings", "seed"),
    "--experiment": ("settings", "experiment"),
    "--tracking-uri": ("settings", "tracking_uri"),
    "--registered-model": ("settings", "registered_model"),
    "--storage-path": ("settings", "storage_path"),
    "--output-dir": ("settings", "output_dir"),
    "--address": ("settings", "address"),
    "--archs": ("space", "arch"),
    "--freeze": ("space", "freeze"),
    "--augment": ("space", "augment"),
    "--weights": ("space", "weights"),
    "--img-size": ("space", "img_size"),
    "--batch-size": ("space", "batch_size"),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from sweeps.config import DEFAULT_CONFIG, SEARCH_ALGORITHMS, preset_help
    from sweeps.credentials import TRACKING_URI_HELP

    p = argparse.ArgumentParser(
        prog="python sweeps/classify.py",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1] + "\nFlags left out keep the recipe's value.",
        argument_default=argparse.SUPPRESS,  # only flags the user gave override the recipe
    )
    p.add_argument(
        "--config",
        metavar="YAML",
        default=str(DEFAULT_CONFIG),
        help=f"sweep recipe: search space, search mode, data, resources (default: "
        f"{DEFAULT_CONFIG.relative_to(PROJECT_ROOT)}; others in sweeps/configs/)",
    )
    data = p.add_argument_group("data")
    data.add_argument(
        "--data",
        metavar="PATH",
        help="Image folder: class folders, root/<class>/<image> (split here: stratified, --val-frac/--test-frac, "
        "seed), or a dataset already split, root/train/<class>/<image> with val/ and/or test/ beside it (also "
        "training/, valid/, validation/, dev/, testing/; any case), used as given, a missing val or test carved from "
        "train. Images: .bmp .gif (first frame) .jpeg .jpg .pgm .png .ppm .tif .tiff .webp, any case; other files, "
        "hidden and system files (.DS_Store, ._*, __MACOSX) and symbolic links back into the folder are left out and "
        "listed in the run (data/ignored_files.txt). "
        "Default: scikit-learn's bundled handwritten digits (1,797 8x8 images, 10 classes), no download.",
    )
    data.add_argument("--val-frac", type=float, metavar="F", help="share of images held out for validation")
    data.add_argument("--test-frac", type=float, metavar="F", help="share held out for the final test")
    data.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave out files that are not readable images (truncated, corrupted, too large) instead of "
        "stopping; the sweep's MLflow run lists them",
    )
    data.add_argument(
        "--img-size",
        type=int,
        metavar="PX",
        help="input size for every model, pixels; 0 = each model's own pretrained size (e.g. 224)",
    )

    space = p.add_argument_group("search space (each replaces the recipe's axis)")
    space.add_argument(
        "--archs",
        nargs="+",
        metavar="NAME",
        help=f"timm model names or presets to compare ({preset_help()})",
    )
    space.add_argument(
        "--freeze",
        nargs="+",
        metavar="STRATEGY",
        help="freeze strategies: full (all train, backbone at a lower lr), partial (last stages + head), "
        "frozen (head only), gradual (head first, then everything)",
    )
    space.add_argument(
        "--augment",
        nargs="+",
        metavar="POLICY",
        help="training-split augmentation policies: none, light, randaugment, trivialaugment",
    )
    space.add_argument(
        "--lr-range",
        nargs=2,
        type=float,
        metavar=("MIN", "MAX"),
        help="log-uniform range of the head learning rate",
    )
    space.add_argument(
        "--weights",
        metavar="WEIGHTS",
        help="'none': random init, works offline; 'imagenet': timm's pretrained weights (needs the "
        "Hugging Face hub or its cache); or a local .safetensors/.pth file",
    )
    space.add_argument("--batch-size", type=int, help="images per training step")

    run = p.add_argument_group("sweep")
    run.add_argument("--search", choices=SEARCH_ALGORITHMS, help="Optuna TPE, random, or every combination")
    run.add_argument("--num-samples", type=int, help="number of trials")
    run.add_argument("--max-epochs", type=int, help="epochs per trial")
    run.add_argument("--no-asha", action="store_true", help="run every trial to --max-epochs (no early stopping)")
    run.add_argument("--grace-period", type=int, help="epochs before ASHA may stop a trial")
    run.add_argument(
        "--cpus-per-trial",
        type=float,
        help="CPU cores per trial: its torch threads, and all but one of them DataLoader workers "
        "(unless the recipe sets num_workers)",
    )
    run.add_argument("--gpus-per-trial", type=float, help="GPUs per trial, fractions share a GPU")
    run.add_argument("--max-failures", type=int, help="retries of a crashed trial, from its last checkpoint")
    run.add_argument("--seed", type=int, help="seed of the split, the search and the trials")
    run.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any recipe setting or space axis, the value in YAML: --set mixup=0.2 --set unfreeze_stages=[1,2] "
        "--set 'lr={uniform: [1e-4, 1e-3]}' --set objectives=[val_acc,latency_ms] (repeatable)",
    )
    run.add_argument(
        "--smoke-test",
        action="store_true",
        help="tiny version of the recipe: one trial per architecture, 2 epochs, 300 training images, "
        "the report's timings 0.2 s each",
    )

    where = p.add_argument_group("where things go")
    where.add_argument("--experiment", help="MLflow experiment name (default: classify-<data name>)")
    where.add_argument("--tracking-uri", help=TRACKING_URI_HELP)
    where.add_argument(
        "--registered-model",
        metavar="NAME",
        help="Model Registry name whose 'champion' alias gets the sweep's best model (default: the experiment name)",
    )
    where.add_argument(
        "--storage-path", help="Ray Tune results and checkpoints, one directory per sweep (default: ~/ray_results)"
    )
    where.add_argument(
        "--output-dir", help="comparison report directory (report.html/.md, comparison.csv), under <experiment>/<sweep>"
    )
    where.add_argument(
        "--address",
        help="Ray cluster to join ('auto' on a cluster node); default: $RAY_ADDRESS, else a `ray start` instance "
        "on this machine, else a Ray of the sweep's own that listens on 127.0.0.1 only",
    )
    where.add_argument(
        "--resume",
        metavar="SWEEP_DIR",
        help="continue an interrupted sweep from its directory (printed when it started and when it stopped): "
        "the same MLflow runs, finished trials kept, unfinished ones from their last checkpoint. "
        "Only --address may be given with it.",
    )
    return p.parse_args(argv)


def config_from_args(a: argparse.Namespace):
    """The recipe, with the flags the user gave on top. Raises ConfigError naming the file or flag."""
    from sweeps.config import SETTINGS, ConfigError, load_config, smoke, with_overrides
    from trainables.config import TrialConfig
    from trainables.registry import unknown_name_message

    cfg = load_config(a.config)
    given = vars(a)
    out: dict[str, dict] = {"settings": {}, "space": {}}
    flags: dict[str, str] = {}
    for flag, (where, key) in OVERRIDES.items():
        name = flag[2:].replace("-", "_")
        if name in given:
            value = given[name]
            if key == "img_size" and value == 0:
                value = None
            out[where][key] = value
            flags[key] = flag
    if "lr_range" in given:
        out["space"]["lr"] = {"loguniform": list(a.lr_range)}
        flags["lr"] = "--lr-range"
    if given.get("no_asha"):
        out["settings"]["asha"] = False
        flags["asha"] = "--no-asha"
    if given.get("skip_bad_images"):
        out["settings"]["skip_bad_images"] = True
        flags["skip_bad_images"] = "--skip-bad-images"
    # Every --set is read before any is refused, and the recipe still checks the good ones: one run shows all.
    problems: list[str] = []
    known = list(dict.fromkeys([*SETTINGS, *TrialConfig.field_names()]))  # max_epochs, seed are both: once
    for item in given.get("set", []):
        try:
            key, value = parse_set(item)
        except ConfigError as e:
            problems += e.problems
            continue
        if key not in known:
            problems.append(f"--set {item}: {unknown_name_message('setting or trial parameter', key, known)}")
            continue
        # A key that is both (max_epochs, seed) is one the sweep sets for every trial: a top-level setting.
        out["settings" if key in SETTINGS else "space"][key] = value
        flags[key] = f"--set {key}"
    try:
        cfg = with_overrides(cfg, out["settings"], out["space"], flags)
    except ConfigError as e:
        problems += e.problems
    if problems:
        raise ConfigError.of(problems)
    return smoke(cfg) if given.get("smoke_test") else cfg


def parse_set(item: str) -> tuple[str, object]:
    """'KEY=VALUE' -> (key, YAML value). Which keys exist is checked by ``config_from_args``."""
    import yaml

    from sweeps.config import ConfigError

    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {item}: expected KEY=VALUE, e.g. --set mixup=0.2")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as e:  # PyYAML's message spans lines: its problem, and where in KEY=VALUE, on one
        mark = getattr(e, "problem_mark", None)
        at = f" (at character {len(key) + 1 + mark.column + 1})" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"--set {item}: the value is not valid YAML: {problem}{at}") from None


def main(argv: list[str] | None = None) -> int:
    if argv is None:  # this process's own command line: a password or token on it moves to the environment
        from sweeps.credentials import without_credentials_on_command_line

        without_credentials_on_command_line()
    from sweeps.config import DEFAULT_CONFIG, ConfigError

    args = parse_args(argv)
    if "resume" in args:
        others = [k for k in vars(args) if k not in ("resume", "address", "config")]
        others += ["config"] if args.config != str(DEFAULT_CONFIG) else []
        if others:
            flags = ", ".join("--" + k.replace("_", "-") for k in others)
            print(f"error: --resume continues a sweep as it was set up; {flags} cannot change it", file=sys.stderr)
            return 2
        from sweeps.run import resume_sweep

        return resume_sweep(Path(args.resume), getattr(args, "address", None), PROJECT_ROOT)
    try:
        cfg = config_from_args(args)
    except ConfigError as e:  # a bad recipe or flag value: say which, before anything expensive starts
        print(f"error: {e}", file=sys.stderr)
        return 2
    from sweeps.run import run_sweep

    return run_sweep(cfg, PROJECT_ROOT)


if __name__ == "__main__":
    sys.exit(main())
