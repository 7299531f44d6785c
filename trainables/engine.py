"""The train/eval loop of one trial. No Ray, no MLflow: it yields metric dicts and resumable state.

``fit`` is a generator: one ``EpochReport`` per epoch. Whoever drives it (the Tune trainable, a test,
a notebook) decides what to do with the metrics and where the state is saved.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
from timm.scheduler import CosineLRScheduler
from torch.utils.data import DataLoader

from trainables import metrics as M
from trainables.augment import eval_config, eval_transform, train_transform
from trainables.config import TrialConfig
from trainables.contracts import BestEpoch, EpochReport, TrialInfo, TrialState
from trainables.data import DatasetSplits, ImageSamplesDataset
from trainables.freeze import BackboneHold, apply_freeze, param_groups
from trainables.latency import measure_latency
from trainables.models import build_model, data_config, init_head, weights_source
from trainables.system import SystemMeter

# In-trial latency (multi-objective search): shorter than the comparison table's, as it runs every trial.
TRIAL_LATENCY_RUNS = dict(warmup=5, min_repeats=20, min_seconds=0.3)


@dataclass
class Pieces:
    """Everything a trial builds from its config before the first step."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: CosineLRScheduler
    loss_fn: torch.nn.Module  # validation and test: cross-entropy with label smoothing
    train_loss_fn: torch.nn.Module  # the same, or soft-target cross-entropy when MixUp/CutMix mix labels
    mixup: Mixup | None
    hold: BackboneHold | None  # freeze='gradual': the head-only warm-up
    loaders: dict[str, DataLoader]
    data_config: dict[str, Any]
    info: TrialInfo  # facts recorded as run parameters


def unreadable(splits: DatasetSplits) -> dict[str, float]:
    """How many files failed to decode in this trial so far (replaced, and named on stderr as they were met),
    where the trial decodes files; nothing for images held in memory, which were all decoded up front."""
    parts = (splits.train, splits.val, splits.test)
    if not any(s.reads_files for s in parts):
        return {}
    return {M.UNREADABLE_IMAGES: float(sum(len(s.unreadable) for s in parts))}


def build(cfg: TrialConfig, splits: DatasetSplits, device: torch.device) -> Pieces:
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, splits.num_classes, cfg.img_size, cfg.weights)
    init_head(model, cfg.head_init_std)
    source = weights_source(model, cfg.weights)
    trainable = apply_freeze(model, cfg.freeze, cfg.unfreeze_stages)
    hold = BackboneHold(model, trainable) if cfg.freeze == "gradual" else None
    dc = {**data_config(model, cfg.img_size), "crop_pct": cfg.eval_crop_pct}  # evaluation at training's scale
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        param_groups(model, trainable, cfg.lr, cfg.backbone_lr_mult), lr=cfg.lr, weight_decay=cfg.weight_decay
    )
    loaders = make_loaders(splits, cfg, dc, pin_memory=device.type == "cuda")
    steps_per_epoch = len(loaders["train"])
    scheduler = CosineLRScheduler(
        optimizer,
        t_initial=cfg.max_epochs * steps_per_epoch - int(cfg.warmup_epochs * steps_per_epoch),
        warmup_t=int(cfg.warmup_epochs * steps_per_epoch),
        warmup_lr_init=cfg.lr * 1e-3,
        warmup_prefix=True,  # the cosine starts after the warm-up and still ends at max_epochs
        lr_min=0.0,
        t_in_epochs=False,  # stepped per optimizer update, not per epoch
    )
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info = TrialInfo(
        num_classes=splits.num_classes,
        input_size=int(dc["input_size"][-1]),
        interpolation=dc["interpolation"],
        mean=tuple(round(float(v), 4) for v in dc["mean"]),
        std=tuple(round(float(v), 4) for v in dc["std"]),
        crop_pct=dc["crop_pct"],
        param_count=n_params,
        trainable_param_count=n_trainable,
        device=str(device),
        amp_active=cfg.amp and device.type == "cuda",
        channels_last=device.type == "cuda",
        loader_workers=cfg.num_workers or 0,
        weights_source=source,
    )
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    mixup = None
    if cfg.mixes:  # label smoothing moves into the mixed soft targets
        mixup = Mixup(
            mixup_alpha=cfg.mixup,
            cutmix_alpha=cfg.cutmix,
            label_smoothing=cfg.label_smoothing,
            num_classes=splits.num_classes,
        )
    train_loss_fn = SoftTargetCrossEntropy() if mixup else loss_fn
    return Pieces(model, optimizer, scheduler, loss_fn, train_loss_fn, mixup, hold, loaders, dc, info)


