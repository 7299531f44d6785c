"""The image-classification task: timm backbones on an image folder (or the bundled digits), one row
per architecture, the best model registered as the champion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweeps.config import DEFAULT_CONFIG, SweepConfig
from sweeps.recipe import ConfigError
from sweeps.task import Prepared, Task
from trainables.contracts import CHAMPION_TAG, CLASSIFY_TASK, IGNORED_FILE, SAMPLES_DIR, SKIPPED_FILE


def prepare(cfg: SweepConfig, log) -> Prepared:
    """The split (checked image by image) and every model the space allows, checked together: with the
    data unreadable, the models are still checked (for 2 classes), and both problems are reported."""
    from sweeps.run import CHECK_ERRORS
    from trainables.data import split_fingerprint

    problems: list[str] = []
    splits = None
    try:
        splits = prepare_data(cfg, log)
        cfg.check_batch_size(len(splits.train))  # the split's size is known only now
    except ConfigError as e:
        problems += e.problems
    except CHECK_ERRORS as e:
        problems.append(str(e))
    try:
        check_models(cfg, splits.num_classes if splits else 2, log)
    except CHECK_ERRORS as e:
        problems.append(str(e))
    if problems:
        raise ConfigError.of(problems)
    s = splits.summary()
    line = (
        f"data: {s['data_source']}: {s['num_classes']} classes, train/val/test = "
        f"{s['train_size']}/{s['val_size']}/{s['test_size']} images ({s['data_layout']}, seed {cfg.seed})"
    )
    return Prepared(splits, splits.name, s, line, split_fingerprint(splits), record=lambda: record(splits, log))


def prepare_data(cfg: SweepConfig, log):
    from trainables.data import limit_train, load_splits

    splits = load_splits(
        cfg.data,
        cfg.val_frac,
        cfg.test_frac,
        cfg.seed,
        skip_bad=cfg.skip_bad_images,
        progress=log,
        decode_cache_mb=cfg.decode_cache_mb,
    )
    for note in (splits.split_note, splits.decode_note):
        if note:
            log(f"data: {note}")
    if splits.ignored:
        kinds = ", ".join(f"{n} {kind}" for kind, n in splits.ignored_by_kind().items())
        n = len(splits.ignored)
        log(f"data: {n} file(s) or folder(s) not used ({kinds}), listed in the run's {IGNORED_FILE}")
    if splits.cross_split_copies:
        a, b = splits.cross_split_copies[0]
        log(
            f"warning: {len(splits.cross_split_copies)} image(s) are in more than one split (identical files, e.g. "
            f"{a} = {b}): scores on them are optimistic; remove the copies from the val and test folders"
        )
    if splits.skipped:
        log(f"--skip-bad-images: left out {len(splits.skipped)} unreadable file(s), listed in the run's {SKIPPED_FILE}")
    if splits.duplicates and not splits.cross_split_copies:
        log(f"data: {splits.duplicates} file(s) are identical copies of another; each copy is in its original's split")
    elif splits.duplicates:  # split folders given as they are: copies can be in any of them
        log(f"data: {splits.duplicates} file(s) are identical copies of another, as the split folders hold them")
    if cfg.train_limit is not None:
        splits = limit_train(splits, cfg.train_limit, cfg.seed)
    return splits


def check_models(cfg: SweepConfig, num_classes: int, log) -> None:
    """Every (architecture, input size, weights) the space allows is built in the driver and runs one
    image forward, before Ray starts: a model that cannot take an input size, or weights that cannot be
    had, stop the sweep here with the combination named, not in every trial. For 'imagenet' this also
    fills timm's cache, which the trials on this machine then read."""
    import torch

    from trainables.clip_baselines import create_clip
    from trainables.config import CLIP_BASELINES, is_baseline
    from trainables.models import build_model, input_size_of

    for arch in cfg.archs:
        if arch in CLIP_BASELINES:  # CLIP's model and weights, loaded here so a missing one stops the sweep now
            for model in cfg.dim("clip_model").candidates():
                for weights in cfg.dim("clip_pretrained").candidates():
                    log(f"checking {arch} with clip_model={model}, clip_pretrained={weights}")
                    create_clip(model, weights)
            continue
        if is_baseline(arch):  # nothing to build before it is fitted; its settings are checked with the recipe
            continue
        for img_size in cfg.dim("img_size").candidates():
            for weights in cfg.dim("weights").candidates():
                if weights != "none":
                    log(f"checking {arch} with weights={weights}")
                model = build_model(arch, num_classes, img_size, weights)
                size = input_size_of(model, img_size)
                try:
                    with torch.inference_mode():
                        model.eval()(torch.zeros(1, 3, size, size))
                except RuntimeError as e:
                    raise ValueError(f"space: {arch} cannot take img_size={size}: {str(e)[:200]}") from None
        _say_if_partial_is_full(cfg, arch, model, log)


def _say_if_partial_is_full(cfg: SweepConfig, arch: str, model, log) -> None:
    """freeze=partial trains the head and the last ``unfreeze_stages`` groups below it: as many as the
    model has or more train the whole model, as freeze=full does. Said, since the trial's run then shows
    a partial fine-tune that is not one."""
    from trainables.freeze import coarse_groups

    if "partial" not in cfg.dim("freeze").candidates():
        return
    below = len(coarse_groups(model)) - 1  # the stem and the stages
    if whole := [u for u in cfg.dim("unfreeze_stages").candidates() if u >= below]:
        values = ", ".join(map(str, whole)) if len(whole) < 4 else f"{whole[0]} to {whole[-1]}"
        log(
            f"warning: {arch} has {below} parameter groups below its head (stem and stages): freeze=partial "
            f"with unfreeze_stages={values} trains all of them, as freeze=full does"
        )


def record(splits, log) -> None:
    """The data's evidence on the sweep's run: files left out, and the validation images every model's
    Grad-CAM is drawn on."""
    import mlflow

    from analysis.samples import log_samples

    if splits.skipped:
        mlflow.log_text("".join(f"{path}\t{why}\n" for path, why in splits.skipped), SKIPPED_FILE)
    if splits.ignored:
        mlflow.log_text("".join(f"{path}\t{why}\n" for path, why in splits.ignored), IGNORED_FILE)
    shown_on = log_samples(splits.val, splits.classes)
    log(f"samples: {shown_on} validation images on the sweep's run ({SAMPLES_DIR}/), for every model's Grad-CAM")


def report(cfg: SweepConfig, sweep: dict, out_dir: Path, log):
    import mlflow

    from analysis.report import build_report, default_device

    parent = mlflow.get_run(sweep["parent_run_id"])
    return build_report(
        sweep["experiment_id"], parent, out_dir, "arch", default_device(), progress=log, timing_s=cfg.timing_s
    )


def register_champion(cfg: SweepConfig, sweep: dict, report) -> list[str]:
    """The table is sorted by validation accuracy (a confirmed configuration's mean over its seeds, ahead of
    single-seed rows; selection never sees test): its top row's model becomes the 'champion' alias of the
    registered model."""
    import mlflow

    from sweeps.tracking import register_champion as register
    from trainables import metrics as M

    if report.table.empty:
        return []
    top = report.table.iloc[0]
    description = (
        f"{top['arch']} from sweep {sweep['sweep_name']}: val acc {top[M.BEST_VAL_ACC]:.4f}, "
        f"test acc {top[M.TEST_ACC]:.4f}, test macro-F1 {top[M.TEST_F1]:.4f}"
    )
    if top["seeds"] > 1:  # a confirmed configuration: chosen by its mean over seeds
        description += (
            f"; its configuration over {top['seeds']} seeds: val acc {top['val_acc_mean']:.4f} ± "
            f"{top['val_acc_std']:.4f}, test acc {top['test_acc_mean']:.4f} ± {top['test_acc_std']:.4f}"
        )
    champion, uri, before = register(cfg.registered_model or sweep["experiment"], top["run_id"], description)
    mlflow.set_tag(CHAMPION_TAG, champion)  # 'NAME@champion (version N)', read by analysis.champion
    champion += f", {before}" if before else ""
    return [f"champion: {champion}, run {top['run_id']}; load it with mlflow.pytorch.load_model('{uri}')"]


def _trainable():
    from trainables.trainable import train_classifier

    return train_classifier


def _trial_args(cfg: SweepConfig) -> dict[str, Any]:
    from sweeps.space import stop_epochs

    return {"stop_epochs": stop_epochs(cfg)}  # where a trial makes its evidence, besides its last epoch


def _callback(*args: Any, **kwargs: Any):
    from sweeps.trial_runs import MlflowTrialCallback

    return MlflowTrialCallback(*args, **kwargs)


TASK = Task(
    name=CLASSIFY_TASK,
    script="classify.py",
    sweep_prefix="sweep",
    recipe=SweepConfig,
    default_recipe=DEFAULT_CONFIG,
    trainable=_trainable,
    data_arg="splits",
    trial_args=_trial_args,
    prepare=prepare,
    callback=_callback,
    report=report,
    conclude=register_champion,
)