def make_loaders(splits: DatasetSplits, cfg: TrialConfig, dc: dict, pin_memory: bool) -> dict[str, DataLoader]:
    """Augmentation on the training split only; validation and test share the model's eval transform."""
    ev = eval_transform(dc)
    workers = cfg.num_workers or 0  # None (no CPU count given, outside Ray): load in this process
    common = dict(batch_size=cfg.batch_size, num_workers=workers, persistent_workers=workers > 0, pin_memory=pin_memory)
    return {
        # drop_last keeps BatchNorm away from a final batch of one image, and MixUp's pairs whole.
        "train": DataLoader(
            ImageSamplesDataset(splits.train, train_transform(cfg.augment, dc, cfg.random_erasing)),
            shuffle=True,
            drop_last=len(splits.train) > cfg.batch_size or cfg.mixes,
            **common,
        ),
        "val": DataLoader(ImageSamplesDataset(splits.val, ev), shuffle=False, **common),
        "test": DataLoader(ImageSamplesDataset(splits.test, ev), shuffle=False, **common),
    }


def _autocast(device: torch.device, amp: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


def train_one_epoch(p: Pieces, device: torch.device, cfg: TrialConfig, num_updates: int) -> tuple[dict, int]:
    p.model.train()
    if p.hold is not None:
        p.hold.after_train_mode()
    loss_sum, seen, preds, labels, waited = 0.0, 0, [], [], [0.0]
    for x, y in timed(p.loaders["train"], waited):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        target = y
        if p.mixup is not None:
            x, target = p.mixup(x, y)  # soft targets; accuracy below is against the unmixed labels
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with _autocast(device, cfg.amp):
            logits = p.model(x)
            loss = p.train_loss_fn(logits, target)
        p.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(p.model.parameters(), cfg.grad_clip)
        p.optimizer.step()
        num_updates += 1
        p.scheduler.step_update(num_updates)
        loss_sum += loss.item() * len(y)
        seen += len(y)
        preds.append(logits.detach().argmax(1).cpu())
        labels.append(y.cpu())
    m = M.classification_metrics(torch.cat(labels).numpy(), torch.cat(preds).numpy(), p.info["num_classes"])
    train = {M.TRAIN_LOSS: loss_sum / seen, M.TRAIN_ACC: m["acc"], M.TRAIN_F1: m["f1"], "images": seen}
    return {**train, "data_wait_s": waited[0]}, num_updates


def timed(batches, waited: list[float]):  # noqa: ANN001, ANN201 - any iterable; a generator of its items
    """The items of ``batches``; the seconds spent waiting for them are added to ``waited[0]``."""
    it = iter(batches)
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(it)
        except StopIteration:
            return
        waited[0] += time.perf_counter() - t0
        yield batch


@torch.inference_mode()
def predict(model: torch.nn.Module, loader: DataLoader, device: torch.device, amp: bool = False):
    """Logits of a whole split, in the loader's order, with the labels: (logits [N, C], labels [N])."""
    model.eval()
    outs, ys = [], []
    for x, y in loader:
        with _autocast(device, amp):
            outs.append(model(x.to(device)).float().cpu())
        ys.append(y)
    return torch.cat(outs), torch.cat(ys)


def evaluate(p: Pieces, split: str, device: torch.device, num_classes: int, amp: bool, report: bool = False) -> dict:
    """Accuracy, macro precision/recall/F1 and loss of one split; with ``report``, also top-5 accuracy
    (more than 5 classes) and, under "report", the confusion matrix, per-class metrics and every
    image's true and predicted label."""
    logits, y = predict(p.model, p.loaders[split], device, amp)
    pred = logits.argmax(1).numpy()
    out = M.classification_metrics(y.numpy(), pred, num_classes, scores=logits.numpy() if report else None)
    out["loss"] = float(p.loss_fn(logits, y).item())
    if report:
        out["report"] = M.per_class_report(y.numpy(), pred, num_classes)
        out["report"]["true"], out["report"]["pred"] = y.tolist(), pred.tolist()  # in the split's order
    return out


def _seed_epoch(seed: int, epoch: int) -> None:
    """Data order and augmentation depend on (seed, epoch) only, so a resumed trial replays them."""
    s = seed * 100_003 + epoch
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)


def fit(
    cfg: TrialConfig, splits: DatasetSplits, device: torch.device, resume: TrialState | None = None
) -> Iterator[EpochReport]:
    """Train ``cfg.max_epochs`` epochs, validating after each; the best epoch (by validation accuracy)
    is evaluated on the test split when it is found, so every epoch's report carries the test metrics
    of the model that validation has chosen so far. Test data never influences any choice."""
    p = build(cfg, splits, device)
    start_epoch, num_updates, train_time = 0, 0, 0.0
    best: BestEpoch | None = None
    if resume is not None:
        p.model.load_state_dict(resume["model"])
        p.optimizer.load_state_dict(resume["optimizer"])
        start_epoch, num_updates, best = resume["epoch"], resume["num_updates"], resume["best"]
        train_time = resume.get("train_time_s", 0.0)
        p.scheduler.step_update(num_updates)
    k = splits.num_classes
    latency_ms, _, _ = measure_latency(p.model, p.info["input_size"], device, **TRIAL_LATENCY_RUNS)
    with SystemMeter(torch.get_num_threads() + (cfg.num_workers or 0), device) as meter:
        for epoch in range(start_epoch + 1, cfg.max_epochs + 1):
            meter.begin()
            _seed_epoch(cfg.seed, epoch)
            if p.hold is not None:  # gradual: head alone for gradual_epochs, then everything
                p.hold.hold() if epoch <= cfg.gradual_epochs else p.hold.release()
            t0 = time.perf_counter()
            train, num_updates = train_one_epoch(p, device, cfg, num_updates)
            t_train = time.perf_counter() - t0
            val = evaluate(p, "val", device, k, cfg.amp)
            improved = best is None or val["acc"] > best["val_acc"]
            if improved:
                test = evaluate(p, "test", device, k, cfg.amp, report=True)
                best = BestEpoch(
                    epoch=epoch,
                    val_acc=val["acc"],
                    test=M.as_test(test),
                    test_report=test["report"],  # confusion matrix and per-class metrics on the test split
                    classes=list(splits.classes),
                    model={n: t.detach().to("cpu", copy=True) for n, t in p.model.state_dict().items()},
                )
            epoch_time = time.perf_counter() - t0
            train_time += epoch_time
            metrics = {
                M.EPOCH: epoch,
                M.TRAIN_LOSS: train[M.TRAIN_LOSS],
                M.TRAIN_ACC: train[M.TRAIN_ACC],
                M.TRAIN_F1: train[M.TRAIN_F1],
                M.VAL_LOSS: val["loss"],
                M.VAL_ACC: val["acc"],
                M.VAL_F1: val["f1"],
                M.LR: p.optimizer.param_groups[0]["lr"],
                M.EPOCH_TIME: epoch_time,
                M.THROUGHPUT: train["images"] / t_train,
                M.LATENCY: latency_ms,
                M.BEST_VAL_ACC: best["val_acc"],
                M.BEST_EPOCH: best["epoch"],
                M.TRAIN_TIME: train_time,
                **best["test"],
                **meter.epoch(train["data_wait_s"], t_train),  # system/...: what the epoch asked of the machine
                **unreadable(splits),
            }
            state = TrialState(
                epoch=epoch,
                num_updates=num_updates,
                model=p.model.state_dict(),
                optimizer=p.optimizer.state_dict(),
                best=best,
                train_time_s=train_time,
                info=p.info,
                preprocessing=eval_config(p.data_config),  # the eval transform, for whoever serves the model
            )
            yield EpochReport(metrics=metrics, state=state, improved=improved)
